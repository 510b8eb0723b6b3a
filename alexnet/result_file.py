"""The schema of ``result.json`` as read back from a store or an archive (untrusted): pydantic
states each field's type and range once (``ResultFile``); the rules across fields are its
``across`` check; a refusal is one ``ValueError`` line naming the first bad field and what it
allows (``TrainResult.parse``)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .untrusted import one_line

ACCURACIES = ("train_acc", "test_acc", "val_acc", "train_eval_acc")  # fractions of images right: in [0, 1]
MAX_GRAD_NORM = 1e12  # far above any layer's mean gradient norm of a run that did not diverge
ENV_NEEDS = ("code_version", "torch", "git_commit", "device")


Count = Annotated[int, Field(strict=True, ge=0, lt=2**63)]
Positive = Annotated[int, Field(strict=True, ge=1, lt=2**63)]

EXPECTED = {  # field -> what it allows, as the refusal says it
    "result": "an object",
    "config": "an object of Config fields",
    "seed": "an integer >= 0",
    "env": "names to printable strings under 1,000 characters, with " + ", ".join(ENV_NEEDS[:-1])
           + f" and {ENV_NEEDS[-1]}",
    "eval_split": "'test' or 'val'",
    "params": "an integer >= 0",
    "flops_per_image": "an integer >= 1 (got {got})",
    "train_examples": "an integer >= 1 (got {got})",
    "eval_examples": "an integer >= 1 (got {got})",
    "world_size": "an integer >= 1",
    "status": "running, finished or diverged",
    "diverged_at_epoch": "an epoch or null",
    "epochs": "a list of records with epoch, train_loss, train_acc, test_acc or val_acc, examples_per_s, "
              "epoch_time_s",
    "grad_norms": f"layer names to finite numbers in [0, {MAX_GRAD_NORM:g}]",
    "eval_correct": "'' or one hex bit per evaluation image",
}


class ResultFile(BaseModel):
    """``result.json``: ``TrainResult``'s fields, each of the type and range a training writes."""
    model_config = ConfigDict(extra="ignore", strict=True)
    config: dict
    seed: Count
    env: dict[str, Annotated[str, Field(max_length=999), AfterValidator(one_line)]]
    eval_split: Literal["test", "val"]
    params: Count
    flops_per_image: Positive  # each of these three divides a figure
    train_examples: Positive
    eval_examples: Positive
    world_size: Positive = 1
    status: Literal["running", "finished", "diverged"] = "running"
    diverged_at_epoch: Positive | None = None
    epochs: list[dict] = []
    grad_norms: dict[str, Annotated[float, Field(allow_inf_nan=False, ge=0, le=MAX_GRAD_NORM)]] = {}
    eval_correct: Annotated[str, Field(pattern="^[0-9a-f]*$")] = ""

    @field_validator("config")
    @classmethod
    def _config(cls, config: dict) -> dict:
        from .config import Config

        try:
            Config(**config)  # names a bad field itself
        except (TypeError, OverflowError) as exc:  # an unknown field, a value of no comparable type, a huge int
            raise ValueError(f"config: expected {EXPECTED['config']} ({exc})") from None
        return config

    @model_validator(mode="after")
    def across(self) -> ResultFile:
        """The rules that join fields: the environment's keys, the epoch records (keyed by the
        evaluation split, numbered 1..n, accuracies in [0, 1], one per configured epoch when
        finished), gradient norms of the network's own layers, one outcome bit per image."""
        from .config import Config

        _need(set(ENV_NEEDS) <= set(self.env), "env", EXPECTED["env"])
        keys = ("epoch", "train_loss", "train_acc", f"{self.eval_split}_acc", "examples_per_s", "epoch_time_s")
        _need(all(k in e for e in self.epochs for k in keys), "epochs", f"a list of records with {', '.join(keys)}")
        for i, e in enumerate(self.epochs, 1):
            _epoch(i, e)
        _need(self.status != "finished" or len(self.epochs) == self.config.get("epochs", 10), "epochs",
              "one record per configured epoch in a finished run")
        layers = layer_names(Config(**self.config))
        stray = sorted(set(self.grad_norms) - layers)
        _need(not stray, "grad_norms", f"the network's own layers ({', '.join(sorted(layers)) or 'none'}); got "
                                       f"{stray[0][:60]!r}" if stray else "")
        _need(self.eval_correct == "" or len(self.eval_correct) == 2 * -(-self.eval_examples // 8), "eval_correct",
              EXPECTED["eval_correct"])
        return self


def _epoch(i: int, e: dict) -> None:
    """Epoch record ``i`` (from 1): numbers a training can produce."""
    bad = next((k for k, v in e.items() if not _number(v)), None)
    _need(bad is None, f"epochs[{i - 1}].{bad}", f"a finite number >= 0 (got {e.get(bad)!r:.40})")
    _need(e["examples_per_s"] > 0, f"epochs[{i - 1}].examples_per_s", "a speed > 0 (got 0)")
    _need(e["epoch"] == i, f"epochs[{i - 1}].epoch", f"{i}: epochs numbered 1..n in order (got {e['epoch']!r})")
    bad = next((k for k in ACCURACIES if k in e and not 0 <= e[k] <= 1), None)
    _need(bad is None, f"epochs[{i - 1}].{bad}", f"an accuracy in [0, 1] (got {e.get(bad)!r})")


def _number(v) -> bool:
    """A finite number >= 0 below 2**63 (not a bool): what a training can produce."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 2**63 and math.isfinite(v)


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


def _need(ok: bool, name: str, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: expected {expected}")


def parse(d) -> dict:
    """``d`` checked against ``ResultFile``; ValueError naming the first bad field (a rule across
    fields names its own)."""
    try:
        ResultFile.model_validate(d)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "value_error" and not first["loc"]:  # a rule of ``across``: its own line
            raise ValueError(str(first["ctx"]["error"])) from None
        name = str(first["loc"][0]) if first["loc"] else "result"
        if first["type"] == "value_error" and name == "config":  # Config's own refusal
            raise ValueError(str(first["ctx"]["error"])) from None
        got = None if first["type"] == "missing" else first["input"]
        raise ValueError(f"{name}: expected " + EXPECTED[name].format(got=f"{got!r:.40}")) from None
    return d
