"""Optuna tuning of the trainer's hyperparameters, scored on a validation split.

A study lives in an Optuna storage (SQLite by default, any database URL for several
machines). ``create_study`` makes it once; workers then ``load`` it and add trials. Every
trial is an MLflow run nested under the study's run, whose id the study keeps as a user
attribute so that workers on other machines nest under it too."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import replace

import optuna

from .config import Config
from .data import FashionMNIST
from .stores import intact, recover, sqlite_path
from .tracking import Tracker
from .train import train
from .untrusted import csv_cell, first_line, redact

DEFAULT_STORAGE = "sqlite:///optuna.db"
STORAGE_ENV = "ALEXNET_OPTUNA_STORAGE"  # a storage URL kept off the command line (passwords: PGPASSWORD, ~/.pgpass)
RANGES = {  # name -> (low, high, log scale); batch_size takes the powers of two in its range
    "lr": (1e-3, 0.3, True),
    "batch_size": (32, 256, True),
    "momentum": (0.0, 0.95, False),
    "weight_decay": (1e-6, 1e-2, True),
    "dropout": (0.0, 0.8, False),
}
PRUNERS = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
           "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
           "none": optuna.pruners.NopPruner}


class Diverged(RuntimeError):
    """A trial whose loss became NaN or infinite: recorded by Optuna as FAIL."""


def search_space(names: list[str], ranges: dict[str, tuple[float, float]] | None = None) -> dict:
    """{name: (low, high, log)} for the named parameters, with ranges overridden; bad input raises."""
    unknown = [n for n in names if n not in RANGES]
    if unknown:
        raise ValueError(f"unknown parameter {', '.join(map(repr, unknown))}: expected any of {', '.join(RANGES)}")
    space = {}
    for name in names:
        low, high, log = RANGES[name]
        low, high = (ranges or {}).get(name, (low, high))
        if not low < high:
            raise ValueError(f"empty search range for {name}: low {low} is not below high {high}")
        if log and low <= 0:
            raise ValueError(f"search range for {name} is on a log scale: low {low} must be > 0")
        if name == "batch_size" and not _batch_sizes(low, high):
            raise ValueError(f"search range for batch_size {low}..{high} holds no power of two")
        space[name] = (low, high, log)
    return space


def _batch_sizes(low, high) -> list[int]:
    return [2**k for k in range(0, 16) if low <= 2**k <= high]


def suggest(trial: optuna.Trial, space: dict) -> dict:
    values = {}
    for name, (low, high, log) in space.items():
        if name == "batch_size":
            values[name] = trial.suggest_categorical(name, _batch_sizes(low, high))
        else:
            values[name] = trial.suggest_float(name, low, high, log=log)
    return values


def storage(url: str, create: bool = True) -> optuna.storages.RDBStorage:
    """The study database, or a ValueError that names the URL (password redacted) and what to check.
    ``create=False``: an SQLite file that does not exist is not made (a ValueError: no study there)."""
    path = sqlite_path(url)
    if path is not None and not create and not os.path.exists(path):
        raise ValueError(f"no Optuna storage at {path} yet")
    if path is not None and os.path.isfile(path):
        intact(path, f"Optuna storage {path}", recover(path) + ", or start a fresh one (--storage "
               "sqlite:///fresh.db: its trials are lost)")
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, skip_table_creation=not create)
    except Exception as exc:  # noqa: BLE001  sqlalchemy's connection and URL errors
        reason = first_line(exc)
        raise ValueError(f"cannot open Optuna storage {redact(url)!r}: {redact(reason)}. Check the URL, that the "
                         "database server is running and reachable, and its credentials (PGPASSWORD or "
                         "~/.pgpass for PostgreSQL)") from None


def create_study(url: str, name: str, tracker: Tracker, *, base: Config, space: dict, pruner: str = "median",
                 tags: dict | None = None) -> optuna.Study:
    """Create the study once (an existing name is an error) and its MLflow parent run."""
    try:
        study = optuna.create_study(storage=storage(url), study_name=name, direction="maximize",
                                    pruner=PRUNERS[pruner]())
    except optuna.exceptions.DuplicatedStudyError:
        raise ValueError(f"study {name!r} already exists in {redact(url)}: join it with --join, "
                         "or pick another --study") from None
    with tracker.open_run(f"study {name}", {"kind": "study", "study": name, **(tags or {})}) as run_id:
        tracker.log_params({**base.to_dict(), "space": space, "pruner": pruner, "storage": redact(url)})
    study.set_user_attr("mlflow_run_id", run_id)
    study.set_user_attr("base_config", base.to_dict())
    study.set_user_attr("space", {k: list(v) for k, v in space.items()})
    study.set_user_attr("pruner", pruner)
    return study


def load_study(url: str, name: str, *, seed: int) -> optuna.Study:
    """Join an existing study; the sampler is seeded per worker so workers explore differently."""
    db = storage(url, create=False)
    try:
        stored = optuna.load_study(storage=db, study_name=name)
    except KeyError:
        raise ValueError(f"no study {name!r} in {redact(url)}: create it first (without --join)") from None
    pruner = PRUNERS[stored.user_attrs.get("pruner", "median")]()
    return optuna.load_study(storage=db, study_name=name, sampler=optuna.samplers.TPESampler(seed=seed),
                             pruner=pruner)


def optimize(study: optuna.Study, tracker: Tracker, data: FashionMNIST, *, trials: int | None,
             timeout: float | None, seed: int = 0, callbacks=()) -> None:
    """Add trials to ``study``: each trains the study's base config with suggested values and
    reports the validation accuracy of every epoch for pruning."""
    base = Config(**study.user_attrs["base_config"])
    space = {k: tuple(v) for k, v in study.user_attrs["space"].items()}
    parent = study.user_attrs["mlflow_run_id"]

    def objective(trial: optuna.Trial) -> float:
        config = replace(base, **suggest(trial, space))
        pruned = False
        tags = {"kind": "trial", "study": study.study_name, "trial": trial.number}
        with tracker.open_run(f"trial {trial.number}", tags, parent=parent):
            tracker.log_train_start(config.to_dict(), {}, seed)

            def report(record):
                tracker.log_epoch(record)
                trial.report(record["val_acc"], record["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")

            try:
                result = train(config, seed, data=data, on_epoch=report, progress=False)
            except optuna.TrialPruned:
                pruned = True
            state = "PRUNED" if pruned else "FAIL" if result.status == "diverged" else "COMPLETE"
            tracker.set_tags({"state": state})
            if state == "COMPLETE":
                tracker.log_metrics({"value": result.final("val_acc")})
        if pruned:
            raise optuna.TrialPruned()
        if state == "FAIL":
            raise Diverged(f"trial {trial.number} diverged (loss NaN or infinite)")
        value = result.final("val_acc")
        return value if math.isfinite(value) else 0.0

    with tracker.open_run("", {}, run_id=parent):  # the study's run is reopened so that trials nest under it
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=(Diverged,), callbacks=list(callbacks))


def report_study(study: optuna.Study, tracker: Tracker, folder) -> dict:
    """Best params and Optuna's plots, written to ``folder`` and logged on the study's run."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    folder.mkdir(parents=True, exist_ok=True)
    states = [t.state.name for t in study.trials]
    summary = {"study": study.study_name, "trials": len(states),
               "states": {s: states.count(s) for s in sorted(set(states))}}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        summary.update(best_value=study.best_value, best_params=study.best_params, best_trial=study.best_trial.number)
    (folder / "best.json").write_text(json.dumps(summary, indent=2))
    study.trials_dataframe().map(csv_cell).to_csv(folder / "trials.csv", index=False)
    plots = {"optimization_history.png": ovm.plot_optimization_history,
             "parallel_coordinate.png": ovm.plot_parallel_coordinate}
    if len(complete) >= 2 and len(study.user_attrs["space"]) >= 2:
        plots["param_importances.png"] = ovm.plot_param_importances
    for name, plot in plots.items():
        if not complete:
            break
        with warnings.catch_warnings():  # optuna marks its matplotlib plots experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = plot(study)
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
    with tracker.open_run("", {}, run_id=study.user_attrs["mlflow_run_id"]):
        tracker.log_metrics({k: v for k, v in summary.items() if k == "best_value"})
        tracker.log_params({f"best.{k}": v for k, v in summary.get("best_params", {}).items()})
        for path in sorted(folder.iterdir()):
            tracker.log_artifact(path)
    return summary
