"""Planning: which claims run, checked by name before any work (``validate``), each arm's
configuration at a scale, and the rows of a suite's plan (``PlannedRun``: what will be trained,
resumed, reused or shared)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch

from ablations.claims import BY_ID, CLAIMS, METRICS, SCALES, Claim, Scale
from ablations.verdicts.evidence import EVIDENCE
from ablations.verdicts.rules import RULES
from alexnet.config import Config
from alexnet.env import check_runtime
from alexnet.model import build_model, flops_per_image


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
    validate(chosen)  # every arm, the ones this scale drops too
    return [_without_dropped(c, scale) for c in chosen]


def _without_dropped(claim: Claim, scale: Scale) -> Claim:
    """The claim without the arms that say this scale drops them (nor their comparisons or tuning)."""
    arms = {name: a for name, a in claim.arms.items() if scale.name not in a.dropped_at}
    return replace(claim, arms=arms, tuned_arms=tuple(a for a in claim.tuned_arms if a in arms),
                   versus=tuple((a, b) for a, b in claim.versus if a in arms and b in arms))


def validate(claims: list[Claim], plots=None) -> None:
    """ValueError naming every unknown name the claims use — rules, metrics, arms (compared,
    tuned, FLOPs-matched, ladder roles), evidence, plots (when ``plots`` is given) and scales —
    and what each claim's rule finds missing (``Rule.check``), so that a typo fails before any
    training, not after it."""
    problems = []
    for c in claims:
        arms = c.arms.values()
        checks = [("rule", [c.rule], RULES), ("metric", [c.metric, *c.context_metrics, *c.printed], METRICS),
                  ("arm", [n for pair in c.versus for n in pair] + list(c.tuned_arms)
                   + [a.match_flops for a in arms if a.match_flops], list(c.arms)),
                  ("evidence", c.evidence, EVIDENCE), ("plot", c.plots if plots is not None else (), plots or ()),
                  ("scale", [s for a in arms for s in a.dropped_at], SCALES),
                  ("arm role", [a.role for a in arms if a.role], ("rung", "without")),
                  ("change (a leave-one-out arm needs its rung)", [a.change for a in arms if a.role == "without"],
                   {a.change for a in arms if a.role == "rung"})]
        for kind, names, known in checks:
            bad = [n for n in names if n not in known]
            if bad:
                problems.append(f"claim {c.id!r}: unknown {kind} {', '.join(map(repr, bad))} "
                                f"(expected any of {', '.join(map(str, known)) or 'none'})")
        lacking = RULES[c.rule].check(c) if c.rule in RULES else ""
        if lacking:
            problems.append(f"claim {c.id!r}: {lacking}")
    if problems:
        raise ValueError("; ".join(problems))


def default_precision(device: str) -> str:
    """bf16 autocast on a GPU (with channels_last, the Config default), for its tensor cores; the
    optional ``precision`` claim checks it changes no verdict. fp32 on a CPU."""
    return "bf16" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "fp32"


def arm_config(claim: Claim, arm: str, scale: Scale, device: str, epochs: int | None = None,
               precision: str | None = None) -> Config:
    """The arm's overrides on top of the scale's base config (``Arm.epochs_factor`` multiplies
    epochs; ``Arm.match_flops`` gives the epochs that spend that arm's training FLOPs, from the
    models' own forward-FLOP counts); ``precision`` (None: the device's default) unless the arm
    sets its own."""
    spec = claim.arms[arm]
    over = {"precision": precision or default_precision(device), **scale.base, **scale.per_claim.get(claim.id, {}),
            **spec.overrides}
    if "epochs" not in spec.overrides:  # an arm that sets its own epochs keeps them (an SVM is fitted once)
        over["epochs"] = (epochs or over.get("epochs", Config().epochs)) * spec.epochs_factor
    config = Config(**over, device=device)
    if spec.match_flops is None:
        return config
    other = arm_config(claim, spec.match_flops, scale, device, epochs, precision)
    return replace(config, epochs=max(1, round(other.epochs * model_flops(other) / model_flops(config))))


@functools.lru_cache(maxsize=16)
def model_flops(config: Config) -> int:
    """Forward FLOPs per image of the model ``config`` builds."""
    return flops_per_image(build_model(config), config.input_size)


def configs(claims: list[Claim], scale: Scale, device: torch.device, epochs: int | None = None,
         precision: str | None = None) -> dict[str, dict[str, Config]]:
    """claim id -> arm -> config, each checked (names, values, then what the device offers) before
    any work."""
    validate(claims)
    plans = {c.id: {arm: arm_config(c, arm, scale, device.type, epochs, precision) for arm in c.arms} for c in claims}
    for configs in plans.values():
        for config in configs.values():
            check_runtime(config)
    return plans


def plan_key(kind: str, config: Config, seed: int | None = None) -> tuple:
    """A planned run's identity (equal keys are one run, shared between claims): ``run`` (an arm
    x seed run), ``tuned`` (one at its arm's tuned lr, keyed by the arm's config) or ``tune`` (an
    arm's lr study: no seed)."""
    return (kind, config.key()) if kind == "tune" else (kind, config.key(), seed)


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
        return plan_key("tune" if self.state == "tune" else "tuned" if self.tuned else "run", self.config, self.seed)

    @property
    def to_do(self) -> bool:
        return self.state in ("train", "resume", "tune")


def workers_wall_s(rows: list[PlannedRun], workers: int, probe_s: float = 0.0) -> float:
    """The plan's wall time with ``workers`` sharing one store: each worker probes, then takes the
    next run to do, in plan order, whenever it is free (as the suite's workers reserve them); the
    time is that of the last to finish. One worker: the plan's total plus the probe."""
    free = [probe_s] * workers  # when each worker is next free
    for row in rows:
        if row.to_do:
            soonest = free.index(min(free))
            free[soonest] += row.seconds
    return max(free)
