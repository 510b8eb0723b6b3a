"""``TrainResult``: what one training run returns, and what the store keeps as ``result.json``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


@dataclass
class TrainResult:
    config: dict  # every Config field
    seed: int
    env: dict  # code version, torch, device... (alexnet.env.environment)
    eval_split: str  # "test", or "val" when a validation split was held out of the training set
    params: int
    flops_per_image: int
    train_examples: int
    eval_examples: int
    world_size: int = 1
    status: str = "running"  # then "finished" or "diverged"
    diverged_at_epoch: int | None = None
    epochs: list[dict] = field(default_factory=list)  # per epoch: train_loss, train_acc, <eval_key>, timings
    grad_norms: dict[str, float] = field(default_factory=dict)  # per weighted layer, mean over epoch 1's batches

    @property
    def eval_key(self) -> str:
        """The per-epoch key of the evaluation accuracy: ``test_acc`` or ``val_acc``."""
        return f"{self.eval_split}_acc"

    def final(self, name: str) -> float:
        """The last epoch's ``name`` (``gap``: train_acc - test_acc); NaN unless the run finished."""
        if not self.epochs or self.status != "finished":
            return math.nan
        last = self.epochs[-1]
        return last["train_acc"] - last["test_acc"] if name == "gap" else last[name]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainResult:
        """From ``result.json`` (read back from a store: unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
