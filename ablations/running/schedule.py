"""Planning a suite: each claim's configurations and seeds, and the schedule of every arm x seed
run with what will happen to it (trained, resumed, reused from the store, shared with an earlier
claim, or tuned first), costed by a probe of this device. Reads the store and the checkpoints;
trains nothing."""

from __future__ import annotations

from dataclasses import replace

import torch

from ablations.claims import Claim, Scale
from ablations.running.budget import Budget
from ablations.running.plan import PlannedRun, configs
from ablations.running.runs import Runner
from ablations.running.tuning import LrTuning
from ablations.verdicts.rules import RULES
from alexnet.config import Config
from alexnet.data import FashionMNIST
from alexnet.tracking import Tracker


class Schedule:
    """The runs a set of claims needs at a scale: seeds per claim (the scale's, ``--seeds N`` for
    every claim, or what the ``--seeds auto`` policy gives with ``add_seeds``), the fair-lr mode's
    tuning, and the rows of the plan with their estimates (kept in ``budget``)."""

    def __init__(self, scale: Scale, options, device: torch.device, runner: Runner, tuning: LrTuning,
                 budget: Budget, tracker: Tracker, data: FashionMNIST):
        self.scale, self.options, self.device = scale, options, device
        self.runner, self.tuning, self.budget, self.tracker, self.data = runner, tuning, budget, tracker, data
        self.seeds = list(range(options.seeds or scale.seeds))
        # claim id -> its seeds, where the scale or --seeds auto gives it more (--seeds N: N for every claim)
        self.counts: dict[str, int] = {} if options.seeds or options.max_seeds else dict(scale.claim_seeds)

    def configs(self, claims: list[Claim]) -> dict[str, dict[str, Config]]:
        return configs(claims, self.scale, self.device, self.options.epochs, self.options.precision)

    def seeds_of(self, claim: Claim) -> list[int]:
        return list(range(self.counts.get(claim.id, len(self.seeds))))

    def add_seeds(self, counts: dict[str, int]) -> None:
        """Give these claims (id -> seeds) more seeds: the ``--seeds auto`` policy's next look."""
        self.counts |= counts

    def seeds_text(self, claims: list[Claim]) -> str:
        """``5 seeds (maxpool 8, augment 8)``: the claims' seed counts."""
        more = [f"{c.id} {len(self.seeds_of(c))}" for c in claims if len(self.seeds_of(c)) != len(self.seeds)]
        return f"{len(self.seeds)} seeds" + (f" ({', '.join(more)})" if more else "")

    def fair(self, claim: Claim) -> bool:
        """Whether --tune-lr also runs the claim's arms at tuned lrs (its rule says if it can)."""
        return bool(self.options.tune_lr) and RULES[claim.rule].tunable

    def rows(self, claims: list[Claim], plans: dict[str, dict[str, Config]]) -> list[PlannedRun]:
        """Every arm x seed run of the claims, in training order, with what will happen to it:
        trained, resumed from its checkpoint (and from which epoch), reused from the store, or
        shared with an earlier claim. The budget spends its time on these."""
        rows, first = [], {}
        for claim in claims:
            claim_rows = [PlannedRun(claim.id, arm, seed, config, "train") for arm, config in plans[claim.id].items()
                          if arm not in claim.tuned_arms for seed in self.seeds_of(claim)]
            claim_rows += self.tuned_rows(claim, {a: c for a, c in plans[claim.id].items() if a in claim.tuned_arms})
            if self.fair(claim):  # a fitted kind (an SVM) has no lr: its runs serve both modes
                claim_rows += self.tuned_rows(claim, {a: c for a, c in plans[claim.id].items() if c.sgd})
            for row in claim_rows:
                if row.key in first:
                    row.state, row.first_claim = "shared", first[row.key]
                else:
                    first[row.key] = claim.id
                    if row.state == "train" and not row.tuned:
                        row.state, row.from_epoch = self.runner.state(row.config, row.seed)
                rows.append(row)
        self.budget.plan(rows)
        return rows

    def tuned_rows(self, claim: Claim, configs: dict[str, Config]) -> list[PlannedRun]:
        """The fair mode's extra rows: each arm's missing tuning trials, then its seeds at the tuned
        lr (known only once its study is complete)."""
        rows = []
        for arm, config in configs.items():
            missing, lr = self.tuning.state(config)
            if missing:
                rows.append(PlannedRun(claim.id, f"{arm} (tuning lr)", -1, self.tuning.trial(config), "tune",
                                       trials=missing))
            rows += [PlannedRun(claim.id, f"{arm} (tuned lr)", seed, config if lr is None else replace(config, lr=lr),
                                "train", tuned=lr is None) for seed in self.seeds_of(claim)]
        return rows

    def estimate(self, rows: list[PlannedRun], on_probe=None, again: bool = False) -> float:
        """Fills each row's ``seconds`` from a probe of this device (``again``: a second probe, the
        faster of the two kept); returns the plan's total."""
        return self.budget.estimate(rows, self.tracker, self.data, self.device, self.runner.code, on_probe, again)
