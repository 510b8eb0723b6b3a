"""Fixtures of the perf gates: a tiny in-memory data set, the calibrated benchmark runner, --update-baseline."""

import json
import statistics

import pytest

from alexnet.config import Config
from bench import gate


def pytest_addoption(parser):
    parser.addoption("--update-baseline", action="store_true",
                     help="store this run's instruction counts and normalised medians as the new baselines")


@pytest.fixture(scope="session")
def tiny_data():
    return gate.tiny_data()


@pytest.fixture(scope="session")
def results(request):
    measured: dict[str, float] = {}
    yield measured
    if request.config.getoption("--update-baseline") and measured:
        gate.BASELINE.write_text(json.dumps({k: round(v, 3) for k, v in sorted(measured.items())}, indent=2) + "\n")


ROUNDS = dict(rounds=15, warmup_rounds=3, iterations=1)


@pytest.fixture
def gated(request, results, benchmark):
    """``gated(name, fn)``: benchmark ``fn`` with a calibration before every round, store the
    normalised median and fail when it regressed past the gate's margin."""

    def _run(name: str, fn, check: bool = True) -> float:
        calibration = gate.Calibration()
        benchmark.pedantic(fn, setup=calibration, **ROUNDS)
        ratio = calibration.normalised(benchmark.stats.stats.data)
        benchmark.extra_info.update(normalised=ratio, calibration_median_s=statistics.median(calibration.times))
        if check:
            results[name] = ratio
            if not request.config.getoption("--update-baseline"):
                failure = gate.verdict(name, ratio, gate.load_baseline())
                assert failure is None, failure
        return ratio

    return _run


SMALL_TRAIN = Config(input_size=28, batch_size=16, device="cpu")
