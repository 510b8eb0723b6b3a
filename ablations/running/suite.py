"""The suite's claim loop: trains every arm x seed run a set of claims needs (or finds it in the
store), then judges each claim. Its pieces: ``ablations.running.schedule`` (the plan),
``ablations.running.runs`` (reserving and reusing runs), ``ablations.running.tuning`` (lr
studies), ``ablations.running.budget`` (estimates, budget, ETA); ``ablations.looks`` records
the verdicts and runs the ``--seeds auto`` policy.

Several Suites (processes, GPUs, machines) may share one store: runs are reserved before they
are trained (``ablations.running.leasing``), so every one is trained exactly once; a worker with nothing
left to reserve waits for the others' runs, then every worker judges all claims from the store
(``ablations.verdicts.judge``).

Before training, ``plan.rows`` lists every run and what will happen to it, and ``plan.estimate``
times the distinct configurations on this device (``ablations.running.speed``). With a budget, the
suite trains whole claims first: it does not start a claim, or a run, that cannot finish in
the time left by its estimate, stops a run that overruns at an epoch boundary (resumable from
its checkpoint), and judges only the claims whose runs all finished."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from ablations.claims import Claim, Scale
from ablations.running.budget import Budget, Pace, SuiteProgress
from ablations.running.plan import plan_key
from ablations.running.runs import Runner
from ablations.running.schedule import Schedule
from ablations.running.tuning import LrTuning
from ablations.stats.significance import ALPHA
from ablations.verdicts.judge import ArmRun, ClaimReport, judge_all
from alexnet.config import Config
from alexnet.data import FashionMNIST
from alexnet.env import code_version, device_slug, environment, resolve_device
from alexnet.progress import progress_bar
from alexnet.tracking import Tracker, key_name
from alexnet.tune import DEFAULT_STORAGE


@dataclass(frozen=True)
class SuiteOptions:
    seeds: int | None = None  # seeds per arm; None: the scale's (with max_seeds: the first look's)
    max_seeds: int | None = None  # --seeds auto:MAX: add seeds to undecided claims, look by look, up to MAX
    epochs: int | None = None  # epochs per run; None: the scale's
    device: str = "auto"
    checkpoint_dir: Path = Path("checkpoints")
    progress: bool | None = None  # rich bar; None: only when stderr is a terminal (else one line per run)
    tune_lr: int = 0  # trials per arm of the fair-lr mode (0: off)
    storage: str = DEFAULT_STORAGE  # Optuna storage of the fair-lr studies
    budget_s: float | None = None  # wall time from the Suite's creation; None: no limit
    precision: str | None = None  # fp32 | tf32 | bf16; None: bf16 on CUDA, fp32 on a CPU
    train: bool = True  # False (--report-only): judge what the store holds; a claim missing runs is unfinished


@dataclass
class ClaimRuns:
    """A claim's runs as the suite asked for them, and its MLflow run."""
    runs: list[ArmRun]  # at the scale's lr (a claim's tuned_arms: at their tuned lr)
    tuned_runs: list[ArmRun]  # --tune-lr: every arm at its tuned lr
    tuned_lr: dict[str, float]  # arm -> its tuned lr
    run_id: str

    @property
    def all(self) -> list[ArmRun]:
        return self.runs + self.tuned_runs


class Suite:
    """Runs a claims table at a scale: ``plan`` (a ``Schedule``) lists and costs the runs,
    ``run_claims`` trains what the store lacks and judges each claim whose runs all finished.
    Recording the verdicts in the store is the caller's (``ablations.looks``)."""

    def __init__(self, scale: Scale, tracker: Tracker, data: FashionMNIST, options: SuiteOptions = SuiteOptions()):
        self.scale, self.tracker, self.data, self.options = scale, tracker, data, options
        self.device = resolve_device(options.device)
        self.code = code_version()
        self.budget = Budget(options.budget_s)
        self.runner = Runner(tracker, data, self.device, self.code, scale.name, options.checkpoint_dir, self.budget,
                             options.train)
        self.tuning = LrTuning(options.storage, tracker, data, scale.validation_size,
                               options.tune_lr or scale.tune_trials, self.code)
        self.plan = Schedule(scale, options, self.device, self.runner, self.tuning, self.budget, tracker, data)
        self.run_id = ""  # the suite's MLflow run of the latest run_claims
        self.unfinished: dict[str, list[str]] = {}  # claim id -> its runs left unfinished by the budget
        self.timing: dict[str, float] = {}  # probe, estimated and actual seconds of the runs trained (run_claims)

    @property
    def trained(self) -> int:
        """Arm x seed runs trained by this invocation (the rest came from the store)."""
        return self.runner.trained

    def run_claims(self, claims: list[Claim], command: str, plans: dict | None = None,
                   alpha: float = ALPHA, look: int = 1) -> list[ClaimReport]:
        """Train what the store lacks (within the budget) and judge every claim whose runs all
        finished, at family-wise level ``alpha``; ``command`` (credentials redacted) and the
        ``--seeds auto`` look are recorded on the suite's run."""
        plans = plans or self.plan.configs(claims)
        if not self.budget.rows:
            self.plan.rows(claims, plans)
        self.tracker.reap()  # runs left RUNNING by workers that died
        tags = {"kind": "suite", "scale": self.scale.name, "code_version": self.code,
                "device": device_slug(self.device)}
        with self.tracker.open_run(f"suite {self.scale.name}", tags) as suite_id:
            self.run_id = suite_id
            self.tracker.log_params(self.suite_params(claims, command, alpha, look))
            self.tracker.set_tags({f"env.{k}": v for k, v in environment(self.device).items()})
            self.tracker.log_metrics(self.budget.probe_metrics())
            begin = time.monotonic()
            claim_runs, pace = self.train(claims, plans, suite_id)
            finished = self.finished(claims, claim_runs, suite_id)
            reports = self.verdicts([c for c in claims if c.id in finished], finished, alpha)
            self.tracker.log_metrics({"trained_runs": self.trained, "claims_reproduced":
                                      sum(r.verdict == "reproduced" for r in reports),
                                      "claims_unfinished": len(self.unfinished),
                                      "estimate_s": pace.estimated_s, "actual_s": pace.actual_s,
                                      "training_wall_s": time.monotonic() - begin})
            looked = {"probe_s": self.budget.probe_s, "estimate_s": pace.estimated_s, "actual_s": pace.actual_s}
            self.timing = {k: self.timing.get(k, 0.0) + v for k, v in looked.items()}  # summed over looks
        return reports

    def suite_params(self, claims: list[Claim], command: str, alpha: float, look: int) -> dict:
        """What the suite's MLflow run records of how it was asked to run."""
        return {"scale": self.scale.name, "versus_lecture": self.scale.versus_lecture(),
                "seeds": len(self.plan.seeds), "epochs": self.options.epochs,
                "claims": ",".join(c.id for c in claims), "command": command,
                "budget_s": self.options.budget_s, "max_seeds": self.options.max_seeds, "alpha": alpha, "look": look,
                "seeds_per_claim": ",".join(f"{c.id}:{len(self.plan.seeds_of(c))}" for c in claims)}

    def train(self, claims: list[Claim], plans: dict, suite_id: str) -> tuple[dict[str, ClaimRuns], Pace]:
        """Each claim's runs, whole claims first (not one that cannot finish in the budget), then
        the wait for the runs other workers train."""
        total = sum(len(c.arms) * (1 + self.plan.fair(c)) * len(self.plan.seeds_of(c)) for c in claims)
        bar = progress_bar(self.options.progress, transient=False, remaining=False)
        progress = SuiteProgress(total, Pace(sum(r.seconds for r in self.budget.rows)), bar)
        claim_runs = {}
        with bar:
            progress.task = bar.add_task("arm x seed runs", total=progress.total, status="")
            for claim in claims:
                if self.budget.fits(self.budget.claim_seconds(claim.id)):
                    claim_runs[claim.id] = self.run_claim(claim, plans[claim.id], suite_id, progress)
            self.runner.wait([r for c in claim_runs.values() for r in c.all], progress)
        return claim_runs, progress.pace

    def finished(self, claims: list[Claim], claim_runs: dict[str, ClaimRuns], suite_id: str) -> dict[str, ClaimRuns]:
        """The claims whose runs all finished; the others are noted as unfinished (``self.unfinished``
        and their claim run's tags)."""
        finished = {}
        for claim in claims:
            done = claim_runs.get(claim.id)
            if done is not None and all(r.result is not None for r in done.all):
                finished[claim.id] = done
                continue
            self.unfinished[claim.id] = self.budget.left_out(claim.id)
            if done is not None:
                with self.tracker.open_run("", {}, parent=suite_id, run_id=done.run_id):
                    self.tracker.set_tags({"verdict": "unfinished", "unfinished_runs": len(self.unfinished[claim.id])})
        return finished

    def run_claim(self, claim: Claim, configs: dict[str, Config], suite_id: str, progress: SuiteProgress) -> ClaimRuns:
        """Reserve and train this claim's runs (the fair mode: also tune each arm's lr, then its runs
        at that lr); runs other workers hold are left pending."""
        tags = {"kind": "claim", "claim": claim.id, "scale": self.scale.name, "code_version": self.code}
        with self.tracker.open_run(claim.id, tags, parent=suite_id) as claim_id:
            fair = self.plan.fair(claim) and not self.budget.spent()
            tuned_lr = {arm: self.tuning.tuned_lr(c) for arm, c in configs.items()
                        if c.sgd and (fair or arm in claim.tuned_arms)}
            studied = self.budget.finish({plan_key("tune", self.tuning.trial(configs[arm])) for arm in tuned_lr})
            progress.pace.left_s -= studied  # the studies are done
            at_tuned = {arm: replace(c, lr=tuned_lr[arm]) if arm in tuned_lr else c for arm, c in configs.items()
                        if arm in tuned_lr or fair}  # fair: an SVM arm as it is
            runs = self.arm_runs(claim, {arm: at_tuned[arm] if arm in claim.tuned_arms else c
                                         for arm, c in configs.items()}, claim_id, progress)
            tuned_runs = self.arm_runs(claim, at_tuned, claim_id, progress) if fair else []
            self.budget.finish({plan_key("tuned", configs[r.arm], r.seed) for r in runs + tuned_runs
                                if r.result is not None and (fair or r.arm in claim.tuned_arms)})
            self.tracker.log_params({f"tuned_lr.{key_name(arm)}": lr for arm, lr in tuned_lr.items()})
            self.tracker.log_params({"rule": claim.rule, "metric": claim.metric, "min_effect": claim.min_effect,
                                     "arms": "; ".join(f"{a}: {str(o) or 'lecture'}" for a, o in claim.arms.items())})
        return ClaimRuns(runs, tuned_runs, tuned_lr, claim_id)

    def arm_runs(self, claim: Claim, configs: dict[str, Config], claim_id: str,
                 progress: SuiteProgress) -> list[ArmRun]:
        runs = []
        for arm, config in configs.items():
            for seed in self.plan.seeds_of(claim):
                progress.status(f"{claim.id}: {arm}, seed {seed}")
                runs.append(self.runner.get(claim, arm, config, seed, claim_id, progress))
                if runs[-1].result is not None:
                    progress.finished(runs[-1])
        return runs

    def verdicts(self, claims: list[Claim], finished: dict[str, ClaimRuns], alpha: float) -> list[ClaimReport]:
        """The finished claims' verdicts: their comparisons, at the scale's lr and at tuned lrs, one
        Holm family at level ``alpha``."""
        reports = judge_all([(c, finished[c.id].runs) for c in claims], self.scale, alpha,
                            tuned=[(c, finished[c.id].tuned_runs) for c in claims if finished[c.id].tuned_runs])
        for report in reports:
            report.tuned_lr = finished[report.claim.id].tuned_lr
            report.run_id = finished[report.claim.id].run_id
            for arm in report.tuned_lr:  # a study that found nothing says so beside the runs at its lr
                note = self.tuning.at_chance(self.plan.configs([report.claim])[report.claim.id][arm])
                if note:
                    report.evidence.append(f"lr of {arm}: {note}")
                    report.caveats.append(f"{arm}'s lr study found no lr that trains it")
        return reports
