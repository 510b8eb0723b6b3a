"""Several suite workers on one store: each arm x seed run is trained exactly once, and every
worker's report holds every run, whether the workers share an SQLite file or an MLflow server."""

import csv
import re
import subprocess

import pytest

from ablations.claims import BY_ID, SCALES
from conftest import mlflow_server, postgres_or_sqlite, store_state, suite_command

CLAIMS = ("relu", "dropout", "maxpool")  # 12 arm x seed slots, 8 distinct runs (the lecture arm is shared)
SEEDS = SCALES["smoke"].seeds


def start_workers(tmp_path, n: int, uri: str | None = None) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        cmd, env = suite_command(tmp_path / f"worker{i}", "--scale", "smoke", "--only", *CLAIMS,
                                 uri=uri or f"sqlite:///{tmp_path}/mlflow.db", checkpoints=tmp_path / "checkpoints")
        (tmp_path / f"worker{i}").mkdir()
        env["OMP_NUM_THREADS"] = "1"  # one core each on a 2-core machine
        procs.append(subprocess.Popen(cmd, cwd=tmp_path / f"worker{i}", env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs) -> list[int]:
    """Wait for every worker; the number of runs each one trained."""
    trained = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        trained.append(int(re.search(r"\((\d+) runs trained", out).group(1)))
    return trained


def check_store_and_reports(tmp_path, uri: str, trained: list[int], ledger, fault: str) -> None:
    state = store_state(uri, 8)  # 12 slots, the shared lecture arm trained once per seed
    ledger(kind="fault", fault=fault, injected=f"2 workers started together; they trained {trained} runs",
           first_exit=0, runs=8, lost=state["lost"], duplicated=state["duplicated"],
           stuck_running=state["stuck_running"])
    assert state["lost"] == state["duplicated"] == state["stuck_running"] == 0, "a run lost, trained twice or stuck"
    assert sum(trained) == len(state["arms"]) == len(state["finished"]) == 8
    runs = state["runs"]
    by_ident = {(r.data.tags["config_key"], r.data.tags["seed"]): r.info.run_id for r in state["finished"]}
    expected = {(c, a, str(s)) for c in CLAIMS for a in BY_ID[c].arms for s in range(SEEDS)}
    for worker in range(len(trained)):  # every worker's report holds every run, each exactly once
        rows = list(csv.DictReader((tmp_path / f"worker{worker}/results/smoke/cpu/claims.csv").open()))
        rows = [r for r in rows if r["metric"] == "test_acc"]
        assert sorted((r["claim"], r["arm"], r["seed"]) for r in rows) == sorted(expected)
        assert {r["run_id"] for r in rows} == set(by_ident.values())
        assert all(by_ident[(r["config_key"], r["seed"])] == r["run_id"] for r in rows)
    suites = [r for r in runs if r.data.tags.get("kind") == "suite"]
    assert len(suites) == len(trained) and all(r.info.status == "FINISHED" for r in suites)


@pytest.mark.slow
def test_two_invocations_on_one_sqlite_store_train_each_run_once(tmp_path, ledger):
    trained = finish(start_workers(tmp_path, 2))
    check_store_and_reports(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", trained, ledger,
                            "two suite invocations at once on one SQLite store")
    assert all(t >= 1 for t in trained), f"one worker did all the work: {trained}"


@pytest.mark.mlflow_server
def test_two_workers_fan_out_over_a_shared_mlflow_server(tmp_path, ledger):
    backend = postgres_or_sqlite(tmp_path)  # PostgreSQL in CI
    with mlflow_server(backend, tmp_path) as (url, _):
        trained = finish(start_workers(tmp_path, 2, uri=url))
        check_store_and_reports(tmp_path, url, trained, ledger, "two workers at once on one mlflow server ("
                                + backend.split(":")[0].split("+")[0] + " store)")
    assert all(t >= 1 for t in trained), f"one worker did all the work: {trained}"
