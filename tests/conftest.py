import contextlib
import functools
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "fashion-mnist"
DATA_DIR = Path(os.environ.get("ALEXNET_DATA_DIR", SHARED))
if "ALEXNET_DATA_DIR" not in os.environ and SHARED.is_dir():  # in-process CLI tests read the variable too
    os.environ["ALEXNET_DATA_DIR"] = str(SHARED)


# Test tiers. The default (``python -m pytest``, ``nox -s tests``) runs the fast tier: in-process,
# tiny configs, one SQLite store. ``nox -s integration`` runs the tests marked ``slow`` (suites in
# subprocesses, servers, browsers, PostgreSQL, torchrun, fresh venvs). A test that needs a service
# carries its marker and is slow by that fact; the guard below checks the service before it runs.
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SERVICES = {  # marker -> why the service is missing here (None: present)
    "postgres": lambda: None if os.environ.get("ALEXNET_TEST_POSTGRES") else
    "ALEXNET_TEST_POSTGRES is unset: start a server with `export ALEXNET_TEST_POSTGRES=$(bash .ci/postgres.sh)`",
    "browser": lambda: None if os.path.exists(CHROMEDRIVER) else
    "chromedriver is missing: install Debian's chromium and chromium-driver (.ci/run does)",
    "mlflow_server": lambda: None if importlib.util.find_spec("mlflow.server") else "mlflow's server is not installed",
    "torchrun": lambda: None if __import__("torch").distributed.is_available() else
    "this torch build has no torch.distributed",
    "venv": lambda: None if importlib.util.find_spec("ensurepip") else
    "this Python cannot create virtual environments (no ensurepip: apt-get install python3-venv)",
    "root": lambda: None if os.geteuid() == 0 else "needs root (it mounts a tmpfs); CI runs .ci/run as root",
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects: a test that needs a service is slow
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in SERVICES) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        # two at a time (nox's -n 2 --dist loadgroup): the tests of the one smoke suite run on one
        # worker, in order, so it is built once (modules with stores of their own say so themselves)
        if "smoke_suite" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("smoke-suite"))


def missing_service(name: str) -> None:
    """Fail (under CI=true: a missing service is a broken CI) or skip (elsewhere, with the reason)
    when the service ``name`` is not available."""
    problem = SERVICES[name]()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{name} needed under CI=true: {problem}")
        pytest.skip(f"needs {name}: {problem}")


@pytest.fixture(autouse=True)
def service_guard(request):
    """The one guard: every service a test's markers name is checked before it runs."""
    for name in SERVICES:
        if request.node.get_closest_marker(name):
            missing_service(name)


@functools.cache
def data_path() -> Path:
    """$ALEXNET_DATA_DIR, else ../shared/data/fashion-mnist, else torchvision's download."""
    if DATA_DIR.is_dir():
        return DATA_DIR
    from alexnet.data import resolve_data_dir

    return resolve_data_dir(None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return data_path()


@pytest.fixture(scope="session")
def fmnist(data_dir):
    from alexnet.data import load_fashion_mnist

    return load_fashion_mnist(data_dir)


def suite_command(workdir: Path, *args: str, uri: str | None = None, checkpoints: Path | None = None):
    """(argv, env) of ``python -m ablations`` with its MLflow store (default: an SQLite file in
    ``workdir``), results and checkpoints under ``workdir``."""
    cmd = [sys.executable, "-m", "ablations", "--tracking-uri", uri or f"sqlite:///{workdir}/mlflow.db",
           "--results-dir", str(workdir / "results"), "--checkpoint-dir", str(checkpoints or workdir / "checkpoints"),
           *args]
    env = {**os.environ, "ALEXNET_DATA_DIR": str(data_path()), "PYTHONPATH": str(REPO), "COLUMNS": "200",
           "ALEXNET_POLL_S": "1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    return cmd, env


def run_suite(workdir: Path, *args: str, uri: str | None = None, env_extra: dict | None = None,
              **kwargs) -> subprocess.CompletedProcess:
    cmd, env = suite_command(workdir, *args, uri=uri)
    return subprocess.run(cmd, cwd=workdir, env={**env, **(env_extra or {})}, capture_output=True, text=True,
                          **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_or_sqlite(workdir: Path) -> str:
    """A fresh PostgreSQL database for an MLflow server when $ALEXNET_TEST_POSTGRES points at a
    server (CI: always), else an SQLite file."""
    url = os.environ.get("ALEXNET_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            missing_service("postgres")  # fails: CI starts PostgreSQL
        return f"sqlite:///{workdir}/server.db"
    import psycopg

    name = f"mlflow_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name


@contextlib.contextmanager
def mlflow_server(backend: str, workdir: Path, port: int | None = None):
    """A real ``mlflow server`` on loopback (artifacts proxied into ``workdir``); yields (url, process)."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                             "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                if urllib.request.urlopen(url + "/health", timeout=2).read() == b"OK":
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server on {backend} did not answer /health within 90 s") from None
                time.sleep(0.5)
        yield url, proc
    finally:
        stop_server(proc)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server and its workers (their process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def store_state(uri: str, expected: int) -> dict:
    """The runs of the suite's experiment, and how its ``expected`` distinct arm x seed runs fared:
    lost (not finished), duplicated (finished twice), and runs of any kind left RUNNING."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("alexnet-claims").experiment_id
    runs = client.search_runs([exp], max_results=1000)
    arms = [r for r in runs if r.data.tags.get("kind") == "arm"]
    finished = [r for r in arms if r.info.status == "FINISHED"]
    idents = {(r.data.tags["config_key"], r.data.tags["seed"]) for r in finished}
    return {"runs": runs, "arms": arms, "finished": finished, "lost": expected - len(idents),
            "duplicated": len(finished) - len(idents),
            "stuck_running": sum(r.info.status == "RUNNING" for r in runs)}


RELIABILITY: list[dict] = []  # one row per injected fault or bad input, see ``ledger``


@pytest.fixture
def ledger(request):
    """Record what a reliability test injected and what the store held afterwards (or what it
    measured: kind "measure"); with
    $ALEXNET_RELIABILITY_OUT set (``nox -s reliability``) the rows are written there as JSON."""
    def record(**row):
        RELIABILITY.append({"test": request.node.name, **row})
    return record


def pytest_sessionfinish(session, exitstatus):
    """With $ALEXNET_RELIABILITY_OUT=DIR: DIR/reliability.json and a markdown summary, reliability.md."""
    out = os.environ.get("ALEXNET_RELIABILITY_OUT")
    if not (out and RELIABILITY):
        return
    import json

    from alexnet.env import environment

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    env = environment(__import__("torch").device("cpu"))
    (folder / "reliability.json").write_text(json.dumps({"pytest_exit_status": int(exitstatus), "env": env,
                                                         "rows": RELIABILITY}, indent=2))
    faults = [r for r in RELIABILITY if r["kind"] == "fault"]
    bad = [r for r in RELIABILITY if r["kind"] == "bad input"]
    lines = [f"Produced by `nox -s reliability` (pytest exit status {int(exitstatus)}) at commit {env['git_commit']}, "
             f"torch {env['torch']}, {env['device']}.", "",
             f"**{len(faults)} faults injected; {sum(r['runs'] for r in faults)} arm x seed runs at stake; "
             f"runs lost: {sum(r['lost'] for r in faults)}; duplicated: {sum(r['duplicated'] for r in faults)}; "
             f"left RUNNING: {sum(r['stuck_running'] for r in faults)}.**", "",
             "| fault | how it was injected | exit, then re-run exit | runs | lost | duplicated | left RUNNING |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['fault']} | {r['injected']} | {r.get('first_exit', '')} → {r.get('rerun_exit', '—')} "
              f"| {r['runs']} | {r['lost']} | {r['duplicated']} | {r['stuck_running']} |" for r in faults]
    tried = sum(r["tried"] for r in bad)
    lines += ["", f"**{tried} bad inputs tried, each rejected with an error naming it** (a test fails on any "
                  "input accepted or rejected without its value named).", "",
              "| bad input | tried | example error |", "|---|---|---|"]
    lines += [f"| {r['input']} | {r['tried']} | {r['error'][:160].replace('|', '/')} |" for r in bad]
    archives = [r for r in RELIABILITY if r["kind"] == "archive"]
    if archives:
        lines += ["", f"**{len(archives)} hostile node archives tried (`python -m ablations import`): "
                      f"{sum(r['rejected'] for r in archives)} rejected; bytes written outside the store: "
                      f"{sum(r['outside_bytes'] for r in archives)}; local stores or results changed: "
                      f"{sum(r['store_changed'] for r in archives)}.**", "",
                  "| archive (test) | error |", "|---|---|"]
        lines += [f"| {r['archive']} | {r['error'][:200].replace('|', '/')} |" for r in archives]
    cli = [r for r in RELIABILITY if r["kind"] == "cli"]
    if cli:
        total = {k: sum(r.get(k, 0) for r in cli) for k in ("tried", "options", "refused", "started", "finished",
                                                              "read-only", "traceback", "side effect", "other failure")}
        lines += ["", f"**{total['tried']:,} command-line cases tried over {total['options']} options of {len(cli)} "
                      f"commands (`tests/test_fuzz.py`): {total['refused']:,} refused in one line with exit 2, "
                      f"{total['started'] + total['finished'] + total['read-only']:,} valid (reached the start of "
                      f"the work, or a read-only command that changed nothing); tracebacks: {total['traceback']}; "
                      f"side effects of a refusal: {total['side effect']}; other failures: "
                      f"{total['other failure']}.**", "",
                  "| command | options | cases | refused | valid | tracebacks | side effects |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| `{r['command']}` | {r['options']} | {r['tried']} | {r.get('refused', 0)} | "
                  f"{r.get('started', 0) + r.get('finished', 0) + r.get('read-only', 0)} | {r.get('traceback', 0)} | "
                  f"{r.get('side effect', 0)} |" for r in cli]
    measured = [r for r in RELIABILITY if r["kind"] == "measure"]
    if measured:
        lines += ["", "| measured | value |", "|---|---|"] + [f"| {r['what']} | {r['value']} |" for r in measured]
    (folder / "reliability.md").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def smoke_suite(tmp_path_factory):
    """One smoke-scale suite for the tests that inspect its store, results and UI."""
    workdir = tmp_path_factory.mktemp("smoke")
    out = run_suite(workdir, "--scale", "smoke")
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir, out


def ladder_arms(names: list[str]) -> dict:
    """name -> Arm: "+ X" a rung adding X, "− X" the top rung without X, else the bottom rung."""
    from ablations.claims import Arm, rung, without

    return {n: rung(n[2:], {}) if n.startswith("+ ") else without(n[2:], {}) if n.startswith("− ") else Arm()
            for n in names}


def arm_run(claim, arm: str, seed: int, test: float, *, train: float | None = None, config=None, correct=None,
            images: int = 1000, status: str = "finished", split: str = "test"):
    """A one-epoch run of ``claim``'s ``arm`` as the store gives it back: final test accuracy ``test``,
    train accuracy ``train`` (default: the same), per-image outcomes ``correct`` (bools) if given."""
    from ablations.verdicts.judge import ArmRun
    from alexnet.config import Config
    from alexnet.result import TrainResult, pack

    train = test if train is None else train
    result = TrainResult({}, seed, {}, split, 1, 1, 100, images, status=status,
                         epochs=[{"epoch": 1, "train_loss": 1.0, "train_acc": train, f"{split}_acc": test,
                                  "test_acc": test, "train_eval_acc": train, "epoch_time_s": 1.0}],
                         eval_correct="" if correct is None else pack([correct]))
    return ArmRun(arm, seed, config or Config(), result, "", True, claim)
