"""The suite: trains every arm x seed run a set of claims needs (or finds it in the store),
then judges each claim and logs its verdict.

Several Suites (processes, GPUs, machines) may share one store: runs are reserved before they
are trained (``ablations.leasing``), so every one is trained exactly once; a worker with nothing
left to reserve waits for the others' runs, then every worker judges all claims from the store
(``ablations.judge``)."""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from alexnet import checkpoint as ckpt
from alexnet.config import Config
from alexnet.data import FashionMNIST
from alexnet.env import code_version, environment, resolve_device
from alexnet.progress import progress_bar
from alexnet.tracking import Tracker
from alexnet.train import train
from alexnet.tune import DEFAULT_STORAGE, create_study, load_study, optimize, search_space
from alexnet.untrusted import env_number

from .claims import Claim, Scale
from .judge import ArmRun, ClaimReport, judge
from .leasing import finished_run, reserve_run
from .plan import plan

POLL_S = 5.0  # default seconds between looks at runs other workers hold ($ALEXNET_POLL_S)


@dataclass(frozen=True)
class SuiteOptions:
    seeds: int | None = None  # seeds per arm; None: the scale's
    epochs: int | None = None  # epochs per run; None: the scale's
    device: str = "auto"
    checkpoint_dir: Path = Path("checkpoints")
    progress: bool | None = None  # rich bar; None: only when stderr is a terminal (else one line per run)
    tune_lr: int = 0  # trials per arm of the fair-lr mode (0: off)
    storage: str = DEFAULT_STORAGE  # Optuna storage of the fair-lr studies


@dataclass
class Progress:
    """The suite's bar over arm x seed runs, or one plain line per finished run when the bar is off."""
    total: int
    bar: object = None
    task: object = None
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def status(self, text: str) -> None:
        if self.bar:
            self.bar.update(self.task, status=text)

    def finished(self, run: ArmRun) -> None:
        self.done += 1
        if self.bar:
            self.bar.update(self.task, advance=1)
            return
        result = run.result
        acc = f"{result.eval_key} {result.final(result.eval_key):.3f}" if result.status == "finished" else result.status
        how = "reused" if run.reused else f"{sum(e['epoch_time_s'] for e in result.epochs):.0f} s"
        print(f"[{self.done}/{self.total}] {run.claim.id}: {run.arm}, seed {run.seed}: {acc} ({how}); "
              f"{self.total - self.done} runs left, {time.monotonic() - self.started:.0f} s elapsed",
              file=sys.stderr, flush=True)


class Suite:
    def __init__(self, scale: Scale, tracker: Tracker, data: FashionMNIST, options: SuiteOptions = SuiteOptions()):
        self.scale, self.tracker, self.data, self.options = scale, tracker, data, options
        self.seeds = list(range(options.seeds or scale.seeds))
        self.device = resolve_device(options.device)
        self.code = code_version()
        self.trained = 0  # arm x seed runs trained by this invocation (the rest came from the store)
        self.poll_s = env_number("ALEXNET_POLL_S", POLL_S, low=0.0)

    def plan(self, claims: list[Claim]) -> dict[str, dict[str, Config]]:
        return plan(claims, self.scale, self.device, self.options.epochs)

    def run_claims(self, claims: list[Claim], command: str, plans: dict | None = None) -> list[ClaimReport]:
        """Train what the store lacks and judge every claim; ``command`` (credentials redacted) is
        recorded on the suite's run."""
        plans = plans or self.plan(claims)
        self.tracker.reap()  # runs left RUNNING by workers that died
        tags = {"kind": "suite", "scale": self.scale.name, "code_version": self.code}
        with self.tracker.open_run(f"suite {self.scale.name}", tags) as suite_id:
            self.tracker.log_params({"scale": self.scale.name, "seeds": len(self.seeds), "epochs": self.options.epochs,
                                     "claims": ",".join(c.id for c in claims), "command": command})
            self.tracker.set_tags({f"env.{k}": v for k, v in environment(self.device).items()})
            tuned = bool(self.options.tune_lr)  # the fair mode runs comparison claims twice
            total = sum(len(c.arms) * (1 + (tuned and c.rule in ("better", "no_gain"))) for c in claims)
            bar = progress_bar(self.options.progress, transient=False)
            progress = Progress(total * len(self.seeds), bar)
            claim_runs = {}
            with bar or contextlib.nullcontext():
                if bar:
                    progress.task = bar.add_task("arm x seed runs", total=progress.total, status="")
                for claim in claims:
                    claim_runs[claim.id] = self.run_claim(claim, plans[claim.id], suite_id, progress)
                self.wait([r for runs, tuned_runs, _, _ in claim_runs.values() for r in runs + tuned_runs], progress)
            reports = [self.report(claim, *claim_runs[claim.id], suite_id) for claim in claims]
            self.tracker.log_metrics({"trained_runs": self.trained, "claims_reproduced":
                                      sum(r.verdict == "reproduced" for r in reports)})
        return reports

    def run_claim(self, claim: Claim, configs: dict[str, Config], suite_id: str, progress: Progress):
        """Reserve and train this claim's runs (the fair mode: also tune each arm's lr, then its runs
        at that lr); runs other workers hold are left pending. (runs, tuned runs, tuned lrs, run id)"""
        tags = {"kind": "claim", "claim": claim.id, "scale": self.scale.name, "code_version": self.code}
        with self.tracker.open_run(claim.id, tags, parent=suite_id) as claim_id:
            runs, tuned_runs, tuned_lr = self.arm_runs(claim, configs, claim_id, progress), [], {}
            if self.options.tune_lr and claim.rule in ("better", "no_gain"):
                tuned_lr = {arm: self.tuned_lr(config) for arm, config in configs.items()}
                tuned = {arm: replace(config, lr=tuned_lr[arm]) for arm, config in configs.items()}
                tuned_runs = self.arm_runs(claim, tuned, claim_id, progress)
                self.tracker.log_params({f"tuned_lr.{arm}": lr for arm, lr in tuned_lr.items()})
            self.tracker.log_params({"rule": claim.rule, "metric": claim.metric, "min_effect": claim.min_effect,
                                     "arms": "; ".join(f"{a}: {o or 'lecture'}" for a, o in claim.arms.items())})
        return runs, tuned_runs, tuned_lr, claim_id

    def arm_runs(self, claim: Claim, configs: dict[str, Config], claim_id: str, progress: Progress) -> list[ArmRun]:
        runs = []
        for arm, config in configs.items():
            for seed in self.seeds:
                progress.status(f"{claim.id}: {arm}, seed {seed}")
                runs.append(self.arm_run(claim, arm, config, seed, claim_id, progress))
                if runs[-1].result is not None:
                    progress.finished(runs[-1])
        return runs

    def wait(self, runs: list[ArmRun], progress: Progress) -> None:
        """Until every run is finished: poll the ones other workers hold; take over any whose worker died."""
        while pending := [r for r in runs if r.result is None]:
            progress.status(f"waiting for {len(pending)} runs that other workers train")
            time.sleep(self.poll_s * random.uniform(0.5, 1.5))  # jitter: two workers that both gave way retry apart
            for r in pending:
                done = self.arm_run(r.claim, r.arm, r.config, r.seed, r.parent, progress)
                r.result, r.run_id, r.reused = done.result, done.run_id, done.reused
                if r.result is not None:
                    progress.finished(r)

    def report(self, claim: Claim, runs: list[ArmRun], tuned_runs: list[ArmRun], tuned_lr: dict, claim_id: str,
               suite_id: str) -> ClaimReport:
        """The claim's verdicts, logged on its run (reopened: its arm runs may have finished elsewhere)."""
        report = judge(claim, runs, self.scale)
        if tuned_runs:
            report.tuned, report.tuned_lr = judge(claim, tuned_runs, self.scale), tuned_lr
        report.run_id = claim_id
        with self.tracker.open_run("", {}, parent=suite_id, run_id=claim_id):
            self.tracker.set_tags({"verdict": report.verdict, "statement": claim.statement,
                                   **({"verdict_tuned_lr": report.tuned.verdict} if report.tuned else {})})
            self.tracker.log_metrics({k: v for k, v in report.stats.items()
                                      if isinstance(v, (int, float)) and math.isfinite(v)})
            self.tracker.log_dict({"verdict": report.verdict, "evidence": report.evidence,
                                   "tuned_lr": report.tuned_lr,
                                   "verdict_tuned_lr": report.tuned.verdict if report.tuned else None,
                                   "runs": [{"arm": r.arm, "seed": r.seed, "lr": r.config.lr, "run_id": r.run_id,
                                             "reused": r.reused} for r in runs + tuned_runs]}, "verdict.json")
        return report

    def tuned_lr(self, config: Config) -> float:
        """The best lr of a small Optuna study on a validation split carved from the training
        set (never the test set). One study per arm config and code version, so a re-run adds
        only the trials still missing, and arms shared between claims are tuned once."""
        name = f"lr-{config.key()}-{self.code}"
        base = replace(config, validation_size=self.scale.validation_size, test_size=None)
        sampler_seed = int(config.key()[:8], 16)  # per arm: arms must not all draw the same lrs
        study = None
        for _ in range(2):  # a worker that finds the study missing creates it; a rival may do so first
            try:
                study = load_study(self.options.storage, name, seed=sampler_seed)
                break
            except ValueError:  # not created yet
                with contextlib.suppress(ValueError):  # "already exists": a rival created it in between
                    create_study(self.options.storage, name, self.tracker, base=base, space=search_space(["lr"]),
                                 tags={"arm_config": config.key()})
        study = study or load_study(self.options.storage, name, seed=sampler_seed)
        missing = self.options.tune_lr - sum(t.state.is_finished() for t in study.trials)
        if missing > 0:
            optimize(study, self.tracker, self.data, trials=missing, timeout=None, seed=0)
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if not complete:  # every trial diverged or was pruned: keep the lecture's lr, and say so
            print(f"warning: no trial of study {name} completed; {config.lr} (the scale's lr) is used",
                  file=sys.stderr)
            return config.lr
        return study.best_params["lr"]

    def arm_run(self, claim: Claim, arm: str, config: Config, seed: int, claim_id: str, progress: Progress) -> ArmRun:
        """The finished run for (config, seed): from the store, or trained here (resuming from the
        checkpoint of an interrupted one); ``result`` None while another worker trains it."""
        run_key = {"config_key": config.key(), "seed": seed, "code_version": self.code}
        done = finished_run(self.tracker, run_key)
        if done:
            return ArmRun(arm, seed, config, self.tracker.load_result(done), done.info.run_id, True, claim, claim_id)
        checkpoint = self.options.checkpoint_dir / f"{config.key()}-seed{seed}-{self.code}.pt"
        tags = {"kind": "arm", "claim": claim.id, "arm": arm, "scale": self.scale.name,
                "resumed": checkpoint.exists()}
        run_id, holder = reserve_run(self.tracker, run_key, f"{claim.id}/{arm}/seed{seed}", tags, claim_id)
        if run_id is None:
            return ArmRun(arm, seed, config, None, holder, True, claim, claim_id)
        with self.tracker.open_run("", {}, run_id=run_id):
            self.tracker.log_train_start(config.to_dict(), environment(self.device), seed)
            result = self.train_logged(claim, arm, config, seed, checkpoint, progress)
            self.tracker.log_result(result)
        ckpt.discard(checkpoint)
        self.trained += 1
        return ArmRun(arm, seed, config, result, run_id, False, claim, claim_id)

    def train_logged(self, claim: Claim, arm: str, config: Config, seed: int, checkpoint: Path, progress: Progress):
        """``train`` with each epoch logged as it ends; a damaged or foreign checkpoint is moved
        aside (``*.corrupt``, noted on the run) and the run starts from epoch 1."""
        logged = set()

        def on_epoch(record):
            self.tracker.log_epoch(record)
            logged.add(record["epoch"])
            progress.status(f"{claim.id}: {arm}, seed {seed}, epoch {record['epoch']}/{config.epochs}, "
                            f"test acc {record['test_acc']:.3f}")

        try:
            result = train(config, seed, data=self.data, checkpoint=checkpoint, on_epoch=on_epoch, progress=False)
        except (ckpt.DamagedCheckpoint, ckpt.ForeignCheckpoint) as exc:
            moved = ckpt.quarantine(checkpoint)
            self.tracker.set_tags({"resumed": False, "checkpoint.moved_aside": moved.name,
                                   "checkpoint.problem": str(exc)[:4000]})
            print(f"warning: {exc}\n  moved it aside to {moved}; {claim.id}/{arm}/seed{seed} restarts from epoch 1",
                  file=sys.stderr)
            result = train(config, seed, data=self.data, checkpoint=checkpoint, on_epoch=on_epoch, progress=False)
        for record in result.epochs:  # epochs restored from a checkpoint
            if record["epoch"] not in logged:
                self.tracker.log_epoch(record)
        return result
