"""CPU performance-regression gate: micro-benchmarks normalised by a calibration.

Shared CI machines drift by 20% or more between runs, so a raw time is compared with
nothing: each benchmark's median is divided by the median of a fixed matrix product
measured right before each of its rounds on the same machine, and the median of those
ratios is compared with the one stored in ``perf_baseline.json``. A benchmark fails when
its ratio exceeds the baseline's by more than ``MARGIN``."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from alexnet.config import Config
from alexnet.data import DeviceLoader

BASELINE = Path(__file__).with_name("perf_baseline.json")
# Fail above 2x the baseline ratio. On a 2-core CI-class machine the per-round normalised
# medians stayed within 0.86x-1.17x of the baseline over 6 runs, while raw times moved by up
# to 1.9x; a step doing 4x the work reads 3.9x-4.2x. 2x sits well outside the noise.
MARGIN = 1.0
CALIBRATION_N = 512  # fp32 matmul side: about 0.27 GFLOP, on the same BLAS threads as the model


class Calibration:
    """A fixed fp32 matrix product, timed right before every round of a benchmark (as
    pytest-benchmark's ``setup``), so that each round is normalised by the machine's speed
    at that moment."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(CALIBRATION_N, CALIBRATION_N, generator=g)
        self.b = torch.randn(CALIBRATION_N, CALIBRATION_N, generator=g)
        self.times: list[float] = []
        for _ in range(3):  # warm-up
            self.a @ self.b

    def __call__(self) -> None:
        start = time.perf_counter()
        for _ in range(4):
            self.a @ self.b
        self.times.append((time.perf_counter() - start) / 4)

    def normalised(self, round_times: list[float]) -> float:
        """Median over rounds of (round time / the calibration measured just before it)."""
        calibrations = self.times[-len(round_times):]  # the warm-up rounds came first
        return statistics.median(t / c for t, c in zip(round_times, calibrations))


def load_baseline() -> dict:
    return json.loads(BASELINE.read_text()) if BASELINE.exists() else {}


def verdict(name: str, ratio: float, baseline: dict, margin: float = MARGIN) -> str | None:
    """None when ``ratio`` is within the margin of the baseline, else a message saying by how much it is slower."""
    if name not in baseline:
        return f"{name}: no baseline in {BASELINE.name}; run `nox -s perf -- --update-baseline`"
    limit = baseline[name] * (1 + margin)
    if ratio > limit:
        return (f"{name}: {ratio:.2f} calibration units, {ratio / baseline[name]:.2f}x its baseline "
                f"{baseline[name]:.2f} (allowed up to {1 + margin:.2f}x)")
    return None


def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs of both gates: 512 synthetic uint8 images (they time and count compute, not the data set)."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (512, 28, 28), dtype=torch.uint8, generator=g), torch.arange(512) % 10


def loader(images, labels, batch_size, input_size, augment=False) -> DeviceLoader:
    config = Config(input_size=input_size, batch_size=batch_size, augment=augment, channels_last=False, device="cpu")
    return DeviceLoader(images, labels, config, "cpu", train=True)
