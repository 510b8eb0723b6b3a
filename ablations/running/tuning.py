"""lr tuning of arms: the best lr of a small Optuna study on a validation split carved from the
training set (never the test set), one study per arm config and code version, so a re-run adds
only the trials still missing and arms shared between claims are tuned once."""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass, replace

from ablations.stats.significance import binomial_se, chance_ceiling
from alexnet.config import Config
from alexnet.data import FashionMNIST
from alexnet.tracking import Tracker
from alexnet.tune import create_study, load_study, optimize, search_space


@dataclass(frozen=True)
class LrTuning:
    storage: str  # the Optuna storage of the studies
    tracker: Tracker
    data: FashionMNIST
    validation_size: int  # images of the training set the trials are scored on
    trials: int  # trials per study: --tune-lr N, else the scale's for a claim's tuned_arms
    code: str  # the code version: a study per version

    def study_name(self, config: Config) -> str:
        return f"lr-{config.key()}-{self.code}"

    def trial(self, config: Config) -> Config:
        """A study's trial config: the arm's, scored on a validation split of the training set."""
        return replace(config, validation_size=self.validation_size, test_size=None)

    def tuned_lr(self, config: Config) -> float:
        """The best lr of the arm's study, after running the trials it lacks. Its first trials are a
        grid evenly spaced over the log-scale lr range (a few random draws can all land in one
        corner), and none is pruned: a sigmoid net sits at chance for the first epochs even at an
        lr that trains it."""
        name = self.study_name(config)
        sampler_seed = int(config.key()[:8], 16)  # per arm: arms must not all draw the same lrs
        study = None
        for _ in range(2):  # a worker that finds the study missing creates it; a rival may do so first
            try:
                study = load_study(self.storage, name, seed=sampler_seed)
                break
            except ValueError:  # not created yet
                with contextlib.suppress(ValueError):  # "already exists": a rival created it in between
                    self._create(name, config)
        study = study or load_study(self.storage, name, seed=sampler_seed)
        missing = self.trials - sum(t.state.is_finished() for t in study.trials)
        if missing > 0:
            optimize(study, self.tracker, self.data, trials=missing, timeout=None, seed=0)
        if not any(t.state.name == "COMPLETE" for t in study.trials):  # every trial diverged or was pruned
            print(f"warning: no trial of study {name} completed; {config.lr} (the scale's lr) is used",
                  file=sys.stderr)
            return config.lr
        return self.chosen(study.trials)

    def chosen(self, trials: list) -> float:
        """The lr a study settles on: the smallest among those whose validation accuracy the best
        one does not beat beyond noise (1.96 x sqrt 2 binomial standard errors: a difference of two
        accuracies on the validation set). One trial per lr on one seed cannot tell 0.782 from
        0.765, and the larger lr was the fragile one: sigmoid LeNet at its study's best, 0.096,
        stayed at chance on one seed of five for 60 epochs, where 0.031 trained every seed tried."""
        done = [t for t in trials if t.state.name == "COMPLETE"]
        best = max(t.value for t in done)
        noise = 1.96 * math.sqrt(2) * binomial_se(best, self.validation_size)
        return min(t.params["lr"] for t in done if t.value >= best - noise)

    def at_chance(self, config: Config) -> str:
        """'' when some trial of the arm's study learned; else the sentence that says every lr it
        tried stayed at chance on the validation split (its "best" lr then means nothing)."""
        try:
            study = load_study(self.storage, self.study_name(config), seed=0)
        except ValueError:
            return ""
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        ceiling = chance_ceiling(self.validation_size)
        if not done or any(t.value > ceiling for t in done):
            return ""
        lrs = sorted(t.params["lr"] for t in done)
        return (f"every lr its study tried ({len(done)} trials, {lrs[0]:.3g} to {lrs[-1]:.3g}) stayed at chance on "
                f"the validation split (at most {ceiling:.3f} on {self.validation_size:,} images)")

    def _create(self, name: str, config: Config) -> None:
        space = search_space(["lr"])
        created = create_study(self.storage, name, self.tracker, base=self.trial(config), space=space,
                               pruner="none", tags={"arm_config": config.key()})
        low, high, _ = space["lr"]
        for i in range(self.trials):
            created.enqueue_trial({"lr": low * (high / low) ** (i / max(1, self.trials - 1))})

    def state(self, config: Config) -> tuple[int, float | None]:
        """(trials the arm's study still lacks, the tuned lr once the study is complete) — read only."""
        try:
            study = load_study(self.storage, self.study_name(config), seed=0)
        except ValueError:  # no study yet
            return self.trials, None
        missing = max(0, self.trials - sum(t.state.is_finished() for t in study.trials))
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        return missing, None if missing else self.chosen(complete) if complete else config.lr
