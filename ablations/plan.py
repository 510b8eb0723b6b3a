"""Planning: which claims run, and each arm's checked configuration at a scale."""

from __future__ import annotations

import torch

from alexnet.config import Config
from alexnet.env import check_runtime

from .claims import BY_ID, CLAIMS, Claim, Scale


def select_claims(only: list[str] | None, scale: Scale) -> list[Claim]:
    """The claims named by ``--only``, else the scale's defaults (all but the optional ones it omits)."""
    if only:
        unknown = [c for c in only if c not in BY_ID]
        if unknown:
            raise ValueError(f"unknown claim {', '.join(map(repr, unknown))}: expected any of {', '.join(BY_ID)}")
        return [BY_ID[c] for c in only]
    return [c for c in CLAIMS if not c.optional or c.id in scale.optional]


def arm_config(claim: Claim, arm: str, scale: Scale, device: str, epochs: int | None = None) -> Config:
    """The arm's overrides on top of the scale's base config (``epochs_factor`` multiplies epochs)."""
    over = {**scale.base, **scale.per_claim.get(claim.id, {}), **claim.arms[arm]}
    factor = over.pop("epochs_factor", 1)
    over["epochs"] = (epochs or over.get("epochs", Config().epochs)) * factor
    return Config(**over, device=device)


def plan(claims: list[Claim], scale: Scale, device: torch.device,
         epochs: int | None = None) -> dict[str, dict[str, Config]]:
    """claim id -> arm -> config, each checked (values, then what the device offers) before any work."""
    plans = {c.id: {arm: arm_config(c, arm, scale, device.type, epochs) for arm in c.arms} for c in claims}
    for configs in plans.values():
        for config in configs.values():
            check_runtime(config)
    return plans
