"""Property tests over the configuration space: every accepted Config builds an AlexNet whose
forward and backward pass work; every rejected one fails with a message naming the value."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alexnet.config import ACTIVATIONS, INPUT_SIZES, POOLS, PRECISIONS, TRAIN_IMAGES, Config
from alexnet.env import check_runtime
from alexnet.model import build_alexnet

SIZE = st.one_of(st.none(), st.integers(-10, 70_000), st.sampled_from([10, 100, 1000]))
ANY = {  # valid values and invalid ones
    "activation": st.sampled_from([*ACTIVATIONS, "swish", "ReLU", ""]),
    "dropout": st.floats(-0.5, 1.5) | st.sampled_from([0.0, 0.5, math.nan]),
    "pool": st.sampled_from([*POOLS, "median"]),
    "pool_kernel": st.integers(-1, 40),
    "pool_stride": st.sampled_from([-1, 0, 2, 3, 5, 8]),  # stride 1 is valid but needs a dense layer of 10 G
                                                          # parameters at 224 px: too big for this test
    "input_size": st.sampled_from([*INPUT_SIZES, 32, 0]),
    "lrn": st.booleans(),
    "lr": st.floats(-1, 1) | st.sampled_from([0.0, math.nan, math.inf]),
    "momentum": st.floats(-0.5, 1.5),
    "weight_decay": st.floats(-1, 1),
    "batch_size": st.integers(-2, 70_000) | st.sampled_from([1, 128]),
    "epochs": st.integers(-1, 3),
    "train_size": SIZE,
    "test_size": SIZE,
    "validation_size": SIZE,
    "precision": st.sampled_from(["fp32", "bf16", "fp16"]),
    "device": st.sampled_from(["cpu", "tpu"]),
    "features": st.sampled_from(["hog", "pixels", "sift"]),  # the SVM's fields, checked whatever the arch
    "kernel": st.sampled_from(["linear", "rbf", "poly"]),
    "svm_c": st.floats(-1, 100) | st.sampled_from([0.0, math.nan, math.inf]),
    "svm_max_train": st.integers(-10, 70_000),
}
VALID = {  # only accepted values (batch and pooling drawn to fit)
    "activation": st.sampled_from(ACTIVATIONS),
    "dropout": st.floats(0, 0.99),
    "pool": st.sampled_from(POOLS),
    "pool_kernel": st.integers(1, 3),
    "pool_stride": st.integers(2, 3),
    "input_size": st.sampled_from(INPUT_SIZES),
    "lrn": st.booleans(),
    "lr": st.floats(1e-6, 10),
    "momentum": st.floats(0, 0.99),
    "weight_decay": st.floats(0, 1),
    "epochs": st.integers(1, 100),
    "precision": st.sampled_from([p for p in PRECISIONS if p != "tf32"]),
}
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def forward_backward(config: Config) -> None:
    torch.manual_seed(0)
    net = build_alexnet(config)
    x = torch.rand(2, 1, config.input_size, config.input_size)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16"):
        out = net(x)
    assert out.shape == (2, 10)
    F.cross_entropy(out.float(), torch.tensor([0, 1])).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_any_config_is_accepted_and_trains_or_rejected_with_its_value_named(ledger):
    rejected: dict[str, list] = {}  # field -> [times rejected, first message]
    accepted = []

    @SETTINGS
    @given(st.fixed_dictionaries({}, optional=ANY))
    def check(fields):
        try:
            config = Config(**fields)
            check_runtime(config)
        except ValueError as exc:
            named = re.match(r"invalid (\w+)=(.*?): expected ", str(exc))
            assert named, f"message does not name a value and what is allowed: {exc}"
            name, shown = named.groups()
            assert name in Config.__dataclass_fields__
            assert shown == repr(getattr(Config(), name) if name not in fields else fields[name])
            event(f"rejected: {name}")
            rejected.setdefault(name, [0, str(exc)])[0] += 1
            return
        event("accepted")
        forward_backward(config)
        accepted.append(config)

    check()
    assert accepted and len(rejected) >= 5  # both sides of the space were explored
    for name, (times, message) in sorted(rejected.items()):
        ledger(kind="bad input", input=f"config: bad {name} (hypothesis)", tried=times,
               error=message)


@pytest.mark.slow  # 30 forward and backward passes, many at 224 px: about 25-40 s on 2 cores
@settings(SETTINGS, max_examples=30)
@given(st.fixed_dictionaries(VALID), st.data())
def test_every_config_in_the_valid_space_is_accepted(fields, data):
    train_size = data.draw(st.none() | st.integers(1, 100).map(lambda n: 10 * n))
    fields["batch_size"] = data.draw(st.integers(1, train_size or TRAIN_IMAGES))
    config = Config(**fields, train_size=train_size, device="cpu")
    assert check_runtime(config).type == "cpu"
    forward_backward(config)


@pytest.mark.parametrize("fields,message", [
    ({"batch_size": 200, "train_size": 100}, "invalid batch_size=200: expected at most the 100 training images"),
    ({"train_size": 59_000, "validation_size": 2000}, "invalid train_size=59000: expected at most 58,000"),
    ({"input_size": 28, "pool_kernel": 7, "pool_stride": 7}, "invalid pool_kernel=7: expected a window that fits "
                                                             "the 4-px map"),
    ({"test_size": 20_000}, "invalid test_size=20000: expected at most the 10,000 test images"),
])
def test_data_dependent_limits_are_checked_before_any_work(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Config(**fields)


def test_what_a_compile_needs_is_named_before_a_compile_is_tried(monkeypatch, tmp_path):
    """triton builds its CUDA launcher with $CC (else gcc or clang) against Python.h, and runtime
    images often lack both; checking only that triton is installed let the first compile fail.
    The compiler is missing for real ($CC names none); Python's headers cannot be removed from
    this machine, so sysconfig is pointed at a folder without them."""
    import importlib.util
    import sysconfig

    from alexnet.env import compile_problem

    if importlib.util.find_spec("triton"):  # past the triton check, the CUDA path's compiler check
        monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
        assert "needs a C compiler ($CC, gcc or clang) for triton's launcher" in compile_problem(torch.device("cuda"))
        monkeypatch.delenv("CC")
    real = sysconfig.get_paths
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {**real(*a, **k), "include": str(tmp_path)})
    assert compile_problem(torch.device("cpu")) == (f"compiling needs Python's headers ({tmp_path}/Python.h is "
                                                    "missing: install the python3-dev package of this Python)")


def test_runtime_lacks_are_named_before_any_work(monkeypatch, ledger):
    with pytest.raises(ValueError, match="invalid precision='tf32' on cpu-.*: TF32 needs a CUDA device") as err:
        check_runtime(Config(precision="tf32", device="cpu"))
    ledger(kind="bad input", input="a precision the device lacks", tried=1, error=str(err.value))
    monkeypatch.setenv("CXX", "no-such-compiler")  # a machine without a C++ compiler, for real
    with pytest.raises(ValueError, match=r"invalid compile=True: compiling for the CPU needs a C\+\+ compiler "
                                         r"\(no-such-compiler\)") as err:
        check_runtime(Config(compile=True, device="cpu"))
    ledger(kind="bad input", input="torch.compile where it is unavailable", tried=1,
           error=str(err.value))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="invalid device='cuda': no CUDA device is visible"):
            check_runtime(Config(device="cuda"))
