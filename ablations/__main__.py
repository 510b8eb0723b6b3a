"""``python -m ablations``: the claims suite (its options and what it does: ``ablations.options``,
``--help``) and its subcommands launch, tune, import, compare and runs."""

from __future__ import annotations

import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from ablations.claims import SCALES
from ablations.commands import (
    compare_verdicts,
    console,
    import_node,
    list_runs,
    shown,
    store_to_read,
    terminate,
    tune_arm,
)
from ablations.launch import launch
from ablations.looks import Looked, look, sequential
from ablations.options import parse
from ablations.reporting.plots import PLOTS
from ablations.reporting.report import (
    ReportBlocked,
    answer,
    plan_summary,
    plan_table,
    timing_line,
    verdict_table,
    where_lines,
    write_results,
)
from ablations.running.plan import select_claims, validate
from ablations.running.speed import duration
from ablations.running.suite import Suite, SuiteOptions
from alexnet.checkpoint import CheckpointBusy
from alexnet.data import DataError, load_fashion_mnist
from alexnet.env import device_name, device_slug, environment
from alexnet.stores import TrackingError
from alexnet.tracking import STORE_ERRORS, Tracker
from alexnet.tune import storage
from alexnet.untrusted import first_line, redact, writable_dir, writable_later


def _lost(exc: BaseException, tracker: Tracker, args) -> int:
    """A fault mid-suite: say what failed and that re-running the same command resumes."""
    console.print(f"[red]error:[/] {exc.__class__.__name__}: {shown(redact(first_line(exc, 500)))}\n"
                  f"Nothing finished is lost: finished runs are in {tracker.shown_uri}, the interrupted run's last "
                  f"epoch is in {args.checkpoint_dir}/. Fix the cause (tracking store reachable? disk space?) "
                  "and re-run the same command: it resumes.")
    return 3


REPROBE_PAUSE_S = 5.0  # before probing again: a busy spell of the machine may pass


SUBCOMMANDS = {"launch": launch, "tune": tune_arm, "import": import_node, "compare": compare_verdicts,
               "runs": list_runs}


def prepare(args, scale):
    """(claims, plans, suite, plan rows): every name, path, config and store checked before any work."""
    claims = select_claims(args.only, scale)
    validate(claims, PLOTS)  # every name a claim uses
    folders = ((args.results_dir, "--results-dir"), (args.checkpoint_dir, "--checkpoint-dir"))
    for folder, what in folders:  # both checked before either is made; --plan makes neither
        writable_later(folder, what)
    data = load_fashion_mnist(args.data_dir)
    tracker = store_to_read(args.tracking_uri, "--plan") if args.plan else Tracker(args.tracking_uri)
    for folder, what in folders if not args.plan else ():  # the data and the store are good: made now,
        existed = os.path.exists(folder)                     # before any work, so that none is lost to them
        writable_dir(folder, what)
        if not existed:
            console.print(f"created {what} {shown(folder)}", highlight=False)
    suite = Suite(scale, tracker, data, SuiteOptions(
        seeds=args.seeds, max_seeds=args.max_seeds, epochs=args.epochs, device=args.device,
        checkpoint_dir=Path(args.checkpoint_dir), progress=args.progress, tune_lr=args.tune_lr, storage=args.storage,
        budget_s=None if args.budget_min is None else args.budget_min * 60,
        precision=None if args.precision == "auto" else args.precision, train=not args.report_only))
    plans = suite.plan.configs(claims)  # every arm's config checked before any work
    if (args.tune_lr or any(c.tuned_arms for c in claims)) and not args.plan:
        storage(args.storage).remove_session()  # the Optuna database opens now, not after the first claims
    return claims, plans, suite, suite.plan.rows(claims, plans)


def start(args, scale, claims, suite, rows) -> int | None:
    """Print the plan's estimate; None to train, else the exit status (--plan: 0; over --max-hours
    without --yes: 2)."""
    console.print(f"[bold]scale {scale.name}[/] on {suite.device}: {scale.description}. "
                  f"Versus the lecture: {scale.versus_lecture()}. "
                  f"Claims: {', '.join(c.id for c in claims)}; {suite.plan.seeds_text(claims)}"
                  + (f" (auto: up to {args.max_seeds} for claims still undecided)" if args.max_seeds else "")
                  + f"; MLflow store {shown(suite.tracker.shown_uri)}")
    device = device_name(suite.device)
    if args.report_only:  # no probe, no estimate: nothing is trained
        runs = {r.key: r for r in rows if r.state != "shared"}  # each distinct run once
        left = [r for r in runs.values() if r.state != "reuse"]
        console.print(f"report only: {len(runs) - len(left)} of the plan's {len(runs)} runs are in the store"
                      + (f"; the claims of the {len(left)} missing are left unjudged" if left else ""), highlight=False)
        return None
    on_probe = lambda key: console.print(f"probing {key} on {device}", highlight=False)  # noqa: E731
    estimate = suite.plan.estimate(rows, on_probe=on_probe)
    if args.plan:
        over = suite.budget.over([c.id for c in claims])  # [] without a budget
        Console().print(plan_table(rows, f"plan: scale {scale.name}, {suite.plan.seeds_text(claims)}", over))
        Console(highlight=False).print("\n".join(plan_summary(rows, device, over, args.workers,
                                                            suite.budget.probe_s)))
        return 0
    limit = min(args.budget_min * 60 if args.budget_min else math.inf, math.inf if args.yes else args.max_hours * 3600)
    if estimate > limit:  # one slow probe (a busy or throttled machine) must not refuse the suite or drop claims
        what = "the budget" if args.budget_min and args.budget_min * 60 == limit else "--max-hours"
        console.print(f"the estimate, {duration(estimate)}, is over {what}: probing again in {REPROBE_PAUSE_S:g} s, "
                      "in case the machine was busy", highlight=False)
        time.sleep(REPROBE_PAUSE_S)
        estimate = suite.plan.estimate(rows, on_probe=on_probe, again=True)
        console.print(probes_compared(*suite.budget.probe_totals, device), highlight=False)
    console.print(plan_summary(rows, device)[-1] + (f"; budget {args.budget_min:g} min" if args.budget_min else ""),
                  highlight=False)
    if min(estimate, args.budget_min * 60 if args.budget_min else math.inf) > args.max_hours * 3600 and not args.yes:
        both = suite.budget.probe_totals
        shown_estimate = (f"{duration(estimate)} on {device} (first probe {duration(both[0])}, second "
                          f"{duration(both[1])})" if both else f"{duration(estimate)} on {device}")
        console.print(f"[red]not started:[/] the estimate, {shown_estimate}, is "
                      f"over --max-hours {args.max_hours:g}. Faster: --scale quick (CPU-sized), --only CLAIM ... "
                      "(fewer claims), --seeds N (fewer seeds), --budget-min M (whole claims within M minutes), or a "
                      "GPU node (scripts/gpu-run; see docs/gpu-node.md). --plan lists every run; --yes runs anyway.")
        return 2
    return None


def probes_compared(first: float, second: float, device: str) -> str:
    """What two probes of one plan say: the estimate by each, and which ran slower (more than 2x)."""
    line = f"first probe {duration(first)}, second {duration(second)}"
    slower, which = max(first / second, second / first), "first" if first > second else "second"
    if slower > 2:
        return (f"{line}: this device ran {slower:.0f}x slower during the {which} probe: the machine is busy or "
                "throttled; the faster probe is used")
    return f"{line}: the faster of the two is used"


def report(args, scale, suite, looked: Looked, command: str) -> int:
    """Write claims.md, claims.csv and the plots; print the verdicts and the time taken."""
    reports = looked.reports
    folder = Path(args.results_dir) / scale.name / device_slug(suite.device)
    try:
        write_results(reports, folder, scale=scale, device=device_slug(suite.device), command=command,
                      env=environment(suite.device), trained=suite.trained, timing=suite.timing,
                      unfinished=suite.unfinished, looks=looked.looks, alpha=looked.alpha)
    except STORE_ERRORS as exc:
        return _lost(exc, suite.tracker, args)
    except ReportBlocked as exc:
        console.print(f"[red]error:[/] {shown(exc)}", soft_wrap=True)
        return 2
    proxy = "" if scale.name == "full" else ", a CPU proxy of the lecture's settings"
    title = f"verdicts, {scale.name} scale{proxy} ({suite.trained} runs trained, the rest reused)"
    out = Console(highlight=False)
    if args.verbose:
        out.print(verdict_table(reports, f"{title} — the evidence of each claim"))
    out.print("\n".join(answer(reports, title, colour=out.is_terminal)), markup=out.is_terminal, soft_wrap=True)
    out.print("\n".join(where_lines(folder, suite.tracker.shown_uri)), markup=False, soft_wrap=True)
    console.print(timing_line(suite.timing, suite.trained), highlight=False)
    if suite.unfinished:
        left = "; ".join(f"{c} ({len(left)} runs left)" for c, left in suite.unfinished.items())
        if args.report_only:
            console.print(f"[yellow]runs missing from the store:[/] not judged yet: {left}. Their workers are still "
                          "running or ended first; re-run the launch (or suite) command to train them.")
            return 4
        console.print(f"[yellow]budget of {args.budget_min:g} min reached:[/] not judged yet: {left}. "
                      "Re-run the same command, with a new --budget-min, to continue.")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    scale = SCALES[args.scale or ("full" if torch.cuda.is_available() and args.device != "cpu" else "quick")]
    command = redact(shlex.join(["python", "-m", "ablations", *argv]))  # recorded on the suite run, in claims.md
    try:
        claims, plans, suite, rows = prepare(args, scale)
    except (ValueError, DataError, TrackingError) as exc:
        console.print(f"[red]error:[/] {shown(redact(str(exc)))}", highlight=False, soft_wrap=True)
        return 2
    status = start(args, scale, claims, suite, rows)
    if status is not None:
        return status
    signal.signal(signal.SIGTERM, terminate)
    try:
        with suite.tracker.store_lock():  # shared with other suites; an import waits for every suite to end,
            # reports included: the two never write results/ together
            looked = (sequential(suite, claims, command, plans, args.max_seeds) if args.max_seeds
                      else Looked(look(suite, claims, command, plans)))
            return report(args, scale, suite, looked, command)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted:[/] the current run is marked KILLED in {shown(suite.tracker.shown_uri)} "
                      f"and its last epoch is in {shown(args.checkpoint_dir)}/; re-run the same command to resume.")
        return 130
    except CheckpointBusy as exc:  # another process trains the same run on a shared checkpoint folder
        console.print(f"[red]error:[/] {shown(exc)}", highlight=False, soft_wrap=True)
        return 3
    except TrackingError as exc:  # a damaged run in the store, named with its fix
        console.print(f"[red]error:[/] {shown(exc)}", soft_wrap=True)
        return 2
    except STORE_ERRORS as exc:  # a full disk, or the tracking store went away
        return _lost(exc, suite.tracker, args)


if __name__ == "__main__":
    sys.exit(main())
