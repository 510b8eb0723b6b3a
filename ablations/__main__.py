"""``python -m ablations``: re-run the AlexNet lecture's claims, log to MLflow, write verdicts.

Scales: full (the lecture's settings, for a GPU), quick (a CPU proxy: AlexNet at 1/4 width on
4,000 28-px images, about 12 min on 2 cores), smoke (CI, a few minutes). Default: full when a
GPU is present, else quick. Arm x seed runs already finished in the MLflow store with the same
config and code version are reused, interrupted ones resume from their checkpoint, so
re-running a finished suite trains nothing.

Before training, a probe of at most ~30 s times each distinct configuration on this device and
the suite prints its estimate; --plan prints every run and stops there. A suite estimated over
--max-hours does not start without --yes; --budget-min trains whole claims first and stops in
time, and re-running continues.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from ablations.claims import BY_ID, SCALES
from ablations.commands import (
    MAX_EPOCHS,
    compare_verdicts,
    console,
    import_node,
    list_runs,
    shown,
    store_to_read,
    terminate,
    tune_arm,
)
from ablations.looks import Looked, look, sequential
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
from alexnet.data import ENV_VAR, DataError, load_fashion_mnist
from alexnet.env import device_name, device_slug, environment
from alexnet.stores import TrackingError
from alexnet.tracking import DEFAULT_URI, STORE_ERRORS, Tracker
from alexnet.tune import DEFAULT_STORAGE, STORAGE_ENV, storage
from alexnet.untrusted import Parser, first_line, redact, writable_dir, writable_later

TUNE_HELP = ("To tune one arm's hyperparameters instead: python -m ablations tune CLAIM:ARM [--scale S] "
             "[--trials N] ... (python -m ablations tune --help). To bring a GPU node's archive home: "
             "python -m ablations import ARCHIVE (python -m ablations import --help). To compare two suites' verdicts: "
             "python -m ablations compare A/claims.md B/claims.md. The runs as one table (CSV, Parquet): "
             "python -m ablations runs.")
MAX_SEEDS = 1000
MAX_TRIALS = 10_000
AUTO_MAX = 9  # --seeds auto: looks at 3, 5, 7 and 9 seeds
REPROBE_PAUSE_S = 5.0  # before probing again: a busy spell of the machine may pass


def parse(argv):
    p = Parser(prog="python -m ablations", description=__doc__ + "\n" + TUNE_HELP,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=list(SCALES), help="default: full with a GPU, else quick")
    p.add_argument("--only", nargs="+", metavar="CLAIM",
                   help=f"run only these claims (any of: {', '.join(BY_ID)}); default: all non-optional "
                        "claims of the scale")
    p.add_argument("--seeds", metavar="N|auto[:MAX]",
                   help="seeds per arm (default: the scale's: full 3, quick 5 (relu 3, maxpool 8, augment 12), "
                        "smoke 2; N: N for every claim); auto[:MAX]: start every claim at the scale's seeds and "
                        f"give the claims still undecided 2 more at a time, up to MAX (default {AUTO_MAX}), each "
                        "look judged at alpha 0.05 / looks so that stopping early adds no false positives; finished "
                        "seeds are reused")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the scale's)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads of every run (torch.set_num_threads; default: torch's, one per core); the "
                        "sums' order changes with it, as between CPU models, so verdicts should not; recorded as "
                        "the device name (cpu-...-Nthreads)")
    p.add_argument("--tracking-uri", help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else {DEFAULT_URI})")
    p.add_argument("--data-dir", help=f"Fashion-MNIST folder (default: ${ENV_VAR}, else a torchvision download)")
    p.add_argument("--results-dir", default="results", help="reports go to RESULTS_DIR/<scale>/<device>/")
    p.add_argument("--checkpoint-dir", default="checkpoints", help="per-run checkpoints of unfinished runs")
    p.add_argument("--tune-lr", type=int, default=0, metavar="TRIALS",
                   help="fair mode: first tune each arm's learning rate with an Optuna study of TRIALS trials on a "
                        "validation split of the training set, then also run its seeds at that lr; verdicts are "
                        "reported at the lecture's lr and at the tuned ones (default 0: off)")
    p.add_argument("--storage", default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE),
                   help=f"Optuna storage URL of the lr studies (--tune-lr; the ladder's sigmoid rungs) "
                        f"(default: ${STORAGE_ENV}, else {DEFAULT_STORAGE}); "
                        "keep passwords off the command line: PGPASSWORD or ~/.pgpass for PostgreSQL")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: only when stderr is a terminal)")
    p.add_argument("--precision", choices=["auto", "fp32", "tf32", "bf16"], default="auto",
                   help="numerics of every run: auto is bf16 autocast + channels_last on CUDA (tensor "
                        "cores; the optional precision claim checks it changes no verdict) and fp32 on a CPU; "
                        "fp32 keeps the lecture's numerics (TF32 off). Recorded on every run and in claims.md")
    p.add_argument("--verbose", action="store_true",
                   help="also print every claim's evidence (the table of claims.md) on the console; by default "
                        "one row per claim: verdict, deciding difference, reason")
    p.add_argument("--plan", action="store_true",
                   help="print every arm x seed run (train, resume, reuse, shared) with this machine's estimate, "
                        "then exit without training")
    p.add_argument("--max-hours", type=float, default=2.0,
                   help="do not start a suite estimated to take longer than this (default 2); --yes runs it anyway")
    p.add_argument("--yes", action="store_true", help="run even when the estimate exceeds --max-hours")
    p.add_argument("--budget-min", type=float, metavar="M",
                   help="wall-clock budget in minutes: whole claims first, no run started that cannot finish by "
                        "its estimate, a clean stop with the report of what finished; re-run to continue")
    return checked(p, p.parse_args(argv))


def checked(p: argparse.ArgumentParser, args):
    """The parsed options, each range checked (``p.error`` names the bad value and what is allowed)."""
    for name in ("max_hours", "budget_min"):
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            p.error(f"invalid --{name.replace('_', '-')} {value}: expected a finite number of "
                    f"{'hours' if name == 'max_hours' else 'minutes'} > 0")
    args.max_seeds = None
    if args.seeds is not None:
        args.seeds, args.max_seeds = parse_seeds(p, args.seeds, SCALES[args.scale or "quick"].seeds)
    if not 0 <= args.tune_lr <= MAX_TRIALS:
        p.error(f"invalid --tune-lr {args.tune_lr}: expected 0 (off) or a number of trials up to {MAX_TRIALS:,}")
    if args.threads is not None and not 1 <= args.threads <= 1024:
        p.error(f"invalid --threads {args.threads}: expected an integer from 1 to 1,024 (CPU threads)")
    if args.epochs is not None and not 1 <= args.epochs <= MAX_EPOCHS:
        p.error(f"invalid --epochs {args.epochs}: expected an integer from 1 to {MAX_EPOCHS:,}")
    return args


def parse_seeds(p: argparse.ArgumentParser, text: str, first: int) -> tuple[int | None, int | None]:
    """--seeds N -> (N, None); auto[:MAX] -> (None, MAX): the scale's seeds first, MAX at most."""
    expected = f"expected an integer from 1 to {MAX_SEEDS}, auto, or auto:MAX with MAX from {first} to {MAX_SEEDS}"
    head, _, tail = text.partition(":")
    try:
        n = int(tail or AUTO_MAX) if head == "auto" else int(text)
    except ValueError:
        p.error(f"invalid --seeds {text}: {expected}")
    if not (first if head == "auto" else 1) <= n <= MAX_SEEDS:
        p.error(f"invalid --seeds {text}: {expected}")
    return (None, n) if head == "auto" else (n, None)


def _lost(exc: BaseException, tracker: Tracker, args) -> int:
    """A fault mid-suite: say what failed and that re-running the same command resumes."""
    console.print(f"[red]error:[/] {exc.__class__.__name__}: {shown(redact(first_line(exc, 500)))}\n"
                  f"Nothing finished is lost: finished runs are in {tracker.shown_uri}, the interrupted run's last "
                  f"epoch is in {args.checkpoint_dir}/. Fix the cause (tracking store reachable? disk space?) "
                  "and re-run the same command: it resumes.")
    return 3


SUBCOMMANDS = {"tune": tune_arm, "import": import_node, "compare": compare_verdicts, "runs": list_runs}


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
        precision=None if args.precision == "auto" else args.precision))
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
    on_probe = lambda key: console.print(f"probing {key} on {device}", highlight=False)  # noqa: E731
    estimate = suite.plan.estimate(rows, on_probe=on_probe)
    if args.plan:
        over = suite.budget.over([c.id for c in claims])  # [] without a budget
        Console().print(plan_table(rows, f"plan: scale {scale.name}, {suite.plan.seeds_text(claims)}", over))
        Console(highlight=False).print("\n".join(plan_summary(rows, device, over)))
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
        console.print(f"[yellow]budget of {args.budget_min:g} min reached:[/] not judged yet: "
                      + "; ".join(f"{c} ({len(left)} runs left)" for c, left in suite.unfinished.items())
                      + ". Re-run the same command, with a new --budget-min, to continue.")
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
