import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "fashion-mnist"
DATA_DIR = Path(os.environ.get("ALEXNET_DATA_DIR", SHARED))


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


def run_suite(workdir: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m ablations`` in ``workdir`` with its own MLflow store, results and checkpoints."""
    cmd = [sys.executable, "-m", "ablations", "--tracking-uri", f"sqlite:///{workdir}/mlflow.db",
           "--results-dir", str(workdir / "results"), "--checkpoint-dir", str(workdir / "checkpoints"), *args]
    env = {**os.environ, "ALEXNET_DATA_DIR": str(data_path()), "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def smoke_suite(tmp_path_factory):
    """One smoke-scale suite for the tests that inspect its store, results and UI."""
    workdir = tmp_path_factory.mktemp("smoke")
    out = run_suite(workdir, "--scale", "smoke")
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir, out
