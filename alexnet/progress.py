"""The progress bar shared by the trainer, the suite and the benchmarks."""

from __future__ import annotations

import sys


def progress_bar(enabled: bool | None, transient: bool = True):
    """A rich progress bar (tasks take a ``status`` field), or None when disabled; by default
    shown only when stderr is a terminal (callers print plain lines otherwise)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[status]}"), transient=transient)
