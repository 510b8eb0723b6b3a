"""``TrainResult``: what one training run returns, and what the store keeps as ``result.json``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


def pack(outcomes: list) -> str:
    """Per-image outcomes (bool tensors or arrays, in order) as ``TrainResult.eval_correct``:
    np.packbits, as hex."""
    import numpy as np

    return np.packbits(np.concatenate([np.asarray(o.cpu() if hasattr(o, "cpu") else o, dtype=bool)
                                       for o in outcomes])).tobytes().hex()


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
    epochs: list[dict] = field(default_factory=list)  # per epoch: train_loss, train_acc, <eval_key>,
    # train_eval_acc (eval mode, on a training sample the evaluation set's size), timings
    grad_norms: dict[str, float] = field(default_factory=dict)  # per weighted layer, mean over epoch 1's batches
    eval_correct: str = ""  # the last evaluation, image by image: 1 right, 0 wrong (np.packbits, hex); "": not kept

    def correct(self) -> list[bool] | None:
        """The last evaluation's per-image outcomes, in the evaluation set's order (None: not kept)."""
        if not self.eval_correct:
            return None
        bits = bytes.fromhex(self.eval_correct)
        return [bool(byte >> (7 - i) & 1) for byte in bits for i in range(8)][:self.eval_examples]

    @property
    def eval_key(self) -> str:
        """The per-epoch key of the evaluation accuracy: ``test_acc`` or ``val_acc``."""
        return f"{self.eval_split}_acc"

    def final(self, name: str) -> float:
        """The last epoch's ``name``; NaN unless the run finished. ``gap``: train_eval_acc - test_acc,
        both in eval mode (results written before train_eval_acc existed: d2l's running train_acc)."""
        if not self.epochs or self.status != "finished":
            return math.nan
        last = self.epochs[-1]
        if name == "gap":
            return last.get("train_eval_acc", last["train_acc"]) - last["test_acc"]
        return last.get(name, math.nan)

    @property
    def wall_s(self) -> float:
        """The run's wall time on the machine that ran it: its epochs' times (evaluation included)."""
        return sum(e["epoch_time_s"] for e in self.epochs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainResult:
        """From ``result.json`` (read back from a store: unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def parse(cls, d) -> TrainResult:
        """From an untrusted ``result.json``: every field checked for its type and range, and the
        rules across fields (``alexnet.result_file``); ValueError naming the first bad field."""
        from .result_file import parse

        return cls.from_dict(parse(d))
