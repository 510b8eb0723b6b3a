"""``python -m ablations launch``: refusals before anything is submitted, the sbatch script submitit
writes for a 2-node x 8-GPU layout (committed as docs/examples/launch-2x8.sbatch), and, in the
integration tier, two local workers through submitit on one store: the runs split, each trained
once, the report equal to a single worker's; a worker killed mid-run, its run finished by the other."""

import csv
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablations.__main__ import main
from ablations.commands import console
from ablations.launch import worker_status
from ablations.running.plan import PlannedRun, workers_wall_s
from alexnet.config import Config
from conftest import REPO, free_port, mlflow_server, store_state, suite_command

EXAMPLE = REPO / "docs" / "examples" / "launch-2x8.sbatch"
EXAMPLE_FOLDER, EXAMPLE_CHECKPOINTS, EXAMPLE_PYTHON = "/shared/alexnet-launch", "/shared/alexnet-checkpoints", "python"
EXAMPLE_ARGS = ["--executor", "slurm", "--workers", "16", "--gpus-per-worker", "1", "--partition", "gpu",
                "--time-min", "240", "--mem-gb", "64", "--slurm-cpus-per-task", "8", "--dry-run",
                "--scale", "full", "--tracking-uri", "https://mlflow.example.org:5000",
                "--storage", "postgresql+psycopg://alexnet@db.example.org/optuna"]
SMOKE = ["--scale", "smoke", "--only", "relu", "maxpool", "--threads", "1"]
TIMING = re.compile(r"(_s|per_s)$")  # wall_s, train_images_per_s, ...: the rows two machines may not share


def launch(argv, capsys, monkeypatch, tmp_path) -> tuple[int, str, str]:
    """(exit status, stdout, stderr on one line per message) of ``python -m ablations launch ARGV`` in this process."""
    monkeypatch.setattr(console, "width", 400)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow sets it when a store is opened
    try:
        status = main(["launch", *argv])
    except SystemExit as exc:  # argparse's errors
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


REFUSED = {  # launch arguments -> what the one-line error says
    "sqlite store with slurm": (["--executor", "slurm", "--workers", "2", "--scale", "smoke"],
                                "--tracking-uri sqlite:///mlflow.db is a store on this machine's disk"),
    "file store with slurm": (["--executor", "slurm", "--workers", "2", "--tracking-uri", "./mlruns"],
                              "--tracking-uri ./mlruns is a store on this machine's disk"),
    "no checkpoint folder": (["--executor", "slurm", "--workers", "2", "--only", "relu", "--tracking-uri",
                              "http://mlflow.example.org:5000", "--checkpoint-dir", "/nonexistent/ckpt"],
                             "--checkpoint-dir /nonexistent/ckpt does not exist"),
    "password in the store URI": (["--executor", "local", "--workers", "2", "--tracking-uri",
                                   "postgresql://me:hunter2@db/mlflow"],
                                  "--tracking-uri holds a password (not shown here)"),
    "password in the Optuna URL": (["--executor", "local", "--workers", "2", "--storage",
                                    "postgresql://me:hunter2@db/optuna"],
                                   "--storage holds a password"),
    "the ladder's lr studies in SQLite": (["--executor", "slurm", "--workers", "2", "--scale", "quick", "--only",
                                           "ladder", "--tracking-uri", "http://mlflow.example.org:5000"],
                                          "--storage sqlite:///optuna.db is an Optuna database on this machine's disk"),
    "an unknown Slurm parameter": (["--executor", "slurm", "--workers", "2", "--slurm-acount", "a"],
                                   "unknown --slurm-acount: submitit's Slurm parameters are"),
    "a Slurm parameter with local": (["--executor", "local", "--workers", "2", "--slurm-qos", "high"],
                                     "--slurm-qos is for --executor slurm, not local"),
    "no srun here": (["--executor", "slurm", "--workers", "2", "--only", "relu", "--tracking-uri",
                      "http://mlflow.example.org:5000", "--checkpoint-dir", "."], "--executor slurm found no srun"),
    "a bad suite option": (["--executor", "local", "--workers", "2", "--epochs", "0"], "invalid --epochs 0"),
    "no workers": (["--executor", "local", "--workers", "0"], "invalid --workers 0"),
    "SQLite under a driver's name": (["--executor", "slurm", "--workers", "2", "--tune-lr", "5", "--tracking-uri",
                                      "http://mlflow.example.org:5000", "--storage", "sqlite+pysqlite:////x/o.db"],
                                     "--storage sqlite+pysqlite:////x/o.db is an Optuna database on this machine"),
    "a malformed server URL": (["--executor", "local", "--workers", "2", "--only", "relu", "--tracking-uri",
                                "http://h:abc"], "MLflow server http://h:abc is unreachable"),
    "a Slurm count that is not one": (["--executor", "slurm", "--workers", "2", "--slurm-cpus-per-task", "abc"],
                                      "invalid --slurm-cpus-per-task 'abc': expected an integer from 1 to"),
    "a Slurm array of 0 at a time": (["--executor", "slurm", "--workers", "2", "--slurm-array-parallelism", "0"],
                                     "invalid --slurm-array-parallelism '0': expected an integer from 1 to"),
    "a Slurm flag that is not one": (["--executor", "slurm", "--workers", "2", "--slurm-use-srun", "maybe"],
                                     "invalid --slurm-use-srun 'maybe': expected true or false"),
    "--report-only abbreviated": (["--executor", "local", "--workers", "2", "--report"],
                                  "--report-only is not for launch"),
    "a URL given to a number option": (["--executor", "local", "--workers", "2", "--tune-lr",
                                        "postgresql://u:hunter2@h/db"], "invalid int value: 'postgresql://u:***@h/db'"),
    "a newline that would add a command to the job script": (
        ["--executor", "slurm", "--workers", "2", "--only", "relu", "--data-dir", "x\ntouch /tmp/pwned"],
        "argument 'x\\x0atouch /tmp/pwned' holds a control character"),
}


SECRETS = ["postgresql://u:hunter2/x@h/db", "postgresql://u:hunter2'x@h/db", "postgresql://u:hunter2 x@h/db",
           "postgresql://u@h/db?pass%77ord=hunter2", "https://u'x:hunter2@h", "http://user:hunter2@h:5000"]
REFUSED.update({f"a password as {url}": (["--executor", "local", "--workers", "2", "--storage", url],
                                         "--storage holds a password") for url in SECRETS})


@pytest.mark.parametrize("case", REFUSED)
def test_what_cannot_work_is_refused_in_one_line_before_anything_is_submitted(case, capsys, monkeypatch, tmp_path):
    argv, message = REFUSED[case]
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm"))  # no srun, no sbatch
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    status, out, err = launch([*argv, "--folder", str(tmp_path / "jobs")], capsys, monkeypatch, tmp_path)
    assert status == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "hunter2" not in err + out
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir()), "something was submitted"
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("where", ["MLFLOW_TRACKING_URI", "the working folder"])
def test_a_newline_from_the_environment_or_the_folder_cannot_reach_the_job_script(where, capsys, monkeypatch,
                                                                                tmp_path):
    work = tmp_path / ("proj\ntouch pwned #" if where == "the working folder" else "w")
    work.mkdir()
    (work / "ckpt").mkdir()
    if where == "MLFLOW_TRACKING_URI":
        monkeypatch.setenv(where, "https://h:5000/x\ntouch pwned #")
    monkeypatch.chdir(work)
    monkeypatch.setattr(console, "width", 400)
    status = main(["launch", "--executor", "slurm", "--workers", "2", "--dry-run", "--only", "relu",
                   "--checkpoint-dir", "ckpt", *(["--tracking-uri", "https://h:5000"] if where != "MLFLOW_TRACKING_URI"
                                                 else [])])
    err = capsys.readouterr().err
    assert status == 2 and "holds a control character" in err and len(err.strip().splitlines()) == 1, err
    assert not list(work.rglob("*.sbatch"))


def test_the_launch_folder_is_new_and_private_or_an_earlier_private_one(capsys, monkeypatch, tmp_path):
    argv = ["--executor", "local", "--workers", "1", "--dry-run", *SMOKE]
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o775)
    shared.chmod(0o775)
    (tmp_path / "link").symlink_to(tmp_path / "private")
    (tmp_path / "private").mkdir(mode=0o700)
    for folder, ok in (("new/launch", True), ("private", True), ("shared", False), ("link", False)):
        status, _, err = launch([*argv, "--folder", str(tmp_path / folder)], capsys, monkeypatch, tmp_path)
        assert (status == 0) == ok, (folder, err)
        assert ok or "is not a folder of yours that only you can write" in err
    assert oct(shared.stat().st_mode & 0o777) == "0o775", "an existing folder's mode was changed"
    assert oct((tmp_path / "new" / "launch").stat().st_mode & 0o777) == "0o700"


def example(capsys, monkeypatch, tmp_path) -> str:
    """The dry run's sbatch script for 2 nodes x 8 GPUs (16 one-GPU workers), its machine-specific
    paths written as the documented example's."""
    (tmp_path / "checkpoints").mkdir()
    status, out, err = launch([*EXAMPLE_ARGS, "--folder", str(tmp_path / "launch"), "--checkpoint-dir",
                               str(tmp_path / "checkpoints")], capsys, monkeypatch, tmp_path)
    assert status == 0, err
    text = (tmp_path / "launch" / "launch.sbatch").read_text()
    return (text.replace(shlex.quote(sys.executable), EXAMPLE_PYTHON).replace(str(tmp_path / "launch"), EXAMPLE_FOLDER)
            .replace(str(tmp_path / "checkpoints"), EXAMPLE_CHECKPOINTS))


def test_the_sbatch_script_for_two_nodes_of_eight_gpus_is_the_committed_example(capsys, monkeypatch, tmp_path):
    text = example(capsys, monkeypatch, tmp_path)
    if os.environ.get("ALEXNET_WRITE_EXAMPLE"):  # regenerate: ALEXNET_WRITE_EXAMPLE=1 pytest tests/test_launch.py
        EXAMPLE.write_text(text)
    assert text == EXAMPLE.read_text(), "docs/examples/launch-2x8.sbatch is stale: regenerate it (see this test)"
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", text, re.M))
    assert directives["array"] == "0-15%16"  # 16 workers, all at once: 2 nodes x 8 GPUs
    assert directives["gpus-per-node"] == "1" and directives["cpus-per-task"] == "8"
    assert directives["time"] == "240" and directives["mem"] == "64GB" and directives["partition"] == "gpu"
    assert directives["output"] == f"{EXAMPLE_FOLDER}/%A_%a_0_log.out"
    assert directives["signal"].startswith("USR2@")  # submitit's warning before the time limit
    command = text.strip().splitlines()[-1]
    assert command.startswith(f"srun --unbuffered --output {EXAMPLE_FOLDER}/%A_%a_%t_log.out")
    assert command.endswith(f"{EXAMPLE_PYTHON} -u -m submitit.core._submit {EXAMPLE_FOLDER}")
    worker = next(line for line in text.splitlines() if line.startswith("# each array task runs"))
    assert ("python -m ablations --scale full --storage postgresql+psycopg://alexnet@db.example.org/optuna "
            f"--checkpoint-dir {EXAMPLE_CHECKPOINTS} --tracking-uri https://mlflow.example.org:5000 --results-dir "
            f"{EXAMPLE_FOLDER}/worker-I --yes with I its task id") in worker


@pytest.mark.slow
def test_submitit_hands_sbatch_the_dry_runs_script_and_the_array_gets_one_job_per_worker(capsys, monkeypatch,
                                                                                        tmp_path):
    """submitit's SlurmExecutor's real submission path, up to the sbatch call, against a real MLflow
    server: a stand-in sbatch (no cluster here) records the script it is given and answers as Slurm does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sbatch\n'
                                    'echo "Submitted batch job 4242"\n')
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    (tmp_path / "checkpoints").mkdir()
    with mlflow_server(f"sqlite:///{tmp_path}/server.db", tmp_path) as (url, _):
        argv = [*EXAMPLE_ARGS, "--tracking-uri", url, "--checkpoint-dir", str(tmp_path / "checkpoints")]
        status, _, err = launch([*argv, "--folder", str(tmp_path / "dry")], capsys, monkeypatch, tmp_path)
        assert status == 0, err
        argv.remove("--dry-run")
        status, out, err = launch([*argv, "--folder", str(tmp_path / "dry")], capsys, monkeypatch, tmp_path)
    assert status == 0, err
    assert (tmp_path / "submitted.sbatch").read_text() == (tmp_path / "dry" / "launch.sbatch").read_text()
    assert "job ids " + ", ".join(f"4242_{i}" for i in range(16)) in err
    assert "squeue --job 4242" in err and f"--tracking-uri {url} --report-only" in err
    assert len(list((tmp_path / "dry").glob("4242_*_submitted.pkl"))) == 16
    (bin_dir / "sbatch").write_text('#!/bin/sh\necho "sbatch: error: invalid partition specified: gpu" >&2\nexit 1\n')
    with mlflow_server(f"sqlite:///{tmp_path}/server.db", tmp_path) as (url, _):  # a refusal only Slurm can make
        status, _, err = launch([*argv[:-4], "--tracking-uri", url, "--checkpoint-dir", str(tmp_path / "checkpoints"),
                                 "--folder", str(tmp_path / "refused")], capsys, monkeypatch, tmp_path)
    last = err.strip().splitlines()[-1]  # after the loopback warning and sbatch's own message
    assert status == 3 and last.startswith("error: the submission failed: sbatch: error: invalid partition"), err
    assert "Traceback" not in err and not list((tmp_path / "refused").glob("*_submitted.pkl"))


def test_an_unreachable_server_is_refused_before_submitting(capsys, monkeypatch, tmp_path):
    status, _, err = launch(["--executor", "local", "--workers", "2", "--folder", str(tmp_path / "l"), *SMOKE,
                             "--tracking-uri", f"http://127.0.0.1:{free_port()}"], capsys, monkeypatch, tmp_path)
    assert status == 2 and "is unreachable" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "l").exists(), "the launch folder was made for nothing"


def test_slurm_parameters_pass_through_typed_and_setup_lines_add_up(capsys, monkeypatch, tmp_path):
    (tmp_path / "ckpt").mkdir()
    status, out, err = launch(["--executor", "slurm", "--workers", "1", "--dry-run", "--folder", str(tmp_path / "l"),
                               "--slurm-account=proj", "--slurm-qos", "high", "--slurm-setup", "module load cuda",
                               "--slurm-setup", "source /shared/venv/bin/activate", "--slurm-signal-delay-s", "120",
                               "--slurm-stderr-to-stdout", "no", "--slurm-exclusive", "true",
                               "--only", "relu", "--tracking-uri", "http://h:5000", "--checkpoint-dir",
                               str(tmp_path / "ckpt")], capsys, monkeypatch, tmp_path)
    assert status == 0, err
    text = (tmp_path / "l" / "launch.sbatch").read_text()
    assert "#SBATCH --account=proj" in text and "#SBATCH --qos=high" in text and "#SBATCH --signal=USR2@120" in text
    assert "#SBATCH --array" not in text  # one worker: one job, not an array
    assert "#SBATCH --error=" in text and "#SBATCH --exclusive\n" in text  # "no" is false, "true" a bare flag
    setup = text.split("# setup\n")[1].split("\n\n")[0].splitlines()
    assert setup[1:] == ["module load cuda", "source /shared/venv/bin/activate"]
    status, _, err = launch(["--executor", "slurm", "--workers", "1", "--dry-run", "--slurm-nodes", "two"],
                            capsys, monkeypatch, tmp_path)
    assert status == 2 and "invalid --slurm-nodes 'two': expected an integer" in err


def test_local_workers_are_listed_by_a_dry_run_each_with_its_results_folder(capsys, monkeypatch, tmp_path):
    status, out, err = launch(["--executor", "local", "--workers", "3", "--dry-run", "--folder", str(tmp_path / "l"),
                               *SMOKE, "--results-dir", "mine"], capsys, monkeypatch, tmp_path)
    assert status == 0, err
    lines = (tmp_path / "l" / "workers.txt").read_text().splitlines()
    assert len(lines) == 3 and all(f"--results-dir {tmp_path}/l/worker-{i} --yes" in lines[i] for i in range(3))
    assert all("--tracking-uri sqlite:///mlflow.db" in line and "mine" not in line for line in lines)
    assert oct((tmp_path / "l").stat().st_mode & 0o777) == "0o700"  # submitit's pickles live there


def test_the_per_worker_estimate_takes_the_runs_in_plan_order():
    def rows(*seconds, state="train"):
        return [PlannedRun("c", "a", i, Config(), state, seconds=s) for i, s in enumerate(seconds)]

    assert workers_wall_s(rows(10, 10, 10, 10), 1, probe_s=3) == 43
    assert workers_wall_s(rows(10, 10, 10, 10), 2, probe_s=3) == 23
    assert workers_wall_s(rows(30, 10, 10, 10), 2) == 30  # the longest run bounds it
    assert workers_wall_s(rows(10, 10, 10), 8) == 10
    assert workers_wall_s(rows(10, 10, state="reuse") + rows(5), 2) == 5  # reused runs cost nothing


def test_a_workers_status_file_is_read_as_plain_json(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"worker": 1, "exit": -9, "host": "node7"}')
    assert worker_status(path).startswith("killed by SIGKILL on node7")
    path.write_text('{"worker": 1, "exit": 0, "host": "node7"}')
    assert worker_status(path) == "finished on node7"
    path.write_text('{"worker": 1, "exit": 3, "host": "node7"}')
    assert worker_status(path).startswith("exited with status 3 on node7")
    path.write_text('{"worker": 1, "exit": -40, "host": "node7"}')  # a real-time signal: no name
    assert worker_status(path).startswith("killed by signal 40 on node7")
    path.write_text('{"exit": 0, "host": "\\u001b]0;x\\u0007[red]n[/]"}')
    assert "\x1b" not in worker_status(path) and "\x07" not in worker_status(path)
    hostile = ["", "[]", '{"exit": "x", "host": "h"}', "\x80\x04pickle", '{"exit": Infinity, "host": "h"}',
               '{"exit": 1e400, "host": "h"}', '{"exit": 7.0, "host": "h"}', '{"exit": 99999, "host": "h"}',
               "[" * 100_000, '{"exit": 0, "host": "' + "x" * 50_000_000 + '"}']
    for bad in hostile:
        path.write_text(bad, errors="surrogateescape")
        assert worker_status(path).startswith("ended without a status"), bad[:40]
    path.unlink()
    path.symlink_to("/dev/zero")
    assert worker_status(path).startswith("ended without a status")
    os.mkfifo(tmp_path / "fifo")  # a read would block for ever
    assert worker_status(tmp_path / "fifo").startswith("ended without a status")
    assert worker_status(tmp_path / "none.json").startswith("ended without a status")


def test_report_only_trains_nothing_and_names_what_the_store_lacks(tmp_path):
    cmd, env = suite_command(tmp_path, *SMOKE, "--report-only")
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 4, out.stderr[-2000:]
    assert "report only: 0 of the plan's 6 runs are in the store" in " ".join(out.stderr.split())
    assert "not judged yet: relu (4 runs left); maxpool (4 runs left)" in " ".join(out.stderr.split())
    assert not [r for r in store_state(f"sqlite:///{tmp_path}/mlflow.db", 6)["runs"]
                if r.data.tags.get("kind") == "arm"], "a run was trained"


def launch_command(tmp_path: Path, *args: str) -> tuple[list[str], dict]:
    """(argv, env) of ``python -m ablations launch --executor local --workers 2 ...`` on an SQLite store in tmp_path."""
    cmd, env = suite_command(tmp_path, *SMOKE, *args)
    env["OMP_NUM_THREADS"] = "1"
    return [*cmd[:3], "launch", "--executor", "local", "--workers", "2", "--wait", "--status-every", "2",
            "--folder", str(tmp_path / "launch"), *cmd[3:]], env


def claims_rows(folder: Path) -> list[dict]:
    """claims.csv less the timing rows and what names a run or a commit."""
    rows = list(csv.DictReader((folder / "smoke" / "cpu" / "claims.csv").open()))
    return [{k: v for k, v in r.items() if k not in ("run_id", "git_commit")} for r in rows
            if not TIMING.search(r["metric"])]


def owners(state: dict) -> dict[str, int]:
    """Finished arm runs per worker process (the lease owner's host:pid)."""
    count: dict[str, int] = {}
    for run in state["finished"]:
        owner = run.data.tags["lease.owner"].rsplit(":", 1)[0]
        count[owner] = count.get(owner, 0) + 1
    return count


@pytest.mark.slow
def test_two_local_workers_split_the_runs_and_write_the_report_a_single_worker_writes(tmp_path):
    (tmp_path / "single").mkdir()
    cmd, env = suite_command(tmp_path / "single", *SMOKE)
    single = subprocess.run(cmd, cwd=tmp_path / "single", env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    cmd, env = launch_command(tmp_path)
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    state = store_state(f"sqlite:///{tmp_path}/mlflow.db", 6)  # 8 slots, the lecture arm shared by the claims
    assert state["lost"] == state["duplicated"] == state["stuck_running"] == 0, "a run lost, trained twice or stuck"
    split = owners(state)
    assert len(split) == 2 and sum(split.values()) == 6, f"the runs did not split between 2 workers: {split}"
    assert "worker 0: finished" in out.stderr and "worker 1: finished" in out.stderr
    assert "report only: 6 of the plan's 6 runs are in the store" in out.stderr
    assert re.search(r"workers: 0 running, 2 ended; runs since the launch: 6 finished", " ".join(out.stderr.split()))
    assert claims_rows(tmp_path / "results") == claims_rows(tmp_path / "single" / "results")
    verdicts = [line for line in out.stdout.splitlines() if line.startswith("  ")]
    assert verdicts and verdicts == [line for line in single.stdout.splitlines() if line.startswith("  ")]


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_its_run_to_the_other(tmp_path):
    cmd, env = launch_command(tmp_path, "--epochs", "3")  # runs of about 7 s on this machine
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    uri, victim, deadline = f"sqlite:///{tmp_path}/mlflow.db", None, time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if list((tmp_path / "launch").glob("*_submitted.pkl")):  # the launcher made the store before submitting
            running = [r for r in store_state(uri, 6)["arms"] if r.info.status == "RUNNING"]
            victim = running[0] if running else None
    assert victim is not None, "no run was ever seen training"
    pid = int(victim.data.tags["lease.owner"].split(":")[1])
    os.kill(pid, signal.SIGKILL)  # the suite process of one worker, as a node loss or a preemption would
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:] + out[-3000:]
    state = store_state(uri, 6)
    assert state["lost"] == state["duplicated"] == state["stuck_running"] == 0, "a run lost, trained twice or stuck"
    killed = next(r for r in state["arms"] if r.info.run_id == victim.info.run_id)
    assert killed.info.status == "KILLED"
    again = next(r for r in state["finished"] if (r.data.tags["config_key"], r.data.tags["seed"])
                 == (victim.data.tags["config_key"], victim.data.tags["seed"]))
    assert f":{pid}:" not in again.data.tags["lease.owner"], "the killed worker's run was not taken over"
    assert re.search(r"worker \d: killed by SIGKILL", err), err[-2000:]
    assert "report only: 6 of the plan's 6 runs are in the store" in err
    assert "not judged yet" not in err and "relu" in out and "maxpool" in out


@pytest.mark.slow
def test_a_worker_out_of_time_stops_its_suite_which_hands_its_run_over_at_once(tmp_path):
    """submitit's local executor signals USR2 30 s before a job's limit (here 1 min), as Slurm does
    with --signal: the worker stops its suite, whose run ends KILLED with its checkpoint, not RUNNING
    until its lease expires; the report then names what is missing."""
    cmd, env = launch_command(tmp_path, "--epochs", "40")  # runs of over a minute: none finishes in time
    cmd[cmd.index("--workers") + 1] = "1"
    out = subprocess.run([*cmd, "--time-min", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 4, out.stderr[-3000:]
    assert "worker 0: stopped on" in out.stderr and "its checkpoint kept" in out.stderr
    state = store_state(f"sqlite:///{tmp_path}/mlflow.db", 6)
    assert state["stuck_running"] == 0 and not state["finished"]
    stopped = [r for r in state["arms"] if r.info.status == "KILLED"]
    assert len(stopped) == 1 and list((tmp_path / "checkpoints").glob("*.pt")), "no run stopped with its checkpoint"
    assert "not judged yet: relu (4 runs left); maxpool (4 runs left)" in " ".join(out.stderr.split())
