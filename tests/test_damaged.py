"""A store damaged in any table's pages (bytes overwritten mid-file, as a failing disk or a killed
copy leaves it) is found when it is opened and named in one line with the fix (issue 39): the
MLflow store, the Optuna storage and an imported archive's database."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from ablations.__main__ import main

MLFLOW_TABLES = ["runs", "params", "metrics", "latest_metrics", "tags", "experiments", "experiment_tags",
                 "alembic_version"]
OPTUNA_TABLES = ["studies", "trials", "trial_values", "trial_params", "trial_user_attributes",
                 "study_directions", "version_info"]


def damage(db: Path, table: str) -> None:
    """Overwrite the header of ``table``'s root page with bytes no page has."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?",
                              (table,)).fetchone()
        (size,) = con.execute("PRAGMA page_size").fetchone()
    with db.open("r+b") as f:
        f.seek((root - 1) * size + (100 if root == 1 else 0))
        f.write(b"\x01\xff\xff\xff\xff\xff\xff\xff")


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    from alexnet.tracking import Tracker

    folder = tmp_path_factory.mktemp("store")
    with contextlib.chdir(folder):
        tracker = Tracker(f"sqlite:///{folder}/mlflow.db")
        with tracker.open_run("arm", {"kind": "arm"}):
            tracker.log_params({"lr": 0.01})
            tracker.log_metrics({"test_acc": 0.5}, step=1)
        tracker.client.set_experiment_tag(tracker.experiment_id, "note", "x")
    return (folder / "mlflow.db").read_bytes()


@pytest.mark.parametrize("table", MLFLOW_TABLES)
def test_a_damaged_mlflow_store_is_refused_in_one_line_naming_it_and_the_fix(mlflow_store, tmp_path, capsys, table,
                                                                            ledger):
    db = tmp_path / "mlflow.db"
    db.write_bytes(mlflow_store)
    damage(db, table)
    assert main(["runs", "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"MLflow store {db}" in err and "is damaged: SQLite reports" in err and f"sqlite3 {db} .recover" in err
    ledger(kind="bad input", input=f"MLflow store: a page of {table} overwritten", tried=1, error=err)


@pytest.mark.parametrize("table", OPTUNA_TABLES)
def test_a_damaged_optuna_storage_is_refused_naming_it_and_the_fix(tmp_path, table, ledger):
    import optuna

    from alexnet.tune import storage

    db = tmp_path / "optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="s")
    study.set_user_attr("x", 1)
    study.optimize(lambda trial: trial.suggest_float("lr", 0, 1), n_trials=1)
    damage(db, table)
    with pytest.raises(ValueError, match=f"Optuna storage {db} is damaged: SQLite reports .* .recover") as refused:
        storage(f"sqlite:///{db}")
    ledger(kind="bad input", input=f"Optuna storage: a page of {table} overwritten", tried=1, error=str(refused.value))


def test_an_intact_store_passes_the_check(mlflow_store, tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    db.write_bytes(mlflow_store)
    assert main(["runs", "--tracking-uri", f"sqlite:///{db}"]) == 2  # no suite in it: a different refusal
    assert "damaged" not in capsys.readouterr().err
