import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
DATA_DIR = Path(os.environ.get("ALEXNET_DATA_DIR", SHARED))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"Fashion-MNIST not found at {DATA_DIR}: set ALEXNET_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def fmnist(data_dir):
    from alexnet.data import load_fashion_mnist

    return load_fashion_mnist(data_dir)
