"""Progress bars: the rich bar the trainer, the suite and the benchmarks share, and the trainer's pair."""

from __future__ import annotations

import sys


def progress_bar(enabled: bool | None, transient: bool = True, remaining: bool = True):
    """A rich progress bar (tasks take a ``status`` field), disabled (rich's ``disable``: its calls
    show nothing) unless ``enabled``; by default enabled only when stderr is a terminal (callers
    print plain lines when ``.disable``). ``remaining``: rich's time-remaining column (off when the
    caller's status shows its own estimate)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    columns += [TimeRemainingColumn()] if remaining else []
    return Progress(*columns, TextColumn("{task.fields[status]}"), transient=transient,
                    disable=not (sys.stderr.isatty() if enabled is None else enabled))


class EpochBars:
    """The trainer's two progress bars (epochs, batches of the current epoch); silent when disabled."""

    def __init__(self, enabled: bool | None, epochs: int, batches: int, done: int):
        self.bar, self.batches = progress_bar(enabled), batches
        self.epochs_task = self.bar.add_task("epochs", total=epochs, completed=done, status="")
        self.batches_task = self.bar.add_task("batches", total=batches, status="")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def new_epoch(self) -> None:
        self.bar.reset(self.batches_task, total=self.batches)

    def batch_status(self, status: str) -> None:
        self.bar.update(self.batches_task, status=status)

    def batch_done(self) -> None:
        self.bar.update(self.batches_task, advance=1)

    def epoch_done(self, status: str) -> None:
        self.bar.update(self.epochs_task, advance=1, status=status)
