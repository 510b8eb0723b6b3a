"""Credentials in store URLs: a real suite and a real tuning study against a real PostgreSQL
whose role has a password. The password must appear in no MLflow param, tag or artifact, no
file under results/ and nowhere in the output; it can also be given as PGPASSWORD or in a
password file instead of the command line."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import REPO, data_path, run_suite

TINY = ["--input-size", "28", "--train-size", "100", "--validation-size", "100", "--epochs", "1",
        "--batch-size", "32", "--params", "lr"]


def cli(workdir, *args, env=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=workdir, timeout=600,
                          env={**os.environ, "ALEXNET_DATA_DIR": str(data_path()), "PYTHONPATH": str(REPO),
                               "COLUMNS": "200", **(env or {})})


@pytest.fixture
def secret_role():
    """A fresh PostgreSQL role with a random password, owning two fresh databases."""
    admin = os.environ.get("ALEXNET_TEST_POSTGRES")
    if not admin:  # fixtures run after the postgres marker's guard, which fails or skips first
        pytest.fail("ALEXNET_TEST_POSTGRES is unset")
    import psycopg

    user, password = f"secret_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT {user} TO CURRENT_USER")  # PostgreSQL 16: needed to create databases it owns
        for db in ("mlflow", "optuna"):
            conn.execute(f"CREATE DATABASE {user}_{db} OWNER {user}")
    host = admin.rsplit("@", 1)[1].split("/")[0]
    return user, password, host


def _leaks(password: str, texts: dict[str, str]) -> list[str]:
    return [where for where, text in texts.items() if password in text]


@pytest.mark.postgres
def test_passwords_never_reach_params_tags_artifacts_results_or_output(tmp_path, secret_role, ledger):
    user, password, host = secret_role
    mlflow_url = f"postgresql+psycopg://{user}:{password}@{host}/{user}_mlflow"
    optuna_url = f"postgresql+psycopg://{user}:{password}@{host}/{user}_optuna"
    outputs = {}

    suite = run_suite(tmp_path, "--scale", "smoke", "--only", "relu", "--tune-lr", "1", "--storage", optuna_url,
                      uri=mlflow_url)
    assert suite.returncode == 0, suite.stderr[-3000:].replace(password, "<password>")
    outputs["suite"] = suite.stdout + suite.stderr
    tune = cli(tmp_path, "alexnet", "tune", *TINY, "--trials", "1", "--study", "secret-study", "--storage", optuna_url,
               "--tracking-uri", mlflow_url, "--results-dir", str(tmp_path / "results" / "tune"))
    assert tune.returncode == 0, tune.stderr[-3000:].replace(password, "<password>")
    outputs["tune"] = tune.stdout + tune.stderr

    wrong = f"pw-wrong-{uuid.uuid4().hex}"
    for args in (["alexnet", "tune", *TINY, "--storage", optuna_url.replace(password, wrong)],
                 ["ablations", "--scale", "smoke", "--only", "relu", "--tracking-uri",
                  mlflow_url.replace(password, wrong), "--results-dir", str(tmp_path / "results")]):
        out = cli(tmp_path, *args)
        assert out.returncode == 2 and "password authentication failed" in out.stderr, out.stderr[-2000:]
        assert f"{user}:***@" in out.stderr and wrong not in out.stdout + out.stderr and "Traceback" not in out.stderr

    # the password kept off the command line: PGPASSWORD, then a password file (libpq's PGPASSFILE, ~/.pgpass)
    bare_optuna, bare_mlflow = (u.replace(f":{password}@", "@") for u in (optuna_url, mlflow_url))
    joined = cli(tmp_path, "alexnet", "tune", "--join", "--trials", "0", "--study", "secret-study", "--storage",
                 bare_optuna, "--tracking-uri", bare_mlflow, "--results-dir", str(tmp_path / "results" / "tune"),
                 env={"PGPASSWORD": password})
    assert joined.returncode == 0, joined.stderr[-2000:]
    outputs["tune via PGPASSWORD"] = joined.stdout + joined.stderr
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{user}:{password}\n")
    passfile.chmod(0o600)
    rerun = run_suite(tmp_path, "--scale", "smoke", "--only", "relu", "--tune-lr", "1", "--storage", bare_optuna,
                      uri=bare_mlflow, env_extra={"PGPASSFILE": str(passfile)})
    assert rerun.returncode == 0 and "0 runs trained" in rerun.stdout, rerun.stderr[-2000:]
    outputs["suite via a password file"] = rerun.stdout + rerun.stderr

    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(mlflow_url)
    recorded, artifacts = {}, {}
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            rid = run.info.run_id
            recorded[f"params of {rid}"] = repr(run.data.params)
            recorded[f"tags of {rid}"] = repr(run.data.tags)
            folder = Path(download_artifacts(run_id=rid, dst_path=str(tmp_path / "artifacts" / rid),
                                             tracking_uri=mlflow_url))
            for f in folder.rglob("*"):
                if f.is_file():
                    artifacts[str(f)] = f.read_bytes().decode("latin-1")
    results = {str(f): f.read_bytes().decode("latin-1") for f in (tmp_path / "results").rglob("*") if f.is_file()}
    assert any("--storage postgresql+psycopg://" in t for t in recorded.values())  # the command was recorded
    assert any(f"{user}:***@" in t for t in recorded.values()) and len(artifacts) >= 10 and len(results) >= 5
    leaks = _leaks(password, {**outputs, **recorded, **artifacts, **results})
    ledger(kind="measure", what=f"password occurrences in {len(recorded)} MLflow param/tag sets, {len(artifacts)} "
                                f"artifacts, {len(results)} results files and {len(outputs)} outputs",
           value=len(leaks))
    assert not leaks
