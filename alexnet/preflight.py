"""A one-minute check of every numerics path a budgeted run will take, before the budget starts.

Each path (fp32 with TF32 off, TF32, bf16 autocast + channels_last, torch.compile, evaluation)
trains the lecture's network for two SGD steps with the trainer itself (``train``: one step per
epoch, two epochs, a checkpoint after each) on a few real images and evaluates it; then trains
the same run again, interrupted after its first step, and resumes it from that checkpoint (the
resume path: weights-only load, owner check, model, optimiser and RNG state), expecting the
uninterrupted run's numbers: exactly on a CPU, within ``RESUME_TOLERANCE`` on CUDA, whose
kernels are not bitwise deterministic. A path that raises, or ends with a loss that is not
finite, fails the preflight: on a GPU node that stops the run before its budget
(``scripts/gpu-run``)."""

from __future__ import annotations

import math
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .config import Config
from .data import FashionMNIST
from .env import compile_problem, device_name, resolve_device
from .train import train

IMAGES = 8  # training images: one step of batch 8 per epoch
RESUME_TOLERANCE = 1e-3  # relative, on CUDA: a resumed run's numbers against the uninterrupted run's
COMPARED = ("train_loss", "train_acc", "test_acc", "train_eval_acc")


class _Interrupt(Exception):
    """Stops a preflight run after its first epoch (its checkpoint written), as a kill would."""


@dataclass
class Check:
    path: str
    config: Config | None  # None: skipped
    status: str = "skipped"  # ok | failed | skipped
    detail: str = ""  # the failure's traceback, or why the path is skipped
    seconds: float = 0.0
    loss: float = math.nan


def paths(device: torch.device, base: Config, compile_too: bool) -> list[Check]:
    """The numerics paths of ``base`` (a smoke-sized copy of the run's config) on ``device``."""
    cuda = device.type == "cuda"
    tf32 = cuda and torch.cuda.get_device_capability(device)[0] >= 8
    checks = [Check("fp32 (TF32 off), NCHW", replace(base, precision="fp32", channels_last=False)),
              Check("fp32 (TF32 off) + channels_last", replace(base, precision="fp32")),
              Check("tf32", replace(base, precision="tf32") if tf32 else None,
                    detail="" if tf32 else f"TF32 needs a CUDA device of capability 8.0+ ({device_name(device)})"),
              Check("bf16 autocast + channels_last", replace(base, precision="bf16"))]
    if compile_too:
        problem = compile_problem(device)
        checks.append(Check("bf16 + channels_last + torch.compile", None if problem else
                            replace(base, precision="bf16", compile=True), detail=problem or ""))
    return checks


def run(data: FashionMNIST, device: str = "auto", input_size: int = 224, width: float = 1.0,
        compile_too: bool | None = None, on_check=None) -> list[Check]:
    """Every path's check, in order; ``compile_too`` None: on CUDA only (a CPU compile takes minutes).
    ``on_check(check)`` is called as each one ends."""
    dev = resolve_device(device)
    base = Config(input_size=input_size, width=width, batch_size=IMAGES, epochs=2, device=dev.type)
    small = FashionMNIST(data.train_images[:IMAGES], data.train_labels[:IMAGES], data.test_images[:2 * IMAGES],
                         data.test_labels[:2 * IMAGES])
    checks = paths(dev, base, dev.type == "cuda" if compile_too is None else compile_too)
    with tempfile.TemporaryDirectory(prefix="alexnet-preflight-") as tmp:
        for i, check in enumerate(checks):
            if check.config is not None:
                _check(check, small, Path(tmp) / f"path{i}.pt")
            if on_check:
                on_check(check)
    return checks


def _interrupt_after_first_epoch(record: dict) -> None:
    raise _Interrupt


def _check(check: Check, data: FashionMNIST, ckpt_path: Path) -> None:
    start = time.perf_counter()
    try:
        whole = train(check.config, seed=0, data=data, progress=False)
        check.loss = whole.final("train_loss")
        if whole.status != "finished" or not math.isfinite(check.loss):
            raise RuntimeError(f"the two steps ended {whole.status} with train loss {check.loss}")
        try:
            train(check.config, seed=0, data=data, checkpoint=ckpt_path, progress=False,
                  on_epoch=_interrupt_after_first_epoch)
            raise RuntimeError("the interrupted run did not stop after its first step")
        except _Interrupt:
            pass
        resumed = train(check.config, seed=0, data=data, checkpoint=ckpt_path, progress=False)
        if differs := resume_difference(whole, resumed, exact=check.config.device == "cpu"):
            raise RuntimeError(f"the run resumed from its checkpoint differs from the uninterrupted run: {differs}")
        check.status = "ok"
    except Exception:  # noqa: BLE001 - any failure of a path is the finding; its traceback is kept
        check.status, check.detail = "failed", traceback.format_exc()
    check.seconds = time.perf_counter() - start


def resume_difference(whole, resumed, exact: bool) -> str:
    """'' when the resumed run's epochs match the uninterrupted run's (exactly, or within
    RESUME_TOLERANCE), else the first number that differs."""
    if len(resumed.epochs) != len(whole.epochs):
        return f"{len(resumed.epochs)} epochs, expected {len(whole.epochs)}"
    for a, b in zip(whole.epochs, resumed.epochs):
        for key in COMPARED:
            x, y = a.get(key), b.get(key)
            same = x == y if exact or x is None or y is None else math.isclose(x, y, rel_tol=RESUME_TOLERANCE,
                                                                               abs_tol=RESUME_TOLERANCE)
            if not same:
                return f"epoch {a['epoch']} {key} {y} against {x}"
    return ""
