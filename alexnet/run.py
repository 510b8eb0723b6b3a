"""``run(config, seed) -> TrainResult``: one run of any kind of arm (``alexnet.kinds``).

A network is trained by the SGD loop (``alexnet.train``), with its checkpoint, progress bars
and resume; a fitted kind (the SVM) by its own ``fit``, once per config: its result does not
depend on the seed. Every caller that may meet either (the suite, the CLI, tuning, the
preflight) goes through here, so a new kind needs no edit to them."""

from __future__ import annotations

import os
from collections.abc import Callable

from . import classical  # noqa: F401  (registers the built-in fitted kind)
from .config import Config
from .data import FashionMNIST, load_fashion_mnist
from .kinds import kind_of
from .result import TrainResult
from .train import train


def run(config: Config, seed: int = 0, *, data: FashionMNIST | None = None,
        data_dir: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
        on_epoch: Callable[[dict], None] | None = None, progress: bool | None = None) -> TrainResult:
    """Train or fit ``config`` with ``seed``; the arguments are ``alexnet.train``'s (a fitted
    kind has no epochs to checkpoint or show, and ignores ``checkpoint`` and ``progress``)."""
    kind = kind_of(config)
    if kind.sgd:
        return train(config, seed, data=data, data_dir=data_dir, checkpoint=checkpoint, on_epoch=on_epoch,
                     progress=progress)
    return kind.fit(config, seed, data or load_fashion_mnist(data_dir), on_epoch)
