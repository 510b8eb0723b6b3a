"""``python -m alexnet {train,shapes,tune,preflight}``: one training run, the lecture's shape trace, an
Optuna study, or the one-minute check of every numerics path before a budgeted GPU run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import Config
from .data import ENV_VAR, DataError
from .result import TrainResult
from .untrusted import Parser, finite, redact, safe_name, writable_dir, writable_file

console = Console()
SHAPE_MODELS = ("alexnet", "alexnet28", "lenet")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per Config field, with the field's default, help and choices."""
    group = parser.add_argument_group("run configuration (defaults are the lecture's)")
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]  # the formatter adds the default
        if f.type in ("bool", bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
            continue
        kind = {"float": float, "int": int, "str": str}.get(str(f.type), int)  # int | None -> int
        choices = f.metadata["choices"]
        group.add_argument(flag, type=type(next(iter(choices))) if choices else kind, choices=choices,
                           default=f.default, help=help_text, metavar=None if choices else kind.__name__.upper())


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Config:
    try:
        return Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})
    except ValueError as exc:
        parser.error(str(exc))


def epoch_table(result: TrainResult) -> Table:
    table = Table(title=f"{result.status} run, seed {result.seed} on {result.env['device']}")
    for col in ("epoch", "loss", "train acc", "train acc (eval mode)", f"{result.eval_split} acc", "examples/s",
                "time (s)"):
        table.add_column(col, justify="right")
    for e in result.epochs:
        table.add_row(str(e["epoch"]), f"{e['train_loss']:.3f}", f"{e['train_acc']:.3f}",
                      f"{e.get('train_eval_acc', math.nan):.3f}", f"{e[result.eval_key]:.3f}",
                      f"{e['examples_per_s']:.1f}", f"{e['epoch_time_s']:.1f}")
    return table


def shapes_table(name: str, rows) -> Table:
    table = Table(title=f"{name}: output shapes for one 1-channel image")
    for col in ("layer", "output shape", "parameters", "FLOPs"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in rows:
        table.add_row(r.layer, str(list(r.shape)), f"{r.params:,}", f"{r.flops:,}")
    table.add_row("total", "", f"{sum(r.params for r in rows):,}", f"{sum(r.flops for r in rows):,}",
                  style="bold")
    return table


def cmd_train(args, parser) -> int:
    """One run; under ``torchrun --nproc-per-node N`` a data-parallel one (rank 0 reports)."""
    import torch.distributed as dist

    from .run import run

    config = config_from_args(args, parser)
    if args.json:
        writable_file(args.json, "--json")  # before training, so that the result is not lost to a bad path
    if args.checkpoint:
        writable_file(args.checkpoint, "--checkpoint")
    try:
        result = run(config, args.seed, data_dir=args.data_dir, checkpoint=args.checkpoint, progress=args.progress)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", 0)) == 0:
        console.print(epoch_table(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
    return 0 if result.status == "finished" else 3


def cmd_shapes(args, parser) -> int:
    from .model import build_alexnet, build_lenet, shape_trace

    try:
        configs = {"alexnet": Config(width=args.width), "alexnet28": Config(input_size=28, width=args.width)}
    except ValueError as exc:
        parser.error(str(exc))
    models = {"alexnet": lambda: (build_alexnet(configs["alexnet"]), 224),
              "alexnet28": lambda: (build_alexnet(configs["alexnet28"]), 28),
              "lenet": lambda: (build_lenet(), 28)}
    unknown = [m for m in args.models if m not in models]
    if unknown:  # checked here: argparse's choices reject the default of an nargs="*" positional on Python 3.11
        parser.error(f"invalid model {unknown[0]!r}: expected any of {', '.join(SHAPE_MODELS)}")
    for name in args.models:
        model, size = models[name]()
        width = f", width {args.width:g}" if name in configs and args.width != 1 else ""  # LeNet has no width
        console.print(shapes_table(f"{name} ({size} px{width})", shape_trace(model, size)))
    return 0


def cmd_tune(args, parser) -> int:
    return tune_from(config_from_args(args, parser), args, parser)


def tune_from(base: Config, args, parser) -> int:
    """Create or join the study ``args.study`` over ``base`` (the options of ``add_tune_options``),
    add trials and report; used by ``python -m alexnet tune`` and ``python -m ablations tune``."""
    from .data import load_fashion_mnist
    from .tracking import Tracker
    from .tune import create_study, load_study, optimize, report_study, search_space

    safe_name(args.study, "--study")
    if args.trials < 0:
        parser.error(f"invalid --trials {args.trials}: expected 0 (only report) or a number of trials to add")
    if args.timeout is not None:
        finite(args.timeout, "--timeout", low=1e-9, allowed="a finite number of seconds > 0")
    if args.worker < 0:
        parser.error(f"invalid --worker {args.worker}: expected an index >= 0")
    if base.validation_size is None:
        base = dataclasses.replace(base, validation_size=1000)
    ranges = {}
    for item in args.range:
        name, _, bounds = item.partition("=")
        try:
            low, high = (finite(float(x), "bound") for x in bounds.split(":"))
        except ValueError:
            parser.error(f"invalid --range {item!r}: expected NAME=LOW:HIGH with finite numbers, e.g. lr=0.001:0.3")
        ranges[name] = (low, high)
    space = search_space(args.params, ranges)
    unknown = set(ranges) - set(space)
    if unknown:
        parser.error(f"--range for {', '.join(sorted(unknown))} which is not tuned: add it to --params")
    if args.report:  # every option checked first: a refusal makes no folder
        report_dir = Path(args.results_dir) / args.study
        existed = os.path.exists(report_dir)
        writable_dir(report_dir, "--results-dir")
        if not existed:
            console.print(f"created the report folder {report_dir}", highlight=False, markup=False)
    tracker = Tracker(args.tracking_uri)
    if not args.join:
        create_study(args.storage, args.study, tracker, base=base, space=space, pruner=args.pruner)
        console.print(f"created study {args.study!r} in {redact(args.storage)}")
        if args.create_only:
            return 0
    study = load_study(args.storage, args.study, seed=args.seed + 1000 * args.worker)
    if args.trials or args.timeout:
        optimize(study, tracker, load_fashion_mnist(args.data_dir), trials=args.trials, timeout=args.timeout,
                 seed=args.seed)
    if args.report:
        summary = report_study(study, tracker, Path(args.results_dir) / args.study)
        console.print(summary)
    return 0


def add_tune_options(p: argparse.ArgumentParser) -> None:
    """The options of a tuning study (without the run configuration it starts from)."""
    from .tune import DEFAULT_STORAGE, PRUNERS, RANGES, STORAGE_ENV

    p.add_argument("--params", nargs="+", default=list(RANGES), help=f"what to tune, any of {', '.join(RANGES)}")
    p.add_argument("--range", action="append", default=[], metavar="NAME=LOW:HIGH",
                   help="search range of a tuned parameter (repeatable); defaults: " +
                        ", ".join(f"{k}={lo:g}:{hi:g}{' (log)' if log else ''}" for k, (lo, hi, log) in RANGES.items()))
    p.add_argument("--trials", type=int, default=10, help="trials this process adds (0: only report)")
    p.add_argument("--timeout", type=float, help="stop adding trials after this many seconds")
    p.add_argument("--storage", default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE),
                   help=f"Optuna storage URL (sqlite:///..., postgresql://USER@HOST/DB); ${STORAGE_ENV} if set. "
                        "Keep passwords off the command line: PGPASSWORD or ~/.pgpass")
    p.add_argument("--study", default="alexnet-tune",
                   help="study name (letters, digits, '.', '_', '-': it names the folder RESULTS_DIR/<study>)")
    p.add_argument("--create-only", action="store_true", help="create the study (once), add no trials")
    p.add_argument("--join", action="store_true", help="join an existing study instead of creating it")
    p.add_argument("--worker", type=int, default=0, help="worker index: offsets the sampler seed")
    p.add_argument("--pruner", choices=list(PRUNERS), default="median")
    p.add_argument("--seed", type=int, default=0, help="training seed of every trial and base sampler seed")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write best params and plots to RESULTS_DIR/<study>/ and the study's MLflow run")
    p.add_argument("--results-dir", default="results/tune")
    p.add_argument("--tracking-uri", help="MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    p.add_argument("--data-dir", help=f"Fashion-MNIST folder; None: ${ENV_VAR}, else a download")


def cmd_preflight(args, parser) -> int:
    """Every numerics path for two steps, a table, exit 1 when one fails (its traceback printed)."""
    from .data import load_fashion_mnist
    from .preflight import run

    table = Table(title=f"preflight: {args.input_size}-px AlexNet, width {args.width:g}, two SGD steps per path")
    for col in ("path", "status", "train loss", "time (s)", "detail"):
        table.add_column(col, justify="right" if col in ("train loss", "time (s)") else "left")

    def shown(check):
        line = check.detail.strip().splitlines()[-1] if check.detail else ""
        print(f"preflight: {check.path}: {check.status}" + (f" ({line})" if line else ""), file=sys.stderr,
              flush=True)
        if check.status == "failed":
            print(check.detail, file=sys.stderr, flush=True)
        table.add_row(check.path, check.status, f"{check.loss:.3f}", f"{check.seconds:.1f}", line[:80])

    checks = run(load_fashion_mnist(args.data_dir), args.device, args.input_size, args.width, args.compile,
                 on_check=shown)
    console.print(table)
    failed = [c.path for c in checks if c.status == "failed"]
    if failed:
        print(f"preflight failed: {', '.join(failed)} (tracebacks above); fix it before spending a budget",
              file=sys.stderr)
        return 1
    return 0


def check_seed(args, parser) -> None:
    if not 0 <= getattr(args, "seed", 0) < 2**31:
        parser.error(f"invalid --seed {args.seed}: expected an integer in [0, 2**31)")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m alexnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one AlexNet and print the per-epoch table",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of weights, dropout, shuffling and augmentation")
    p.add_argument("--data-dir", help=f"folder with the four Fashion-MNIST .gz files; None: ${ENV_VAR}, "
                                      "else a torchvision download into the cache")
    p.add_argument("--checkpoint", help="file saved after every epoch; an existing one is resumed")
    p.add_argument("--json", help="write the full result (per-epoch metrics, environment) to this file")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar; None: only when stderr is a terminal")
    p.set_defaults(run=cmd_train, parser=p)

    p = sub.add_parser("shapes", help="the lecture's layer-by-layer shape trace with parameter and FLOP counts")
    p.add_argument("models", nargs="*", default=["alexnet"], metavar="MODEL",
                   help=f"which networks to trace, any of {', '.join(SHAPE_MODELS)} (default: alexnet)")
    p.add_argument("--width", type=float, default=1.0,
                   help="AlexNet's width multiplier (default 1, the lecture's; 0.25: the quick scale's); LeNet "
                        "ignores it")
    p.set_defaults(run=cmd_shapes, parser=p)

    p = sub.add_parser("tune", help="Optuna study of the trainer's hyperparameters on a validation split",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(p)
    add_tune_options(p)
    p.set_defaults(run=cmd_tune, parser=p)

    p = sub.add_parser("preflight", help="two SGD steps, an evaluation and a checkpoint round trip on every numerics "
                                          "path (fp32, tf32, bf16 + channels_last, compile): exit 1 if one fails",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--input-size", type=int, choices=[28, 224], default=224, help="the run's input size")
    p.add_argument("--width", type=float, default=1.0, help="the run's width multiplier")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also the torch.compile path (default: on CUDA only; a CPU compile takes minutes)")
    p.add_argument("--data-dir", help=f"folder with the four Fashion-MNIST .gz files; None: ${ENV_VAR}")
    p.set_defaults(run=cmd_preflight, parser=p)

    args = parser.parse_args(argv)
    check_seed(args, args.parser)
    try:
        return args.run(args, args.parser)
    except (DataError, ValueError) as exc:  # CheckpointError and TrackingError are ValueErrors
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
