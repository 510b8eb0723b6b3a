"""The perf gate (``nox -s perf``): training step, inference batch, data-pipeline batch."""

import itertools

import pytest
import torch

from alexnet.config import Config
from alexnet.train import build, train_step
from bench import gate
from bench.conftest import SMALL_TRAIN, loader


def _train_step_fn(tiny_data, repeat: int = 1):
    device = torch.device("cpu")
    sgd = build(SMALL_TRAIN, device, seed=0)
    batches = itertools.cycle(list(loader(*tiny_data, SMALL_TRAIN.batch_size, 28).epoch(0)))

    def step():
        x, y = next(batches)
        for _ in range(repeat):  # repeat > 1: a deliberately slowed step
            train_step(sgd, x, y)

    return step


def test_train_step(gated, tiny_data):
    gated("train_step_28px_b16", _train_step_fn(tiny_data))


def test_inference_batch(gated, tiny_data):
    config = Config(input_size=224, device="cpu")
    model = build(config, torch.device("cpu"), seed=0).model
    model.eval()
    x, _ = next(loader(*tiny_data, 8, 224).epoch(0))

    def infer():
        with torch.no_grad():
            model(x)

    gated("inference_224px_b8", infer)


def test_pipeline_batch(gated, tiny_data):
    batches = loader(*tiny_data, 128, 224, augment=True)
    epochs = itertools.count()
    stream = itertools.chain.from_iterable(batches.epoch(e) for e in epochs)
    gated("pipeline_224px_b128_augment", lambda: next(stream))


def test_gate_fails_on_a_slowed_training_step(gated, tiny_data, request):
    """The gate works: a training step doing its work four times is caught."""
    if request.config.getoption("--update-baseline"):
        pytest.skip("no baseline to compare with while it is being written")
    ratio = gated("slowed", _train_step_fn(tiny_data, repeat=4), check=False)
    failure = gate.verdict("train_step_28px_b16", ratio, gate.load_baseline())
    assert failure is not None and "x its baseline" in failure
