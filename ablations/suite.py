"""Run any claims table: every arm x seed trained once (or found in the store), then verdicts.

``run_suite`` trains what the store lacks, judges each claim from its per-seed values and
returns the claim reports; ``ablations.report`` turns them into files and plots."""

from __future__ import annotations

import contextlib
import math
import random
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

from alexnet import checkpoint as ckpt
from alexnet.config import Config
from alexnet.data import FashionMNIST
from alexnet.env import check_runtime, code_version, device_name, environment, resolve_device
from alexnet.model import build_alexnet, build_lenet, count_params, flops_per_image, shape_trace
from alexnet.tracking import Tracker
from alexnet.train import progress_bar, train
from alexnet.tune import DEFAULT_STORAGE, create_study, load_study, optimize, search_space
from alexnet.untrusted import env_number

from . import verdict as V
from .claims import BY_ID, CLAIMS, D2L_PRINTED, D2L_TOLERANCE, LECTURE_TRACE, METRICS, STATED_RATIOS, Claim, Scale


@dataclass
class ArmRun:
    arm: str
    seed: int
    config: Config
    result: dict | None  # None while another worker trains it
    run_id: str
    reused: bool  # found in the store (trained by an earlier invocation or another worker)
    claim: Claim | None = None
    parent: str = ""  # the claim run it was first asked for


@dataclass
class ClaimReport:
    claim: Claim
    verdict: str
    evidence: list[str]
    runs: list[ArmRun] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    run_id: str = ""
    tuned: ClaimReport | None = None  # the same claim with every arm at its own tuned lr
    tuned_lr: dict[str, float] = field(default_factory=dict)


def select_claims(only: list[str] | None, scale: Scale) -> list[Claim]:
    if only:
        unknown = [c for c in only if c not in BY_ID]
        if unknown:
            raise ValueError(f"unknown claim {', '.join(map(repr, unknown))}: expected any of {', '.join(BY_ID)}")
        return [BY_ID[c] for c in only]
    return [c for c in CLAIMS if not c.optional or c.id in scale.optional]


def arm_config(claim: Claim, arm: str, scale: Scale, device: str, epochs: int | None = None) -> Config:
    over = {**scale.base, **scale.per_claim.get(claim.id, {}), **claim.arms[arm]}
    factor = over.pop("epochs_factor", 1)
    over["epochs"] = (epochs or over.get("epochs", Config().epochs)) * factor
    return Config(**over, device=device)


def metric(result: dict, name: str) -> float:
    """A run's final value of ``name``; NaN for a run that diverged before finishing an epoch."""
    if not result["epochs"] or result["status"] != "finished":
        return math.nan
    last = result["epochs"][-1]
    return last["train_acc"] - last["test_acc"] if name == "gap" else last[name]


def device_slug(device) -> str:
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-") if device.type == "cuda" else "cpu"


POLL_S = 5.0  # default seconds between looks at runs other workers hold ($ALEXNET_POLL_S)


class Suite:
    """Runs claims over seeds. Several Suites (processes, GPUs, machines) may share one store:
    each arm x seed run is claimed before it is trained, so every one is trained exactly once;
    a worker with nothing left to claim waits for the others' runs (taking over any whose
    worker died), then every worker judges all claims from the store."""

    def __init__(self, scale: Scale, *, seeds: int | None = None, epochs: int | None = None, device: str = "auto",
                 tracker: Tracker, data: FashionMNIST, checkpoint_dir: Path, progress: bool | None = None,
                 tune_lr: int = 0, storage: str = DEFAULT_STORAGE):
        self.scale, self.epochs, self.tracker, self.data = scale, epochs, tracker, data
        self.seeds = list(range(seeds or scale.seeds))
        self.device = resolve_device(device)
        self.checkpoint_dir = checkpoint_dir
        self.code = code_version()
        self.progress = progress
        self.trained = 0  # arm x seed runs trained by this invocation (the rest came from the store)
        self.tune_lr, self.storage = tune_lr, storage  # trials per arm of the fair-lr mode (0: off)
        self.poll_s = env_number("ALEXNET_POLL_S", POLL_S, low=0.0)

    def plan(self, claims: list[Claim]) -> dict[str, dict[str, Config]]:
        """Every arm's config, each checked (values, then what the device offers) before any work."""
        plans = {c.id: {arm: arm_config(c, arm, self.scale, self.device.type, self.epochs) for arm in c.arms}
                 for c in claims}
        for configs in plans.values():
            for config in configs.values():
                check_runtime(config)
        return plans

    def run(self, claims: list[Claim], command: str, plans: dict | None = None) -> list[ClaimReport]:
        """Train what the store lacks and judge every claim; ``command`` (credentials redacted) is
        recorded on the suite's run."""
        plans = plans or self.plan(claims)
        self.tracker.reap()  # runs left RUNNING by workers that died
        tags = {"kind": "suite", "scale": self.scale.name, "code_version": self.code}
        with self.tracker.run(f"suite {self.scale.name}", tags) as suite_id:
            self.tracker.log_params({"scale": self.scale.name, "seeds": len(self.seeds), "epochs": self.epochs,
                                     "claims": ",".join(c.id for c in claims), "command": command})
            self.tracker.set_tags({f"env.{k}": v for k, v in environment(self.device).items()})
            tuned = bool(self.tune_lr)  # the fair mode runs comparison claims twice
            total = sum(len(c.arms) * (1 + (tuned and c.rule in ("better", "no_gain"))) for c in claims)
            bar = progress_bar(self.progress, transient=False)
            slots = {}
            with bar or contextlib.nullcontext():
                task = bar.add_task("arm x seed runs", total=total * len(self.seeds), status="") if bar else None
                for claim in claims:
                    slots[claim.id] = self.run_claim(claim, plans[claim.id], suite_id, bar, task)
                self.wait([r for runs, tuned_runs, _, _ in slots.values() for r in runs + tuned_runs], bar, task)
            reports = [self.report(claim, *slots[claim.id], suite_id) for claim in claims]
            self.tracker.log_metrics({"trained_runs": self.trained, "claims_reproduced":
                                      sum(r.verdict == "reproduced" for r in reports)})
        return reports

    def run_claim(self, claim: Claim, configs: dict[str, Config], suite_id: str, bar, task):
        """Claim and train this claim's runs (the fair mode: also tune each arm's lr, then its runs
        at that lr); runs other workers hold are left pending. (runs, tuned runs, tuned lrs, run id)"""
        tags = {"kind": "claim", "claim": claim.id, "scale": self.scale.name, "code_version": self.code}
        with self.tracker.run(claim.id, tags, parent=suite_id) as claim_id:
            runs, tuned_runs, tuned_lr = self.arm_runs(claim, configs, claim_id, bar, task), [], {}
            if self.tune_lr and claim.rule in ("better", "no_gain"):
                tuned_lr = {arm: self.tuned_lr(config) for arm, config in configs.items()}
                tuned = {arm: replace(config, lr=tuned_lr[arm]) for arm, config in configs.items()}
                tuned_runs = self.arm_runs(claim, tuned, claim_id, bar, task)
                self.tracker.log_params({f"tuned_lr.{arm}": lr for arm, lr in tuned_lr.items()})
            self.tracker.log_params({"rule": claim.rule, "metric": claim.metric, "min_effect": claim.min_effect,
                                     "arms": "; ".join(f"{a}: {o or 'lecture'}" for a, o in claim.arms.items())})
        return runs, tuned_runs, tuned_lr, claim_id

    def wait(self, runs: list[ArmRun], bar, task) -> None:
        """Until every run is finished: poll the ones other workers hold; claim any whose worker died."""
        while pending := [r for r in runs if r.result is None]:
            if bar:
                bar.update(task, status=f"waiting for {len(pending)} runs that other workers train")
            time.sleep(self.poll_s * random.uniform(0.5, 1.5))  # jitter: two workers that both gave way retry apart
            for r in pending:
                done = self.arm_run(r.claim, r.arm, r.config, r.seed, r.parent, bar)
                r.result, r.run_id, r.reused = done.result, done.run_id, done.reused
                if bar and r.result is not None:
                    bar.update(task, advance=1)

    def report(self, claim: Claim, runs: list[ArmRun], tuned_runs: list[ArmRun], tuned_lr: dict, claim_id: str,
               suite_id: str) -> ClaimReport:
        """The claim's verdicts, logged on its run (reopened: its arm runs may have finished elsewhere)."""
        report = judge(claim, runs, self.scale)
        if tuned_runs:
            report.tuned, report.tuned_lr = judge(claim, tuned_runs, self.scale), tuned_lr
        report.run_id = claim_id
        with self.tracker.run("", {}, parent=suite_id, run_id=claim_id):
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

    def arm_runs(self, claim: Claim, configs: dict[str, Config], claim_id: str, bar, task) -> list[ArmRun]:
        runs = []
        for arm, config in configs.items():
            for seed in self.seeds:
                if bar:
                    bar.update(task, status=f"{claim.id}: {arm}, seed {seed}")
                runs.append(self.arm_run(claim, arm, config, seed, claim_id, bar))
                if bar and runs[-1].result is not None:
                    bar.update(task, advance=1)
        return runs

    def tuned_lr(self, config: Config) -> float:
        """The best lr of a small Optuna study on a validation split carved from the training
        set (never the test set). One study per arm config and code version, so a re-run adds
        only the trials still missing, and arms shared between claims are tuned once."""
        name = f"lr-{config.key()}-{self.code}"
        base = replace(config, validation_size=self.scale.validation_size, test_size=None)
        sampler_seed = int(config.key()[:8], 16)  # per arm: arms must not all draw the same lrs
        try:
            study = load_study(self.storage, name, seed=sampler_seed)
        except ValueError:  # not created yet
            create_study(self.storage, name, self.tracker, base=base, space=search_space(["lr"]),
                         tags={"arm_config": config.key()})
            study = load_study(self.storage, name, seed=sampler_seed)
        missing = self.tune_lr - sum(t.state.is_finished() for t in study.trials)
        if missing > 0:
            optimize(study, self.tracker, self.data, trials=missing, timeout=None, seed=0)
        return study.best_params["lr"]

    def claim(self, ident: dict, name: str, tags: dict, claim_id: str) -> str | None:
        """A new RUNNING run for ``ident``, or None when another worker claimed it at the same moment.

        Create, then look: a worker that sees any other live or finished run for ``ident`` gives
        way. Of two racing workers the later to look sees the other, so at most one proceeds
        (both may give way; ``wait`` retries them at jittered times)."""
        run_id = self.tracker.create(name, tags, parent=claim_id)
        rivals = [r for r in self.tracker.find(ident, statuses=("RUNNING", "FINISHED"))
                  if r.info.run_id != run_id and (r.info.status == "FINISHED" or not self.tracker.dead(r))]
        if rivals:
            self.tracker.abandon(run_id)
            return None
        return run_id

    def arm_run(self, claim: Claim, arm: str, config: Config, seed: int, claim_id: str, bar) -> ArmRun:
        """The finished run for (config, seed): from the store, or trained here (resuming from the
        checkpoint of an interrupted one); ``result`` None while another worker trains it."""
        ident = {"config_key": config.key(), "seed": seed, "code_version": self.code}
        done = self.tracker.find(ident)
        if done:
            return ArmRun(arm, seed, config, self.tracker.load_result(done[0]), done[0].info.run_id, True,
                          claim, claim_id)
        checkpoint = self.checkpoint_dir / f"{config.key()}-seed{seed}-{self.code}.pt"
        tags = {**ident, "kind": "arm", "claim": claim.id, "arm": arm, "scale": self.scale.name,
                "resumed": checkpoint.exists()}
        held = self.tracker.reap(ident)  # a dead worker's run is marked KILLED: resumed here from its checkpoint
        run_id = None if held else self.claim(ident, f"{claim.id}/{arm}/seed{seed}", tags, claim_id)
        if run_id is None:
            return ArmRun(arm, seed, config, None, held[0].info.run_id if held else "", True, claim, claim_id)
        with self.tracker.run("", {}, run_id=run_id):
            self.tracker.log_train_start(config.to_dict(), environment(self.device), seed)
            logged = set()

            def on_epoch(record):
                self.tracker.log_epoch(record)
                logged.add(record["epoch"])
                if bar:
                    bar.update(bar.task_ids[0], status=f"{claim.id}: {arm}, seed {seed}, epoch {record['epoch']}"
                               f"/{config.epochs}, test acc {record['test_acc']:.3f}")

            try:
                result = train(config, seed, data=self.data, checkpoint=checkpoint, on_epoch=on_epoch,
                               progress=False)
            except (ckpt.DamagedCheckpoint, ckpt.ForeignCheckpoint) as exc:  # moved aside, the run starts afresh
                moved = ckpt.quarantine(checkpoint)
                self.tracker.set_tags({"resumed": False, "checkpoint.moved_aside": moved.name,
                                       "checkpoint.problem": str(exc)[:4000]})
                print(f"warning: {exc}\n  moved it aside to {moved}; {claim.id}/{arm}/seed{seed} restarts from "
                      "epoch 1", file=sys.stderr)
                result = train(config, seed, data=self.data, checkpoint=checkpoint, on_epoch=on_epoch,
                               progress=False)
            for record in result["epochs"]:  # epochs restored from a checkpoint
                if record["epoch"] not in logged:
                    self.tracker.log_epoch(record)
            self.tracker.log_result(result)
        ckpt.discard(checkpoint)
        self.trained += 1
        return ArmRun(arm, seed, config, result, run_id, False, claim, claim_id)


def per_arm(runs: list[ArmRun], name: str) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for r in runs:
        values.setdefault(r.arm, [])
        v = metric(r.result, name)
        if not math.isnan(v):
            values[r.arm].append(v)
    return values


def judge(claim: Claim, runs: list[ArmRun], scale: Scale) -> ClaimReport:
    """The claim's rule applied to its per-seed values (or, for static claims, to the models)."""
    arms = list(claim.arms)
    evidence, parts = [], []
    diverged = [f"{r.arm} seed {r.seed}" for r in runs if r.result["status"] != "finished"]
    if diverged:
        evidence.append(f"diverged (left out of the statistics): {', '.join(diverged)}")
    if claim.rule in ("better", "no_gain"):
        values = per_arm(runs, claim.metric)
        a, b = values[arms[0]], values[arms[1]]
        if claim.rule == "better":
            v = V.better(a, b, claim.min_effect, higher_is_better=METRICS[claim.metric], names=tuple(arms),
                         metric=claim.metric)
        else:
            v = V.no_gain(a, b, claim.min_effect, names=tuple(arms), metric=claim.metric)
        parts.append(v)
        evidence.append(v.evidence)
        stats = dict(v.stats)
        if claim.metric != "test_acc":
            acc = per_arm(runs, "test_acc")
            evidence.append("context: " + V._describe(V.welch(acc[arms[0]], acc[arms[1]]), tuple(arms), "test_acc")
                            if all(len(acc[x]) >= 2 for x in arms) else "")
        if claim.id.startswith("augment"):
            gap = per_arm(runs, "gap")
            if all(len(gap[x]) >= 2 for x in arms):
                evidence.append("context: " + V._describe(V.welch(gap[arms[0]], gap[arms[1]]), tuple(arms), "gap"))
        if claim.id == "relu":
            evidence.append(_grad_norm_evidence(runs))
        if claim.id == "input224":
            v2 = _compute_evidence(runs, arms, stats)
            parts.append(v2)
            evidence.append(v2.evidence)
    elif claim.rule == "matches":
        values = {m: per_arm(runs, m)[arms[0]] for m in D2L_PRINTED}
        v = V.matches(values, D2L_PRINTED, D2L_TOLERANCE)
        stats = v.stats
        parts.append(v)
        evidence.append(v.evidence)
    elif claim.rule == "size":
        alex, lenet = build_alexnet(Config()), build_lenet()
        p = count_params(alex) / count_params(lenet)
        f = flops_per_image(alex, 224) / flops_per_image(lenet, 28)
        parts = [V.ratio(p, STATED_RATIOS["params"], "parameters"), V.ratio(f, STATED_RATIOS["flops"], "FLOPs/image")]
        evidence += [v.evidence for v in parts] + [
            f"AlexNet-224 {count_params(alex):,} parameters, {flops_per_image(alex, 224):,} FLOPs/image; "
            f"LeNet {count_params(lenet):,} parameters, {flops_per_image(lenet, 28):,} FLOPs/image"]
        stats = {"params_ratio": p, "flops_ratio": f}
    elif claim.rule == "shapes":
        trace = [(r.layer, r.shape) for r in shape_trace(build_alexnet(Config()), 224)]
        wrong = [f"layer {i}: {ours} vs lecture {theirs}" for i, (ours, theirs) in
                 enumerate(zip(trace, LECTURE_TRACE)) if ours != theirs]
        same = not wrong and len(trace) == len(LECTURE_TRACE)
        parts = [V.Verdict("reproduced" if same else "contradicted", "")]
        evidence.append(f"all {len(trace)} layers match the printout" if same else "; ".join(wrong))
        stats = {"layers": len(trace)}
    else:
        raise ValueError(f"claim {claim.id!r} has unknown rule {claim.rule!r}")
    word = V.combine(parts)
    if claim.id in scale.cannot_test:
        word = "inconclusive"
        evidence.insert(0, f"not testable at the {scale.name} scale: {scale.cannot_test[claim.id]}")
    return ClaimReport(claim, word, [e for e in evidence if e], runs, stats)


def _grad_norm_evidence(runs: list[ArmRun]) -> str:
    """Mean first-epoch gradient norm of the first conv layer over that of the last dense layer."""
    by_arm: dict[str, list[float]] = {}
    for r in runs:
        g = r.result.get("grad_norms") or {}
        if g:
            names = list(g)
            by_arm.setdefault(r.arm, []).append(g[names[0]] / g[names[-1]] if g[names[-1]] else math.nan)
    return "first-epoch gradient norm, first conv / last dense layer: " + ", ".join(
        f"{arm} {sum(v) / len(v):.3g}" for arm, v in by_arm.items())


def _compute_evidence(runs: list[ArmRun], arms: list[str], stats: dict) -> V.Verdict:
    flops = {r.arm: r.result["flops_per_image"] for r in runs}
    speed = {arm: median(e["examples_per_s"] for r in runs if r.arm == arm for e in r.result["epochs"])
             for arm in arms if any(r.arm == arm and r.result["epochs"] for r in runs)}
    f_ratio = flops[arms[0]] / flops[arms[1]]
    stats.update(flops_ratio=f_ratio)
    text = (f"compute: {arms[0]} {flops[arms[0]]:,} FLOPs/image vs {arms[1]} {flops[arms[1]]:,} "
            f"({f_ratio:.2f}x)")
    if len(speed) == 2:
        s_ratio = speed[arms[1]] / speed[arms[0]]
        stats.update(speed_ratio=s_ratio)
        text += (f"; training {speed[arms[0]]:.1f} vs {speed[arms[1]]:.1f} images/s "
                 f"({arms[1]} {s_ratio:.2f}x faster, median over epochs and seeds)")
    return V.Verdict("reproduced" if f_ratio > 1 else "contradicted", text)
