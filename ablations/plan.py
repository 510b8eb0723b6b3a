"""Planning: which claims run, each arm's checked configuration at a scale, and the rows of a
suite's plan (``PlannedRun``: what will be trained, resumed, reused or shared)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch

from alexnet.config import Config
from alexnet.env import check_runtime
from alexnet.model import build_model, flops_per_image

from .claims import BY_ID, CLAIMS, Claim, Scale


def select_claims(only: list[str] | None, scale: Scale) -> list[Claim]:
    """The claims named by ``--only``, else the scale's defaults (all but the optional ones it omits),
    each without the arms the scale leaves out."""
    if only:
        unknown = [c for c in only if c not in BY_ID]
        if unknown:
            raise ValueError(f"unknown claim {', '.join(map(repr, unknown))}: expected any of {', '.join(BY_ID)}")
        chosen = [BY_ID[c] for c in only]
    else:
        chosen = [c for c in CLAIMS if not c.optional or c.id in scale.optional]
    return [replace(c, arms={a: o for a, o in c.arms.items() if a not in scale.drop_arms.get(c.id, ())})
            for c in chosen]


def default_precision(device: str) -> str:
    """bf16 autocast on a GPU (with channels_last, the Config default), for its tensor cores; the
    optional ``precision`` claim checks it changes no verdict. fp32 on a CPU."""
    return "bf16" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "fp32"


def arm_config(claim: Claim, arm: str, scale: Scale, device: str, epochs: int | None = None,
               precision: str | None = None) -> Config:
    """The arm's overrides on top of the scale's base config (``epochs_factor`` multiplies epochs;
    ``match_flops: ARM`` gives the epochs that spend that arm's training FLOPs, from the models'
    own forward-FLOP counts); ``precision`` (None: the device's default) unless the arm sets its own."""
    over = {"precision": precision or default_precision(device), **scale.base, **scale.per_claim.get(claim.id, {}),
            **claim.arms[arm]}
    factor = over.pop("epochs_factor", 1)
    match = over.pop("match_flops", None)
    if "epochs" not in claim.arms[arm]:  # an arm that sets its own epochs keeps them (an SVM is fitted once)
        over["epochs"] = (epochs or over.get("epochs", Config().epochs)) * factor
    config = Config(**over, device=device)
    if match is None:
        return config
    other = arm_config(claim, match, scale, device, epochs, precision)
    return replace(config, epochs=max(1, round(other.epochs * model_flops(other) / model_flops(config))))


@functools.lru_cache(maxsize=16)
def model_flops(config: Config) -> int:
    """Forward FLOPs per image of the model ``config`` builds."""
    return flops_per_image(build_model(config), config.input_size)


def plan(claims: list[Claim], scale: Scale, device: torch.device, epochs: int | None = None,
         precision: str | None = None) -> dict[str, dict[str, Config]]:
    """claim id -> arm -> config, each checked (values, then what the device offers) before any work."""
    plans = {c.id: {arm: arm_config(c, arm, scale, device.type, epochs, precision) for arm in c.arms} for c in claims}
    for configs in plans.values():
        for config in configs.values():
            check_runtime(config)
    return plans


@dataclass
class PlannedRun:
    """One row of a suite's plan: an arm x seed run and what the suite will do with it."""
    claim: str
    arm: str
    seed: int
    config: Config
    state: str  # train | resume | reuse (finished in the store) | shared (an earlier claim's) | tune
    from_epoch: int = 0  # resume: the epochs its checkpoint holds
    first_claim: str = ""  # shared: the claim that trains or reuses it first
    trials: int = 0  # tune: the Optuna trials still missing (the row's config is a trial's)
    tuned: bool = False  # a run at the arm's tuned lr, which its study has not found yet
    seconds: float = 0.0  # estimated wall time on this machine (train, resume, tune)

    @property
    def key(self) -> tuple:
        """Equal keys are one run (shared between claims)."""
        if self.state == "tune":
            return ("tune", self.config.key())
        return ("tuned" if self.tuned else "run", self.config.key(), self.seed)

    @property
    def to_do(self) -> bool:
        return self.state in ("train", "resume", "tune")
