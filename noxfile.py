"""Sessions share one virtualenv (.nox/shared) so torch (about 5.5 GB) is installed once, at
the versions constraints.txt pins; it is re-installed only when pyproject.toml or
constraints.txt changes. Arguments after ``--`` pass through."""

import hashlib
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"  # every session runs in the shared env below
nox.options.sessions = ["lint", "tests"]
SHARED = Path(".nox/shared")


def python(session: nox.Session) -> str:
    """The shared env's interpreter, created and installed on first use."""
    py = SHARED / "bin" / "python"
    stamp = SHARED / ".installed"
    wanted = hashlib.sha256(Path("pyproject.toml").read_bytes() + Path("constraints.txt").read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == wanted):
        if not py.exists():
            session.run(sys.executable, "-m", "venv", str(SHARED))
        session.run(str(py), "-m", "pip", "install", "-q", "-e", ".[dev,cluster]", "-c", "constraints.txt")
        stamp.write_text(wanted)
    return str(py)


# Two tests at a time (pytest-xdist), one torch thread each, in the worker and in every process it
# starts: on 2 cores the work of the tiers (Python, torch and MLflow starting, servers, small
# trainings) leaves a core idle much of the time. Tests that share an expensive fixture (the smoke
# suite, a module's stores, the node's environment) are one xdist group, so it is built once.
PARALLEL = ["-n", "2", "--dist", "loadgroup"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@nox.session
def tests(session: nox.Session) -> None:
    """The fast tier (the README's test command): in-process tests on tiny configs and one SQLite
    store, on the real Fashion-MNIST, two at a time; at most 6 min on 2 cores. ``-- -n 0`` runs them
    one at a time."""
    session.run(python(session), "-m", "pytest", *PARALLEL, *session.posargs, env=ONE_THREAD)


@nox.session
def integration(session: nox.Session) -> None:
    """The integration tier: the tests marked slow (suites in subprocesses, the smoke suite, MLflow
    servers, a browser, PostgreSQL, torchrun, fresh venvs), two at a time. CI runs it after the fast tier."""
    session.run(python(session), "-m", "pytest", "-m", "slow", *PARALLEL, *session.posargs, env=ONE_THREAD)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, then the import contracts of pyproject.toml (layers, no cycles, statistics apart)."""
    py = python(session)
    session.run(py, "-m", "ruff", "check", ".", *session.posargs)
    session.run(str(Path(py).with_name("lint-imports")), "--config", "pyproject.toml", "--no-cache")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site into site/ (mkdocs-material, offline): ``mkdocs build --strict``, so a
    broken link, a missing anchor or a page left out of the nav fails; the README's verdict table
    is checked against results/ first. ``-- serve``: serve it on http://127.0.0.1:8000."""
    py = python(session)
    session.run(py, "-m", "ablations.reporting.frontpage", "--check")
    command = session.posargs or ["build", "--strict"]
    session.run(py, "-m", "mkdocs", *command, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def train(session: nox.Session) -> None:
    """One training run: ``nox -s train -- --input-size 28 --epochs 1``."""
    session.run(python(session), "-m", "alexnet", "train", *session.posargs)


@nox.session
def ablations(session: nox.Session) -> None:
    """The claims suite (the README's main job): ``nox -s ablations -- --scale smoke``."""
    session.run(python(session), "-m", "ablations", *session.posargs)


@nox.session
def tune(session: nox.Session) -> None:
    """An Optuna study: ``nox -s tune -- --input-size 28 --trials 8``; one arm of a claim:
    ``python -m ablations tune relu:sigmoid``."""
    session.run(python(session), "-m", "alexnet", "tune", *session.posargs)


@nox.session
def ui(session: nox.Session) -> None:
    """The MLflow UI on http://127.0.0.1:5000 over the suite's store (``-- --port N`` to move it):
    one web worker and no job runner, which is all one user needs and starts about 3x faster."""
    store = "sqlite:///mlflow.db"
    claims = "searchFilter=tags.kind%20%3D%20%27claim%27&orderByKey=tags.%60claim%60"
    session.run(python(session), "-c", "import mlflow; e = mlflow.MlflowClient('sqlite:///mlflow.db')"
                ".get_experiment_by_name('alexnet-claims'); print('claim runs with their verdicts: http://127.0.0.1:5000"
                f"/#/experiments/' + (e.experiment_id if e else '0') + '/runs?{claims}')", silent=False)
    session.log(f"MLflow UI for {store} (Ctrl-C to stop); add the column tags.verdict from the Columns menu")
    session.run(python(session), "-m", "mlflow", "server", "--backend-store-uri", store, "--host", "127.0.0.1",
                "--port", "5000", "--workers", "1", *session.posargs,
                env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput benchmark: ``nox -s bench -- --quick`` on a CPU, plain on a GPU."""
    session.run(python(session), "-m", "bench", *session.posargs)


@nox.session
def reliability(session: nox.Session) -> None:
    """Fault, bad-input, security, concurrency and DDP-agreement tests; figures to results/reliability/
    (docs/reliability.md includes them)."""
    tests = ["tests/test_faults.py", "tests/test_workers.py", "tests/test_data.py", "tests/test_config_properties.py",
             "tests/test_distributed.py", "tests/test_suite.py::test_unknown_claim_is_rejected",
             "tests/test_security.py", "tests/test_secrets.py", "tests/test_import.py", "tests/test_fuzz.py",
             "tests/test_damaged.py", "tests/test_plan_exact.py"]
    session.run(python(session), "-m", "pytest", *tests, "-m", "slow or not slow", *session.posargs,
                env={"ALEXNET_RELIABILITY_OUT": "results/reliability"})


@nox.session
def perf(session: nox.Session) -> None:
    """The CPU perf-regression gates: callgrind instruction counts (fail above 1.05x their baseline),
    then normalised wall-clock times (2x); ``-- --update-baseline`` stores new baselines of both."""
    session.run(python(session), "-m", "pytest", "bench/test_perf.py", "-p", "no:cacheprovider",
                "--benchmark-columns=min,median,iqr,rounds", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing of the core (tests/mutation.py): mutmut's mutants of the statistics and verdict
    modules, the archive import's checks, the trainer's resume path and the count gate's thresholds,
    each run against the unit tests that call it; writes results/mutation/report.md and fails when a
    group misses its target or a survivor has no reason (tests/mutants_reasons.toml). ``-- --report``
    rewrites the report from mutants/ only; ``-- --rerun-survivors`` checks the survivors again."""
    session.run(python(session), "tests/mutation.py", *session.posargs, env=ONE_THREAD)
