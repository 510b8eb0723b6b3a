"""The suite's command line (``python -m ablations [options]``): its options, each range checked
before any work. ``python -m ablations launch`` checks its workers' arguments with the same parser."""

from __future__ import annotations

import argparse
import math
import os

from ablations.claims import BY_ID, SCALES
from ablations.commands import MAX_EPOCHS
from alexnet.data import ENV_VAR
from alexnet.tracking import DEFAULT_URI
from alexnet.tune import DEFAULT_STORAGE, STORAGE_ENV
from alexnet.untrusted import Parser

DESCRIPTION = """``python -m ablations``: re-run the AlexNet lecture's claims, log to MLflow, write verdicts.

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
TUNE_HELP = ("To tune one arm's hyperparameters instead: python -m ablations tune CLAIM:ARM [--scale S] "
             "[--trials N] ... (python -m ablations tune --help). To bring a GPU node's archive home: "
             "python -m ablations import ARCHIVE (python -m ablations import --help). To compare two suites' verdicts: "
             "python -m ablations compare A/claims.md B/claims.md. The runs as one table (CSV, Parquet): "
             "python -m ablations runs. Workers on a Slurm cluster (or this machine), started for you: "
             "python -m ablations launch --help.")
MAX_SEEDS = 1000
MAX_TRIALS = 10_000
MAX_WORKERS = 10_000  # far beyond any cluster allocation this suite could use
AUTO_MAX = 9  # --seeds auto: looks at 3, 5, 7 and 9 seeds


def parse(argv, prog: str = "python -m ablations"):
    p = Parser(prog=prog, description=DESCRIPTION + "\n" + TUNE_HELP,
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
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="with --plan: also the wall time for N workers sharing the store (python -m ablations "
                        "launch --workers N), each taking the next run in plan order when it is free (default 1)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: judge the claims from the runs the store holds and write the report "
                        "(python -m ablations launch --wait does this once its workers end); runs missing from the "
                        "store are listed and the exit status is 4")
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
    if not 1 <= args.workers <= MAX_WORKERS:
        p.error(f"invalid --workers {args.workers}: expected an integer from 1 to {MAX_WORKERS:,}")
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


