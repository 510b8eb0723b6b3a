"""Data-parallel training with torchrun (gloo, 2 CPU processes) ends with the weights of a
1-process run with the same global batch, and is reproducible for a given world size."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, data_path, free_port

# 200 images in global batches of 30: six of 30 (15 per rank) and a last one of 20 (10 per rank);
# augmentation on (every rank draws the same global augmentation), dropout off (masks are per rank)
ARGS = ["--input-size", "28", "--train-size", "200", "--test-size", "100", "--epochs", "2", "--batch-size", "30",
        "--dropout", "0", "--augment", "--momentum", "0.5", "--device", "cpu"]
# Measured on the 2-core CI machine: 3.1e-5 between 1 and 2 processes (float sums in another order,
# 14 SGD steps), 0.0 between two 2-process runs, 0.60 between seeds 0 and 1.
TOLERANCE = 5e-4


def run(tmp_path, name: str, nproc: int, *extra: str) -> dict:
    launcher = [sys.executable, "-m", "alexnet"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
        "--master-port", str(free_port()), "-m", "alexnet"]
    env = {**os.environ, "ALEXNET_DATA_DIR": str(data_path()), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([*launcher, "train", *ARGS, *extra, "--checkpoint", str(tmp_path / f"{name}.pt"),
                          "--json", str(tmp_path / f"{name}.json")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return {"weights": torch.load(tmp_path / f"{name}.pt", weights_only=True)["model"],
            "result": json.loads((tmp_path / f"{name}.json").read_text())}


def max_diff(a: dict, b: dict) -> float:
    return max((a["weights"][k] - b["weights"][k]).abs().max().item() for k in a["weights"])


@pytest.mark.torchrun
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path, ledger):
    one = run(tmp_path, "one", 1)
    two = run(tmp_path, "two", 2)
    again = run(tmp_path, "again", 2)
    other_seed = run(tmp_path, "seed1", 1, "--seed", "1")
    what = "largest weight difference after 14 SGD steps (global batch 30, augmentation on),"
    for label, a, b in (("2 gloo processes vs 1", one, two), ("two 2-process runs", two, again),
                        ("seed 0 vs seed 1, 1 process", one, other_seed)):
        ledger(kind="measure", what=f"{what} {label}", value=f"{max_diff(a, b):.2g}")
    assert two["result"]["world_size"] == 2 and one["result"]["world_size"] == 1
    assert max_diff(one, two) < TOLERANCE
    assert max_diff(two, again) == 0.0  # reproducible for a given world size
    assert max_diff(one, other_seed) > 100 * TOLERANCE  # the comparison can fail
    for e1, e2 in zip(one["result"]["epochs"], two["result"]["epochs"]):  # metrics reduced over ranks
        assert abs(e1["train_loss"] - e2["train_loss"]) < 1e-4
        assert (e1["train_acc"], e1["test_acc"]) == (e2["train_acc"], e2["test_acc"])
    assert two["result"]["train_examples"] == 200 and two["result"]["eval_examples"] == 100
