"""``python -m bench``: training and inference throughput of AlexNet per configuration.

Writes results/bench/<device>/bench.csv, bench.json and bench.png and logs them to MLflow.
``--quick`` sizes the sweep for a CPU (a few minutes on 2 cores)."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from alexnet.data import load_fashion_mnist, stratified_subset
from alexnet.env import device_slug, environment, resolve_device
from alexnet.plots import plt, save  # pyplot on the Agg backend
from alexnet.tracking import Tracker
from alexnet.untrusted import Parser, csv_cell, writable_dir

from .throughput import CEILING_TOLERANCE, sweep

console = Console()


def plot(rows: list[dict], path: Path, title: str) -> None:
    ok = [r for r in rows if r["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(ok) + 1.5))
    colours = {"train": "C0", "infer": "C1"}
    ax.barh([r["label"] for r in ok], [r["images_per_s"] for r in ok], color=[colours[r["mode"]] for r in ok])
    for i, r in enumerate(ok):
        ax.text(r["images_per_s"], i, f" {r['images_per_s']:,.0f}", va="center", fontsize=7)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set(xlabel="images/s (log; blue: training, orange: inference)", title=title)
    save(fig, path)


def summary(rows: list[dict]) -> dict:
    """The device pipeline's speed-up over the lecture's in the same run, and the best rows."""
    ok = [r for r in rows if r["status"] == "ok"]
    out = {}
    lecture = [r for r in ok if r["pipeline"] == "lecture"]
    for r in lecture:
        twin = [t for t in ok if t["pipeline"] == "device" and all(
            t[k] == r[k] for k in ("mode", "input_size", "batch_size", "precision", "channels_last", "compile"))]
        if twin:
            out["device_vs_lecture_pipeline"] = twin[0]["images_per_s"] / r["images_per_s"]
    for mode in ("train", "infer"):
        best = max((r for r in ok if r["mode"] == mode and r["input_size"] == 224), key=lambda r: r["images_per_s"],
                   default=None)
        if best:
            out[f"best_{mode}_224"] = {"label": best["label"], "images_per_s": best["images_per_s"],
                                       "fraction_of_ceiling": best["fraction_of_ceiling"]}
    return out


def write(result: dict, folder: Path, env: dict) -> None:
    """bench.json, bench.csv and bench.png in ``folder``; the ceilings and the summary printed."""
    (folder / "bench.json").write_text(json.dumps(result, indent=2))
    keys = list(dict.fromkeys(k for r in result["rows"] for k in r))
    with (folder / "bench.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys + ["device", "torch", "git_commit"])
        w.writeheader()
        for r in result["rows"]:
            w.writerow({k: csv_cell(v) for k, v in {**r, "device": env["device"], "torch": env["torch"],
                                                     "git_commit": env["git_commit"]}.items()})
    plot(result["rows"], folder / "bench.png", f"AlexNet throughput on {env['device']}")
    table = Table(title=f"ceilings (fastest dense matmul of n in {result['matmul_sizes']})")
    table.add_column("precision")
    table.add_column("TFLOP/s", justify="right")
    for prec, tf in result["ceilings_tflops"].items():
        table.add_row(prec, f"{tf:.3f}")
    console.print(table)
    console.print(result["summary"])


def log(result: dict, folder: Path, env: dict, scale: str, tracker: Tracker) -> None:
    """The sweep as an MLflow run of the ``alexnet-bench`` experiment, its files as artifacts."""
    with tracker.open_run(f"bench {env['device']}", {"kind": "bench", "scale": scale}):
        tracker.set_tags({f"env.{k}": v for k, v in env.items()})
        tracker.log_metrics({f"ceiling_tflops.{k}": v for k, v in result["ceilings_tflops"].items()})
        tracker.log_metrics({f"images_per_s.{r['label'].replace(' ', '.')}": r["images_per_s"]
                             for r in result["rows"] if r["status"] == "ok"})
        for name in ("bench.json", "bench.csv", "bench.png"):
            tracker.log_artifact(folder / name)


def outcome(result: dict, folder: Path) -> int:
    """Says what the sweep's numbers rest on; 1 when a case is above its ceiling or failed, else 0."""
    if result["ceiling_remeasured"]:
        console.print(f"note: a case beat the {', '.join(result['ceiling_remeasured'])} ceiling measured before the "
                      "sweep, so it was measured again after it: the ceilings table and bench.csv use the higher "
                      "value (the percentages printed during the sweep, the first)",
                      highlight=False)
    if result["over_ceiling"]:  # still above it, measured twice: the ceiling is mismeasured, not the case fast
        console.print(f"[red]error:[/] above the measured matmul ceiling (by more than {CEILING_TOLERANCE - 1:.0%}, "
                      f"after measuring it again): {', '.join(result['over_ceiling'])}; the "
                      f"ceiling (n in {result['matmul_sizes']}) is not one on this device: its numbers are kept in "
                      f"{folder}, but their fractions of ceiling are wrong", highlight=False)
        return 1
    if result["failed"]:
        console.print(f"[red]error:[/] {len(result['failed'])} case(s) failed (their status in {folder}/bench.csv): "
                      f"{', '.join(result['failed'])}", highlight=False)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m bench", description=__doc__)
    p.add_argument("--scale", choices=["full", "node", "quick", "smoke"], default="full",
                   help="full: the whole GPU sweep; node: the GPU node's short list (scripts/gpu-run); quick: a "
                        "CPU-sized sweep; smoke: three tiny cases that check the machinery in seconds")
    p.add_argument("--quick", action="store_true", help="same as --scale quick")
    p.add_argument("--smoke", action="store_true", help="same as --scale smoke")
    p.add_argument("--budget-s", type=float, default=math.inf,
                   help="stop starting cases after this many seconds (the rest are listed as skipped)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--out", default="results/bench", help="results go to OUT/<device>/")
    p.add_argument("--data-dir", help="Fashion-MNIST folder (default: $ALEXNET_DATA_DIR, else a download)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true", help="skip MLflow logging (e.g. on a machine without it)")
    args = p.parse_args(argv)
    if not args.budget_s > 0:
        p.error(f"invalid --budget-s {args.budget_s}: expected seconds > 0")
    device = resolve_device(args.device)
    folder = Path(args.out) / device_slug(device)
    try:  # before the sweep, so that no measurement is lost to an unwritable folder
        existed = os.path.exists(folder)
        writable_dir(folder, "--out")
    except ValueError as exc:
        p.error(str(exc))
    if not existed:
        console.print(f"created the output folder {folder}", highlight=False)
    data = load_fashion_mnist(args.data_dir)
    try:  # a store that cannot be used is refused now, not after the sweep
        tracker = None if args.no_mlflow else Tracker(args.tracking_uri, experiment="alexnet-bench")
    except ValueError as exc:
        p.error(str(exc))
    images, labels = stratified_subset(data.train_images, data.train_labels, 10_000)
    env = environment(device)
    scale = "smoke" if args.smoke else "quick" if args.quick else args.scale
    console.print(f"benchmarking on {env['device']} ({scale} sweep)")

    def report(case, row):
        extra = (f"{row['images_per_s']:10,.1f} img/s  {row['tflops']:.3f} TFLOP/s "
                 f"({100 * row['fraction_of_ceiling']:.1f}% of ceiling)") if row["status"] == "ok" else row["status"]
        print(f"  {case.label:45s} {extra}", flush=True)

    result = sweep(device, scale, images, labels, progress=report, budget_s=args.budget_s)
    result.update(env=env, scale=scale, command=shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])]),
                  summary=summary(result["rows"]))
    with tracker.store_lock() if tracker else contextlib.nullcontext():  # as a suite's reports: never written
        write(result, folder, env)                                           # while an import checks or copies them
        if tracker:
            log(result, folder, env, scale, tracker)
    console.print(f"wrote {folder}/bench.csv, bench.json, bench.png")
    return outcome(result, folder)


if __name__ == "__main__":
    sys.exit(main())
