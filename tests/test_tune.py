"""Optuna tuning: bad input, trials as nested MLflow runs, and studies shared by worker processes."""

import os
import subprocess
import sys
import uuid

import mlflow
import optuna
import pytest

from alexnet.tune import search_space, storage
from conftest import REPO, data_path

TINY = ["--input-size", "28", "--train-size", "100", "--validation-size", "100", "--epochs", "2",
        "--batch-size", "32", "--params", "lr", "momentum"]


def tune(workdir, *args, wait=True):
    cmd = [sys.executable, "-m", "alexnet", "tune", "--tracking-uri", f"sqlite:///{workdir}/mlflow.db",
           "--results-dir", str(workdir / "tune"), *args]
    env = {**os.environ, "ALEXNET_DATA_DIR": str(data_path()), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_unknown_parameter_and_empty_range_are_rejected():
    with pytest.raises(ValueError, match="unknown parameter 'learning_rate': expected any of lr, batch_size"):
        search_space(["learning_rate"])
    with pytest.raises(ValueError, match="empty search range for lr: low 0.1 is not below high 0.01"):
        search_space(["lr"], {"lr": (0.1, 0.01)})
    with pytest.raises(ValueError, match="log scale"):
        search_space(["weight_decay"], {"weight_decay": (0.0, 0.1)})


def test_unreachable_storage_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot open Optuna storage 'postgresql://nobody@127.0.0.1:9/none'"):
        storage("postgresql://nobody@127.0.0.1:9/none")
    out = tune(tmp_path, *TINY, "--storage", "postgresql://nobody@127.0.0.1:9/none")
    assert out.returncode == 2 and "cannot open Optuna storage" in out.stderr and "reachable" in out.stderr


def test_cli_rejects_bad_range_and_arm(tmp_path):
    out = tune(tmp_path, *TINY, "--range", "lr=0.5:0.1")
    assert out.returncode == 2 and "empty search range for lr" in out.stderr
    out = subprocess.run([sys.executable, "-m", "ablations", "tune", "relu:swish"], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 2 and "invalid arm 'relu:swish'" in out.stderr and "relu:sigmoid" in out.stderr


def _check_study(url: str, name: str, expected: int, workdir):
    study = optuna.load_study(study_name=name, storage=url)
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(expected))  # none lost, none duplicated
    assert all(t.state.is_finished() for t in study.trials)
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    exp = mlflow.get_experiment_by_name("alexnet-claims")
    parent = mlflow.search_runs([exp.experiment_id], f"tags.kind = 'study' and tags.study = '{name}'",
                                output_format="list")
    assert len(parent) == 1
    trials = mlflow.search_runs([exp.experiment_id], f"tags.kind = 'trial' and tags.study = '{name}'",
                                output_format="list")
    assert sorted(int(r.data.tags["trial"]) for r in trials) == numbers
    assert all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in trials)
    assert all(r.data.tags["state"] in ("COMPLETE", "PRUNED", "FAIL") for r in trials)
    assert {"lr", "momentum", "validation_size"} <= set(trials[0].data.params)
    return study


def _two_workers(workdir, url, name):
    created = tune(workdir, *TINY, "--storage", url, "--study", name, "--create-only")
    assert created.returncode == 0, created.stderr[-2000:]
    again = tune(workdir, *TINY, "--storage", url, "--study", name, "--create-only")
    assert again.returncode == 2 and "already exists" in again.stderr
    workers = [tune(workdir, "--storage", url, "--study", name, "--join", "--worker", str(i), "--trials", "3",
                    "--no-report", wait=False) for i in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-2000:]
    report = tune(workdir, "--storage", url, "--study", name, "--join", "--trials", "0")
    assert report.returncode == 0, report.stderr[-2000:]
    study = _check_study(url, name, 6, workdir)
    assert (workdir / "tune" / name / "best.json").exists()
    assert (workdir / "tune" / name / "optimization_history.png").stat().st_size > 5000
    return study


@pytest.mark.slow
def test_two_workers_share_a_sqlite_study(tmp_path):
    _two_workers(tmp_path, f"sqlite:///{tmp_path}/optuna.db", "sqlite-study")


@pytest.mark.postgres
def test_two_workers_share_a_postgresql_study(tmp_path):
    url = os.environ["ALEXNET_TEST_POSTGRES"]  # the postgres marker's guard checked it
    _two_workers(tmp_path, url, f"pg-{uuid.uuid4().hex[:8]}")
