"""The runs as one tidy table (pandas): one row per claim x arm x seed x metric, with the run's lr,
status, config hash, run id, scale, device, code version, torch and git commit. Built from a
suite's reports (``from_reports``: claims.csv is this table) or loaded from the MLflow store
(``from_store``: for notebooks, and ``python -m ablations runs``)::

    from ablations.reporting.table import from_store
    runs = from_store()  # the newest suite in $MLFLOW_TRACKING_URI, else ./mlflow.db
    acc = runs.query("claim == 'relu' and metric == 'test_acc'").pivot(index="seed", columns="arm", values="value")
    print((acc["relu"] - acc["sigmoid"]).astype(float).describe())
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from alexnet.result import TrainResult
from alexnet.tracking import STORE_ERRORS, Tracker
from alexnet.untrusted import csv_cell

COLUMNS = ["claim", "arm", "lr", "seed", "metric", "value", "status", "config_key", "run_id", "scale", "device",
           "code_version", "torch", "git_commit"]
METRICS = ("test_acc", "train_acc", "train_eval_acc", "train_loss", "gap")  # final values, then the run's figures


def run_values(result: TrainResult) -> dict[str, float]:
    """metric -> value of one run: final metrics, FLOPs and parameters, median training speed and
    wall time, first-epoch gradient norm of each layer."""
    values = {m: result.final(m) for m in METRICS}
    values |= {"flops_per_image": result.flops_per_image, "params": result.params}
    speeds = sorted(e["examples_per_s"] for e in result.epochs)
    if speeds:
        values |= {"train_images_per_s": speeds[len(speeds) // 2], "wall_s": result.wall_s}
    return values | {f"grad_norm_epoch1.{name}": g for name, g in result.grad_norms.items()}


def _rows(claim: str, arm: str, lr: float, seed: int, config_key: str, run_id: str, result: TrainResult,
          scale: str, device: str) -> list[list]:
    env = result.env
    return [[claim, arm, lr, seed, metric, value, result.status, config_key, run_id, scale, device,
             env["code_version"], env["torch"], env["git_commit"]] for metric, value in run_values(result).items()]


def _frame(rows: list[list]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS, dtype=object)  # object: ints stay ints, as the store holds them


def from_reports(reports: list, scale: str, device: str) -> pd.DataFrame:
    """The table of a suite's claim reports (each claim's runs, then its runs at tuned lrs)."""
    return _frame([row for r in reports for run in r.runs + (r.tuned.runs if r.tuned else [])
                   for row in _rows(r.claim.id, run.arm, run.config.lr, run.seed, run.config.key(), run.run_id,
                                    run.result, scale, device)])


def from_store(tracker: Tracker | None = None, suite_run: str | None = None) -> pd.DataFrame:
    """The table of a suite run in the store (default: the newest finished one in the default
    store, $MLFLOW_TRACKING_URI or ./mlflow.db): its judged claims' runs, as claims.csv lists them."""
    tracker = tracker or Tracker()
    suites = tracker.find({"kind": "suite"})
    suite = next((s for s in suites if s.info.run_id == suite_run), None) if suite_run else (suites or [None])[0]
    if suite is None:
        known = f" (suite runs there: {', '.join(s.info.run_id for s in suites)})" if suites else ""
        raise ValueError(f"no finished suite run {suite_run or ''} in {tracker.shown_uri}{known}: run python -m "
                         "ablations first")
    try:
        scale, device = suite.data.tags["scale"], _device(suite.data.tags)
        order = list(dict.fromkeys(suite.data.params.get("claims", "").split(",")))
        claims = {c.data.tags["claim"]: c for c in tracker.find({"kind": "claim"})
                  if c.data.tags.get("mlflow.parentRunId") == suite.info.run_id}
        rows = []
        for claim_id in [c for c in order if c in claims and claims[c].data.tags.get("verdict") != "unfinished"]:
            for run in tracker.load_dict(claims[claim_id], "verdict.json")["runs"]:
                arm_run = tracker.run(run["run_id"])
                rows += _rows(claim_id, run["arm"], run["lr"], run["seed"], arm_run.data.tags["config_key"],
                              run["run_id"], tracker.load_result(arm_run), scale, device)
    except (KeyError, TypeError, *STORE_ERRORS) as exc:  # a store written by others: one line, not a traceback
        raise ValueError(f"suite run {suite.info.run_id} in {tracker.shown_uri} is incomplete ({exc.__class__.__name__}"
                         f" {str(exc)[:100]}): pass another --suite-run") from None
    return _frame(rows)


def _device(tags: dict) -> str:
    """The results folder's device name: the suite's ``device`` tag, else (suites before it) from
    its ``env.device`` as ``alexnet.env.device_slug`` names it: ``cpu`` or the GPU's slug."""
    if "device" in tags:
        return tags["device"]
    name = tags.get("env.device", "cpu")
    return "cpu" if name.startswith("cpu") else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """claims.csv: the table as Python's csv module writes it (\\r\\n lines, ``nan`` for a missing value),
    text that would start a spreadsheet formula quoted as text (``alexnet.untrusted.csv_cell``)."""
    safe = pd.DataFrame({c: pd.Series([csv_cell(v) for v in table[c]], index=table.index, dtype=object)
                         for c in table.columns})  # object: an int stays an int beside floats
    safe.to_csv(path, index=False, lineterminator="\r\n", na_rep="nan")
