"""Faults injected for real during a suite: a killed process, a tracking server that goes away,
a full disk, diverging runs. After each, re-running the same command completes the suite with
no finished run lost or duplicated and no run left RUNNING."""

import json
import resource
import signal
import subprocess
import time
from dataclasses import replace

import pytest
from mlflow import MlflowClient

from ablations.claims import BY_ID, SCALES
from ablations.looks import look
from ablations.running.plan import arm_config
from ablations.running.suite import Suite, SuiteOptions
from alexnet import checkpoint as ckpt
from alexnet.train import train
from conftest import free_port, mlflow_server, run_suite, stop_server, store_state, suite_command

EPOCHS = 2  # a fault strikes after the first epoch's checkpoint, inside the second
ARGS = ("--scale", "smoke", "--only", "relu", "--epochs", str(EPOCHS), "--seeds", "1")  # 2 arms x 1 seed: the
EXPECTED = 2  # first is hit by the fault, the second not started yet


def start(tmp_path, uri=None, **popen):
    cmd, env = suite_command(tmp_path, *ARGS, uri=uri)
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def wait_for_checkpoint(tmp_path, proc, timeout=180):
    """Until the first epoch's checkpoint exists: the process is then inside a later epoch."""
    deadline = time.monotonic() + timeout
    while not list((tmp_path / "checkpoints").glob("*.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, "the suite ended before the fault"
        time.sleep(0.1)


def check_recovered(uri: str, ledger, fault: str, how: str, first_rc: int, rerun) -> dict:
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    state = store_state(uri, EXPECTED)
    ledger(kind="fault", fault=fault, injected=how, first_exit=first_rc, rerun_exit=rerun.returncode, runs=EXPECTED,
           lost=state["lost"], duplicated=state["duplicated"], stuck_running=state["stuck_running"])
    assert state["lost"] == 0 and state["duplicated"] == 0 and state["stuck_running"] == 0
    return state


def same_numbers_as_an_uninterrupted_run(run, fmnist) -> None:
    """The resumed run's every epoch equals a fresh run of the same config and seed (CPU: exact)."""
    stored = json.loads(open(run.info.artifact_uri.removeprefix("file://") + "/result.json").read())
    arm = run.data.tags["arm"]
    config = arm_config(BY_ID["relu"], arm, SCALES["smoke"], "cpu", EPOCHS)
    assert config.key() == run.data.tags["config_key"]
    fresh = train(config, int(run.data.tags["seed"]), data=fmnist, progress=False)
    keys = ("train_loss", "train_acc", "test_acc")
    assert [[e[k] for k in keys] for e in stored["epochs"]] == [[e[k] for k in keys] for e in fresh.epochs]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_mid_epoch_resumes_with_the_same_numbers(tmp_path, sig, fmnist, ledger):
    proc = start(tmp_path)
    wait_for_checkpoint(tmp_path, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and "re-run the same command to resume" in " ".join(err.split())
    interrupted = store_state(f"sqlite:///{tmp_path}/mlflow.db", EXPECTED)["arms"]
    assert len(interrupted) == 1
    assert interrupted[0].info.status == ("KILLED" if sig == signal.SIGTERM else "RUNNING")  # SIGKILL can't be caught
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.pt")
    done = len(ckpt.load(checkpoint)["epochs"])
    assert 1 <= done < EPOCHS, done  # the kill struck inside a later epoch: the re-run must train from the checkpoint

    rerun = run_suite(tmp_path, *ARGS)
    state = check_recovered(f"sqlite:///{tmp_path}/mlflow.db", ledger, f"{sig.name} mid-epoch",
                            "signal to the suite process after its first checkpoint", proc.returncode, rerun)
    resumed = [r for r in state["finished"] if r.data.tags["resumed"] == "True"]
    assert len(resumed) == 1 and resumed[0].data.tags["config_key"] == interrupted[0].data.tags["config_key"]
    history = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(resumed[0].info.run_id, "test_acc")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))  # epochs from the checkpoint logged too
    assert not list((tmp_path / "checkpoints").glob("*"))
    stored = json.loads(open(resumed[0].info.artifact_uri.removeprefix("file://") + "/result.json").read())
    assert len(stored["epochs"]) == EPOCHS > done  # an epoch ran after the resume, in the re-run's process
    same_numbers_as_an_uninterrupted_run(resumed[0], fmnist)


def test_unreachable_tracking_server_fails_before_any_work(tmp_path, ledger):
    out = run_suite(tmp_path, *ARGS, uri=f"http://127.0.0.1:{free_port()}")
    ledger(kind="fault", fault="tracking server unreachable at start", injected="--tracking-uri to a closed port",
           first_exit=out.returncode, runs=0, lost=0, duplicated=0, stuck_running=0)
    assert out.returncode == 2 and "is unreachable" in out.stderr and "--tracking-uri" in out.stderr
    assert not list((tmp_path / "checkpoints").glob("*"))  # the folder is checked writable, nothing written


@pytest.mark.mlflow_server
def test_tracking_server_going_away_mid_run_loses_nothing(tmp_path, ledger):
    backend, port = f"sqlite:///{tmp_path}/server.db", free_port()
    with mlflow_server(backend, tmp_path, port) as (url, server):
        proc = start(tmp_path, uri=url)
        wait_for_checkpoint(tmp_path, proc)
        stop_server(server)  # the server and its workers die mid-epoch
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err[-3000:]
    assert "re-run the same command" in " ".join(err.split())
    assert list((tmp_path / "checkpoints").glob("*.pt")), "the interrupted run's checkpoint is kept"
    with mlflow_server(backend, tmp_path, port) as (url, _):  # the server is back
        rerun = run_suite(tmp_path, *ARGS, uri=url)
        state = check_recovered(url, ledger, "tracking server stopped mid-run",
                                "mlflow server killed after the first checkpoint, restarted", proc.returncode, rerun)
    assert [r.data.tags["resumed"] for r in state["finished"]].count("True") == 1


def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_disk_full_while_writing_a_checkpoint(tmp_path, ledger):
    proc = start(tmp_path, preexec_fn=_limit_file_size(50 << 20))  # a checkpoint here is about 200 MB
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err[-3000:]
    assert "could not write checkpoint" in err and "disk full" in err
    assert not list((tmp_path / "checkpoints").glob("*.tmp")), "the partial checkpoint is removed"
    failed = store_state(f"sqlite:///{tmp_path}/mlflow.db", EXPECTED)["arms"]
    assert [r.info.status for r in failed] == ["FAILED"]
    rerun = run_suite(tmp_path, *ARGS)
    check_recovered(f"sqlite:///{tmp_path}/mlflow.db", ledger, "disk full writing a checkpoint",
                    "RLIMIT_FSIZE of 50 MB on the suite process", proc.returncode, rerun)


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 512 KiB tmpfs at ``tmp_path/mlruns`` (where an SQLite store keeps artifacts), filled up."""
    mount = tmp_path / "mlruns"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)]).returncode:
        pytest.fail("cannot mount a tmpfs although running as root")  # the root marker's guard ran first
    filler = mount / "filler"
    try:
        with filler.open("wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:  # No space left on device: full
                pass
        yield filler
    finally:
        subprocess.run(["umount", "-l", str(mount)])


@pytest.mark.root
def test_disk_full_while_writing_an_artifact(tmp_path, full_tmpfs, ledger):
    proc = start(tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err[-3000:]
    assert "No space left on device" in err and "re-run the same command" in " ".join(err.split())
    assert list((tmp_path / "checkpoints").glob("*.pt")), "the trained run's checkpoint is kept"
    full_tmpfs.unlink()  # space freed
    rerun = run_suite(tmp_path, *ARGS)
    state = check_recovered(f"sqlite:///{tmp_path}/mlflow.db", ledger, "disk full writing an artifact",
                            "artifact store on a full 512 KiB tmpfs", proc.returncode, rerun)
    assert [r.data.tags["resumed"] for r in state["finished"]].count("True") == 1  # not trained again


@pytest.mark.slow
def test_diverging_runs_are_recorded_and_never_retrained(tmp_path, fmnist, ledger):
    from alexnet.tracking import Tracker

    scale = replace(SCALES["smoke"], base={**SCALES["smoke"].base, "lr": 1e4})
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")

    def suite():
        s = Suite(scale, tracker, fmnist, SuiteOptions(checkpoint_dir=tmp_path / "checkpoints", device="cpu",
                                                       progress=False, seeds=1))
        return s, look(s, [BY_ID["relu"]], "test")

    first, (report,) = suite()
    assert first.trained == EXPECTED
    assert {r.result.status for r in report.runs if r.arm == "relu"} == {"diverged"}
    assert report.verdict == "inconclusive" and any("diverged" in e for e in report.evidence)
    again, (report2,) = suite()
    assert again.trained == 0 and report2.verdict == "inconclusive"
    state = store_state(tracker.uri, EXPECTED)
    ledger(kind="fault", fault="runs diverge", injected="lr 1e4 (the relu arm's loss overflows)", first_exit=0,
           rerun_exit=0, runs=EXPECTED, lost=state["lost"], duplicated=state["duplicated"],
           stuck_running=state["stuck_running"])
    assert state["lost"] == state["duplicated"] == state["stuck_running"] == 0
    assert {r.data.tags["status"] for r in state["finished"] if r.data.tags["arm"] == "relu"} == {"diverged"}


