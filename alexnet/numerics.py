"""A run's numerics: the fp32 precision flags (TF32 or not), bf16 autocast, and the device sync
that every timing waits on."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

from .config import Config


@contextmanager
def fp32_precision(config: Config):
    """TF32 for CUDA's fp32 matmuls and cuDNN convolutions on for a tf32 run only, off otherwise,
    for as long as the block runs: a whole training step (forward, backward, optimiser), since
    kernels read the flags when they launch, and the backward's launch after the forward's block.

    torch (2.9+) keeps the flags twice: the ``fp32_precision`` strings and the legacy
    ``allow_tf32`` / matmul-precision values, and a reader of either raises when the two disagree
    ("mix of the legacy and new APIs"): Inductor still reads the legacy one, so a run that set
    only ``matmul.fp32_precision = "tf32"`` fails to compile. The two setters used here,
    ``cuda.matmul.allow_tf32`` (aten ``setAllowTF32CuBLAS``) and ``cudnn.allow_tf32``
    (``setAllowTF32CuDNN``: convolutions and RNNs), write both views at once, so every reader
    agrees; the CPU's oneDNN flags are left alone. torch 2.10-2.11 warn once that these setters
    will be deprecated; the warning is silenced here, since they are the consistent ones."""
    saved = _set_tf32([config.precision == "tf32"] * 2)
    try:
        yield
    finally:
        _set_tf32(saved)


def _set_tf32(values: list[bool]) -> list[bool]:
    """Sets (CUDA matmuls, cuDNN) TF32 through the setters that write both views; returns the old values."""
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Please use the new API settings to control TF32")
        saved = [f.allow_tf32 for f in flags]
        for f, value in zip(flags, values):
            f.allow_tf32 = value
    return saved


@contextmanager
def autocast(config: Config, device: torch.device):
    """bf16 autocast for a bf16 run's forward pass (and loss); nothing otherwise."""
    if config.precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


@contextmanager
def precision(config: Config, device: torch.device):
    """Both, for a forward pass alone (evaluation, inference)."""
    with fp32_precision(config), autocast(config, device):
        yield


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
