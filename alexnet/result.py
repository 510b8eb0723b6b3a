"""``TrainResult``: what one training run returns, and what the store keeps as ``result.json``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

ACCURACIES = ("train_acc", "test_acc", "val_acc", "train_eval_acc")  # fractions of images right: in [0, 1]
MAX_GRAD_NORM = 1e12  # far above any layer's mean gradient norm of a run that did not diverge


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
        """From an untrusted ``result.json``: every field checked for its type and range (the config
        by ``Config`` itself); ValueError naming the first bad field."""
        from .config import Config

        need, count, finite = _need, _count, _finite
        need(isinstance(d, dict), "result", "an object")
        need(isinstance(d.get("config"), dict), "config", "an object of Config fields")
        Config(**d["config"])  # names a bad field itself
        need(count(d.get("seed")), "seed", "an integer >= 0")
        need(isinstance(d.get("env"), dict) and all(isinstance(k, str) and isinstance(v, str) and len(v) < 1000
                                                    and v.isprintable() for k, v in d["env"].items())
             and {"code_version", "torch", "git_commit", "device"} <= set(d["env"]), "env",
             "names to printable strings under 1,000 characters, with code_version, torch, git_commit and device")
        need(d.get("eval_split") in ("test", "val"), "eval_split", "'test' or 'val'")
        need(count(d.get("params")), "params", "an integer >= 0")
        for name in ("flops_per_image", "train_examples", "eval_examples"):  # each divides a figure
            need(count(d.get(name), 1), name, f"an integer >= 1 (got {d.get(name)!r:.40})")
        need(count(d.get("world_size", 1), 1), "world_size", "an integer >= 1")
        need(d.get("status", "running") in ("running", "finished", "diverged"), "status",
             "running, finished or diverged")
        need(d.get("diverged_at_epoch") is None or count(d["diverged_at_epoch"], 1), "diverged_at_epoch",
             "an epoch or null")
        keys = ("epoch", "train_loss", "train_acc", f"{d['eval_split']}_acc", "examples_per_s", "epoch_time_s")
        need(isinstance(d.get("epochs", []), list) and all(
            isinstance(e, dict) and all(k in e for k in keys) for e in d.get("epochs", [])), "epochs",
             f"a list of records with {', '.join(keys)}")
        for i, e in enumerate(d.get("epochs", []), 1):  # what a training can produce
            bad = next((k for k, v in e.items() if not (finite(v) and v >= 0)), None)
            need(bad is None, f"epochs[{i - 1}].{bad}", f"a finite number >= 0 (got {e.get(bad)!r:.40})")
            need(e["examples_per_s"] > 0, f"epochs[{i - 1}].examples_per_s", "a speed > 0 (got 0)")
            need(e["epoch"] == i, f"epochs[{i - 1}].epoch", f"{i}: epochs numbered 1..n in order (got {e['epoch']!r})")
            bad = next((k for k in ACCURACIES if k in e and not 0 <= e[k] <= 1), None)
            need(bad is None, f"epochs[{i - 1}].{bad}", f"an accuracy in [0, 1] (got {e.get(bad)!r})")
        need(d.get("status") != "finished" or len(d.get("epochs", [])) == d["config"].get("epochs", 10), "epochs",
             "one record per configured epoch in a finished run")
        norms = d.get("grad_norms", {})
        need(isinstance(norms, dict) and all(isinstance(k, str) and finite(v) and 0 <= v <= MAX_GRAD_NORM
                                             for k, v in norms.items()),
             "grad_norms", f"layer names to finite numbers in [0, {MAX_GRAD_NORM:g}]")
        layers = layer_names(Config(**d["config"]))
        stray = sorted(set(norms) - layers)
        need(not stray, "grad_norms", f"the network's own layers ({', '.join(sorted(layers)) or 'none'}); got "
                                      f"{stray[0][:60]!r}" if stray else "")
        correct = d.get("eval_correct", "")
        need(isinstance(correct, str) and (correct == "" or (len(correct) == 2 * -(-d["eval_examples"] // 8)
                                                             and all(c in "0123456789abcdef" for c in correct))),
             "eval_correct", "'' or one hex bit per evaluation image")
        return cls.from_dict(d)


def _need(ok: bool, name: str, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: expected {expected}")


def _count(v, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v < 2**63


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 2**63 and math.isfinite(v)


def layer_names(config) -> set[str]:
    """The names ``alexnet.train.GradNorms`` gives the Conv2d and Linear layers of ``config``'s network
    (position and kind: "0.Conv2d"), from the network built on the meta device (no memory, no time);
    none for a fitted kind (the SVM)."""
    import torch
    from torch import nn

    from .model import build_model

    if not config.sgd:
        return set()
    with torch.device("meta"):
        net = build_model(config)
    return {f"{i}.{m.__class__.__name__}" for i, m in enumerate(net) if isinstance(m, (nn.Conv2d, nn.Linear))}
