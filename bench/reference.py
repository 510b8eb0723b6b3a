"""The instruction-count gate's reference (``bench.counts``): the stored counts
(``perf_counts.json``, keyed by machine class), a worktree of the reference commit they name, and
the comparison, which names the functions that grew."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BASELINE = Path(__file__).with_name("perf_counts.json")
REPO = Path(__file__).resolve().parents[1]
# A benchmark fails above 1.05x its baseline count. Five CI-class runs of the unchanged tree
# agreed within 0.004% (results/perf/counts_spread.json); the injected slowdown of the training
# step in bench/test_perf.py reads 1.18x.
THRESHOLD = 0.05


def load_baseline(path: Path = BASELINE) -> dict:
    """{"reference_commit": SHA, "machines": {machine key: stored counts}} (empty when absent)."""
    stored = json.loads(path.read_text()) if path.exists() else {}
    return {"reference_commit": stored.get("reference_commit"), "machines": stored.get("machines", {})}


def store_baseline(measured: dict, path: Path = BASELINE) -> str:
    """This machine class's counts stored, and HEAD made the reference commit; returns HEAD."""
    baseline = load_baseline(path)
    head = _git("rev-parse", "HEAD").strip()
    if _git("status", "--porcelain", "--untracked-files=no", "--", "alexnet", "bench").strip():
        print(f"warning: alexnet/ or bench/ differ from HEAD {head[:12]}: commit the change these counts measure "
              "first, then store them, so that the reference commit holds the counted code", file=sys.stderr)
    baseline["reference_commit"] = head
    baseline["machines"][measured["machine"]] = measured["benchmarks"]
    path.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n")
    return head


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def reference_tree(commit: str | None):
    """A ``git worktree`` of the reference commit (removed afterwards), or None when the commit is
    not in this clone (a shallow clone, or no reference yet)."""
    try:
        if not commit:
            raise subprocess.CalledProcessError(1, "git")
        _git("cat-file", "-e", f"{commit}^{{commit}}")
    except (OSError, subprocess.CalledProcessError):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="perf-reference-")) / "tree"
    _git("worktree", "add", "--detach", str(folder), commit)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO, capture_output=True)
        shutil.rmtree(folder.parent, ignore_errors=True)


def fallback(measured: dict, baseline: dict) -> tuple[dict, str]:
    """When the reference commit cannot be counted: the stored counts of this machine class as the
    reference (or none), and the one line that says so."""
    commit = (baseline["reference_commit"] or "none")[:12]
    key = measured["machine"]
    if key in baseline["machines"]:
        return ({key: baseline["machines"][key]},
                f"reference commit {commit} is not in this clone (shallow?): compared with the stored counts of "
                "this machine class instead")
    return {}, (f"reference commit {commit} is not in this clone, and no counts are stored for {key} (stored: "
                f"{', '.join(baseline['machines']) or 'none'}); comparison skipped: fetch the full history, or run "
                "`nox -s perf -- --update-baseline` on this machine class")


def grown(current: dict, base: dict, top: int = 8) -> list[str]:
    """The functions whose counts per call grew most (callgrind's diff of the two profiles)."""
    from torch.utils.benchmark import FunctionCounts
    from torch.utils.benchmark.utils.valgrind_wrapper.timer_interface import FunctionCount

    def counts(functions: dict) -> FunctionCounts:
        return FunctionCounts(tuple(FunctionCount(c, f) for f, c in functions.items()), inclusive=False)

    delta = counts(current["functions"]) - counts(base["functions"])
    return [f"{c:+15,d}  {f[:140]}" for c, f in sorted(delta, reverse=True)[:top] if c > 0]


def compare(measured: dict, reference: dict, threshold: float = THRESHOLD) -> tuple[list[str], list[str]]:
    """(lines for the report, failures); ``reference``: {machine key: counts}. Counts of another
    machine class are never compared."""
    key = measured["machine"]
    if key not in reference:
        known = ", ".join(reference) or "none"
        return [f"no instruction-count reference for {key} (have: {known}); comparison skipped: run "
                "`nox -s perf -- --update-baseline` on this machine class to record one"], []
    lines, failures = [], []
    for name, cur in measured["benchmarks"].items():
        base = reference[key].get(name)
        if base is None:
            failures.append(f"{name}: no reference count; run `nox -s perf -- --update-baseline`")
            continue
        ratio = cur["per_call"] / base["per_call"]
        line = (f"{name}: {cur['per_call']:,} instructions per call, {ratio:.4f}x its reference "
                f"{base['per_call']:,} (fails above {1 + threshold:.2f}x)")
        lines.append(line)
        if ratio > 1 + threshold:
            failures.append("\n".join([line, "  functions that grew most (instructions per call):",
                                        *("  " + g for g in grown(cur, base))]))
    return lines, failures
