"""``python -m alexnet {train,shapes}``: one training run, or the lecture's shape trace."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import Config
from .data import ENV_VAR, DataError

console = Console()


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per Config field, with the field's default, help and choices."""
    group = parser.add_argument_group("run configuration (defaults are the lecture's)")
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if f.type in ("bool", bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
            continue
        kind = {"float": float, "int": int, "str": str}.get(str(f.type), int)  # int | None -> int
        choices = f.metadata["choices"]
        group.add_argument(flag, type=type(choices[0]) if choices else kind, choices=choices,
                           default=f.default, help=help_text, metavar=None if choices else kind.__name__.upper())


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Config:
    try:
        return Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})
    except ValueError as exc:
        parser.error(str(exc))


def epoch_table(result: dict) -> Table:
    table = Table(title=f"{result['status']} run, seed {result['seed']} on {result['env']['device']}")
    for col in ("epoch", "loss", "train acc", "test acc", "examples/s", "time (s)"):
        table.add_column(col, justify="right")
    for e in result["epochs"]:
        table.add_row(str(e["epoch"]), f"{e['train_loss']:.3f}", f"{e['train_acc']:.3f}", f"{e['test_acc']:.3f}",
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
    from .train import train

    config = config_from_args(args, parser)
    result = train(config, args.seed, data_dir=args.data_dir, checkpoint=args.checkpoint,
                   progress=args.progress)
    console.print(epoch_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["status"] == "finished" else 3


def cmd_shapes(args, parser) -> int:
    from .model import build_alexnet, build_lenet, shape_trace

    models = {"alexnet": lambda: (build_alexnet(Config()), 224),
              "alexnet28": lambda: (build_alexnet(Config(input_size=28)), 28),
              "lenet": lambda: (build_lenet(), 28)}
    for name in args.models:
        model, size = models[name]()
        console.print(shapes_table(f"{name} ({size} px)", shape_trace(model, size)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one AlexNet and print the per-epoch table",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of weights, dropout, shuffling and augmentation")
    p.add_argument("--data-dir", help=f"folder with the four Fashion-MNIST .gz files (else ${ENV_VAR}, "
                                      "else a torchvision download into the cache)")
    p.add_argument("--checkpoint", help="file saved after every epoch; an existing one is resumed")
    p.add_argument("--json", help="write the full result (per-epoch metrics, environment) to this file")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: only when stderr is a terminal)")
    p.set_defaults(run=cmd_train, parser=p)

    p = sub.add_parser("shapes", help="the lecture's layer-by-layer shape trace with parameter and FLOP counts")
    p.add_argument("models", nargs="*", default=["alexnet"], choices=["alexnet", "alexnet28", "lenet"],
                   help="which networks to trace (default: alexnet)")
    p.set_defaults(run=cmd_shapes, parser=p)

    args = parser.parse_args(argv)
    try:
        return args.run(args, args.parser)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
