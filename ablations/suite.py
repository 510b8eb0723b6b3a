"""The suite: trains every arm x seed run a set of claims needs (or finds it in the store),
then judges each claim and logs its verdict.

Several Suites (processes, GPUs, machines) may share one store: runs are reserved before they
are trained (``ablations.leasing``), so every one is trained exactly once; a worker with nothing
left to reserve waits for the others' runs, then every worker judges all claims from the store
(``ablations.judge``).

Before training, ``schedule`` lists every run and what will happen to it, and ``estimate``
times the distinct configurations on this device (``ablations.estimate``). With a budget, the
suite trains whole claims first: it does not start a claim, or a run, that cannot finish in
the time left by its estimate, stops a run that overruns at an epoch boundary (resumable from
its checkpoint), and judges only the claims whose runs all finished."""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from alexnet import checkpoint as ckpt
from alexnet.config import Config
from alexnet.data import FashionMNIST
from alexnet.env import code_version, environment, resolve_device
from alexnet.progress import progress_bar
from alexnet.tracking import Tracker, key_name
from alexnet.train import train
from alexnet.tune import DEFAULT_STORAGE, create_study, load_study, optimize, search_space
from alexnet.untrusted import env_number

from .claims import TUNABLE, Claim, Scale
from .estimate import duration, images, probe, run_seconds, speed_key
from .judge import ArmRun, ClaimReport, judge_all, undecided
from .leasing import finished_run, reserve_run
from .plan import PlannedRun, plan
from .report import claim_metrics, claim_section, summary_markdown
from .stats import ALPHA, alpha_per_look, looks

POLL_S = 5.0  # default seconds between looks at runs other workers hold ($ALEXNET_POLL_S)
REPORT_RESERVE_S = 20.0  # of a budget, kept for judging and writing the report


class BudgetSpent(KeyboardInterrupt):
    """The budget ran out during a run: it ends KILLED, as on an interrupt, and resumes from its
    checkpoint next time."""


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


@dataclass
class Progress:
    """The suite's bar over arm x seed runs, or one plain line per finished run when the bar is
    off; both show the time left: the estimates of the runs still to train, scaled by how the
    finished runs' actual times compared with their estimates."""
    total: int
    left_s: float = 0.0  # estimated seconds of the runs still to train
    bar: object = None
    task: object = None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    estimated_s: float = 0.0  # the estimates of the runs trained so far
    actual_s: float = 0.0  # their wall times

    def eta(self) -> str:
        pace = self.actual_s / self.estimated_s if self.estimated_s else 1.0
        return f"~{duration(max(0.0, self.left_s) * pace)} left"

    def status(self, text: str) -> None:
        if self.bar:
            self.bar.update(self.task, status=f"{text} · {self.eta()}")

    def trained(self, estimated_s: float, actual_s: float) -> None:
        self.left_s -= estimated_s
        self.estimated_s += estimated_s
        self.actual_s += actual_s

    def finished(self, run: ArmRun) -> None:
        self.done += 1
        if self.bar:
            self.bar.update(self.task, advance=1)
            return
        result = run.result
        acc = f"{result.eval_key} {result.final(result.eval_key):.3f}" if result.status == "finished" else result.status
        how = "reused" if run.reused else f"{sum(e['epoch_time_s'] for e in result.epochs):.0f} s"
        print(f"[{self.done}/{self.total}] {run.claim.id}: {run.arm}, seed {run.seed}: {acc} ({how}); "
              f"{self.total - self.done} runs left, {duration(time.monotonic() - self.started)} elapsed, "
              f"{self.eta()}", file=sys.stderr, flush=True)


class Suite:
    def __init__(self, scale: Scale, tracker: Tracker, data: FashionMNIST, options: SuiteOptions = SuiteOptions()):
        self.scale, self.tracker, self.data, self.options = scale, tracker, data, options
        self.seeds = list(range(options.seeds or scale.seeds))
        # claim id -> its seeds, where the scale or --seeds auto gives it more (--seeds N: N for every claim)
        self.counts: dict[str, int] = {} if options.seeds or options.max_seeds else dict(scale.claim_seeds)
        self.alpha = ALPHA  # family-wise level of each judgement (below 0.05 at each look of --seeds auto)
        self.looks: list[str] = []  # --seeds auto: what each look decided
        self.device = resolve_device(options.device)
        self.code = code_version()
        self.trained = 0  # arm x seed runs trained by this invocation (the rest came from the store)
        self.poll_s = env_number("ALEXNET_POLL_S", POLL_S, low=0.0)
        self.started = time.monotonic()
        self.deadline = math.inf if options.budget_s is None else self.started + options.budget_s - REPORT_RESERVE_S
        self.rows: list[PlannedRun] = []  # the plan, from ``schedule``
        self.speeds, self.store_s, self.probe_s = {}, 0.0, 0.0  # from ``estimate``
        self.done: set[tuple] = set()  # keys of the plan's runs finished by the time they were needed
        self.unfinished: dict[str, list[str]] = {}  # claim id -> its runs left unfinished by the budget
        self.timing: dict[str, float] = {}  # probe, estimated and actual seconds of the runs trained (run_claims)

    def plan(self, claims: list[Claim]) -> dict[str, dict[str, Config]]:
        return plan(claims, self.scale, self.device, self.options.epochs, self.options.precision)

    def seeds_of(self, claim: Claim) -> list[int]:
        return list(range(self.counts.get(claim.id, len(self.seeds))))

    def seeds_text(self, claims: list[Claim]) -> str:
        """``5 seeds (maxpool 8, augment 8)``: the claims' seed counts."""
        more = [f"{c.id} {len(self.seeds_of(c))}" for c in claims if len(self.seeds_of(c)) != len(self.seeds)]
        return f"{len(self.seeds)} seeds" + (f" ({', '.join(more)})" if more else "")

    def checkpoint(self, config: Config, seed: int) -> Path:
        return self.options.checkpoint_dir / f"{config.key()}-seed{seed}-{self.code}.pt"

    def run_key(self, config: Config, seed: int) -> dict:
        return {"config_key": config.key(), "seed": seed, "code_version": self.code}

    def schedule(self, claims: list[Claim], plans: dict[str, dict[str, Config]]) -> list[PlannedRun]:
        """Every arm x seed run of the claims, in training order, with what will happen to it:
        trained, resumed from its checkpoint (and from which epoch), reused from the store, or
        shared with an earlier claim. Reads the store and the checkpoints; trains nothing."""
        rows, first = [], {}
        for claim in claims:
            claim_rows = [PlannedRun(claim.id, arm, seed, config, "train") for arm, config in plans[claim.id].items()
                          if arm not in claim.tuned_arms for seed in self.seeds_of(claim)]
            claim_rows += self.tuned_rows(claim, {a: c for a, c in plans[claim.id].items() if a in claim.tuned_arms})
            if self.options.tune_lr and claim.rule in TUNABLE:  # an SVM has no lr: its runs serve both modes
                claim_rows += self.tuned_rows(claim, {a: c for a, c in plans[claim.id].items() if c.sgd})
            for row in claim_rows:
                if row.key in first:
                    row.state, row.first_claim = "shared", first[row.key]
                else:
                    first[row.key] = claim.id
                    if row.state == "train" and not row.tuned:
                        row.state, row.from_epoch = self.state(row.config, row.seed)
                rows.append(row)
        self.rows = rows
        return rows

    def state(self, config: Config, seed: int) -> tuple[str, int]:
        if finished_run(self.tracker, self.run_key(config, seed)):
            return "reuse", 0
        path = self.checkpoint(config, seed)
        if path.exists():
            try:
                return "resume", len(ckpt.load(path, torch.device("cpu"))["epochs"])
            except ckpt.CheckpointError:  # moved aside when its turn comes; the run starts afresh
                pass
        return "train", 0

    def tuned_rows(self, claim: Claim, configs: dict[str, Config]) -> list[PlannedRun]:
        """The fair mode's extra rows: each arm's missing tuning trials, then its seeds at the tuned
        lr (known only once its study is complete)."""
        seeds = self.seeds_of(claim)
        rows = []
        for arm, config in configs.items():
            missing, lr = self.study_state(config)
            if missing:
                rows.append(PlannedRun(claim.id, f"{arm} (tuning lr)", -1, self.trial(config), "tune", trials=missing))
            rows += [PlannedRun(claim.id, f"{arm} (tuned lr)", seed, config if lr is None else replace(config, lr=lr),
                                "train", tuned=lr is None) for seed in seeds]
        return rows

    def estimate(self, rows: list[PlannedRun], on_probe=None) -> float:
        """Fills each row's ``seconds`` from a probe of the distinct configurations still to train
        on this device (none when nothing is to train); returns the plan's total."""
        work = {}
        for r in rows:
            if r.to_do:
                steps = math.ceil(images(r.config)[0] / r.config.batch_size) * (r.config.epochs - r.from_epoch)
                config, planned = work.get(speed_key(r.config), (r.config, 0))
                work[speed_key(r.config)] = (config, planned + steps * max(1, r.trials))
        begin = time.perf_counter()
        work = {k: w for k, w in work.items() if k not in self.speeds}  # a later look of --seeds auto: known
        if work:
            t = time.perf_counter()
            finished_run(self.tracker, self.run_key(Config(), -1))  # one store round trip
            self.store_s = time.perf_counter() - t
            self.speeds |= probe(work, self.data, self.device, on_start=on_probe)
        self.probe_s = time.perf_counter() - begin
        fitted = set()  # a config that does not depend on the seed (an SVM) is fitted once per process
        for r in rows:
            if r.to_do:
                r.seconds = run_seconds(r.config, self.speeds[speed_key(r.config)], self.store_s,
                                        r.from_epoch) * max(1, r.trials)
                if not r.config.sgd:
                    r.seconds *= r.config.key() not in fitted
                    fitted.add(r.config.key())
        return sum(r.seconds for r in rows)

    def seconds(self, key: tuple) -> float:
        """The estimate of the plan's row with this key (0 when it is not to be trained)."""
        return sum(r.seconds for r in self.rows if r.key == key and r.to_do)

    def claim_seconds(self, claim: Claim) -> float:
        """The estimated time still needed for the claim's runs not finished yet."""
        keys = {r.key for r in self.rows if r.claim == claim.id} - self.done
        return sum(self.seconds(k) for k in keys)

    def fits(self, seconds: float) -> bool:
        return time.monotonic() + seconds <= self.deadline

    def run_claims(self, claims: list[Claim], command: str, plans: dict | None = None) -> list[ClaimReport]:
        """Train what the store lacks (within the budget) and judge every claim whose runs all
        finished; ``command`` (credentials redacted) is recorded on the suite's run."""
        plans = plans or self.plan(claims)
        if not self.rows:
            self.schedule(claims, plans)
        self.tracker.reap()  # runs left RUNNING by workers that died
        tags = {"kind": "suite", "scale": self.scale.name, "code_version": self.code}
        with self.tracker.open_run(f"suite {self.scale.name}", tags) as suite_id:
            self.tracker.log_params({"scale": self.scale.name, "versus_lecture": self.scale.versus_lecture(),
                                     "seeds": len(self.seeds), "epochs": self.options.epochs,
                                     "claims": ",".join(c.id for c in claims), "command": command,
                                     "budget_s": self.options.budget_s, "max_seeds": self.options.max_seeds,
                                     "alpha": self.alpha, "look": len(self.looks) + 1,
                                     "seeds_per_claim": ",".join(f"{c.id}:{len(self.seeds_of(c))}" for c in claims)})
            self.tracker.set_tags({f"env.{k}": v for k, v in environment(self.device).items()})
            self.log_probe()
            tuned = bool(self.options.tune_lr)  # the fair mode runs comparison claims twice
            total = sum(len(c.arms) * (1 + (tuned and c.rule in TUNABLE)) * len(self.seeds_of(c))
                        for c in claims)
            bar = progress_bar(self.options.progress, transient=False, remaining=False)
            progress = Progress(total, sum(r.seconds for r in self.rows), bar)
            claim_runs = {}
            begin = time.monotonic()
            with bar or contextlib.nullcontext():
                if bar:
                    progress.task = bar.add_task("arm x seed runs", total=progress.total, status="")
                for claim in claims:
                    if not self.fits(self.claim_seconds(claim)):  # whole claims first: not one that cannot finish
                        continue
                    claim_runs[claim.id] = self.run_claim(claim, plans[claim.id], suite_id, progress)
                self.wait([r for runs, tuned_runs, _, _ in claim_runs.values() for r in runs + tuned_runs], progress)
            finished = {}
            for claim in claims:
                runs = claim_runs[claim.id][0] + claim_runs[claim.id][1] if claim.id in claim_runs else None
                if runs is not None and all(r.result is not None for r in runs):
                    finished[claim.id] = claim_runs[claim.id]
                    continue
                left = [r for r in self.rows if r.claim == claim.id and r.key not in self.done]
                self.unfinished[claim.id] = [f"{r.arm} seed {r.seed}" for r in left]
                if claim.id in claim_runs:
                    with self.tracker.open_run("", {}, parent=suite_id, run_id=claim_runs[claim.id][3]):
                        self.tracker.set_tags({"verdict": "unfinished", "unfinished_runs": len(left)})
            reports = self.judge([c for c in claims if c.id in finished], finished, suite_id)
            self.tracker.log_metrics({"trained_runs": self.trained, "claims_reproduced":
                                      sum(r.verdict == "reproduced" for r in reports),
                                      "claims_unfinished": len(self.unfinished),
                                      "estimate_s": progress.estimated_s, "actual_s": progress.actual_s,
                                      "training_wall_s": time.monotonic() - begin})
            looked = {"probe_s": self.probe_s, "estimate_s": progress.estimated_s, "actual_s": progress.actual_s}
            self.timing = {k: self.timing.get(k, 0.0) + v for k, v in looked.items()}  # summed over looks
        return reports

    def run_sequential(self, claims: list[Claim], command: str, plans: dict) -> list[ClaimReport]:
        """``--seeds auto:MAX``: judge at the scale's seeds, then give the claims still undecided 2
        more seeds at a time, up to MAX, until all are decided. Every look judges at family-wise
        alpha / looks (Bonferroni alpha spending: stopping at the first decisive look keeps the
        false-positive rate at most alpha); finished seeds are reused from the store."""
        plan = looks(self.options.max_seeds, first=len(self.seeds))
        self.alpha = alpha_per_look(ALPHA, len(plan))
        decided: dict[str, ClaimReport] = {}  # each claim as judged at the look that decided it
        for i, n in enumerate(plan):
            reports = self.run_claims(claims, command, plans)
            left = undecided(reports)
            for r in reports:
                if r.claim.id not in decided and r.claim not in left and r.comparisons:
                    r.look = f"decided at look {i + 1} of {len(plan)} ({n} seeds, α {self.alpha:.3g})"
                    decided[r.claim.id] = r
            reports = [decided.get(r.claim.id, r) for r in reports]
            self.looks.append(f"look {i + 1} of {len(plan)}: {'up to ' if self.counts else ''}{n} seeds, "
                              f"{len(left)} claims undecided" + (f" ({', '.join(c.id for c in left)})" if left else ""))
            print(f"--seeds auto: {self.looks[-1]}", file=sys.stderr, flush=True)
            if not left or i + 1 == len(plan) or self.unfinished:
                return reports
            self.counts |= {c.id: plan[i + 1] for c in left}
            self.estimate(self.schedule(claims, plans))  # the next look's runs
        return reports

    def log_probe(self) -> None:
        """The probe's measured speeds, on the suite run."""
        metrics = {"probe_s": self.probe_s, "plan_estimate_s": sum(r.seconds for r in self.rows),
                   "store_round_trip_s": self.store_s}
        for key, speed in self.speeds.items():
            metrics |= {f"probe.{key}.train_images_per_s": speed.train_images_per_s,
                        f"probe.{key}.eval_images_per_s": speed.eval_images_per_s,
                        f"probe.{key}.first_step_s": speed.first_step_s, f"probe.{key}.steps_timed": speed.steps}
        self.tracker.log_metrics(metrics)

    def run_claim(self, claim: Claim, configs: dict[str, Config], suite_id: str, progress: Progress):
        """Reserve and train this claim's runs (the fair mode: also tune each arm's lr, then its runs
        at that lr); runs other workers hold are left pending. (runs, tuned runs, tuned lrs, run id)"""
        tags = {"kind": "claim", "claim": claim.id, "scale": self.scale.name, "code_version": self.code}
        with self.tracker.open_run(claim.id, tags, parent=suite_id) as claim_id:
            fair = self.options.tune_lr and claim.rule in TUNABLE and time.monotonic() < self.deadline
            tuned_lr = {arm: self.tuned_lr(c) for arm, c in configs.items()
                        if c.sgd and (fair or arm in claim.tuned_arms)}
            tuned_keys = {("tune", self.trial(configs[arm]).key()) for arm in tuned_lr} - self.done
            progress.left_s -= sum(self.seconds(k) for k in tuned_keys)  # the time left: the studies are done
            self.done |= tuned_keys
            at_tuned = {arm: replace(c, lr=tuned_lr[arm]) if arm in tuned_lr else c for arm, c in configs.items()
                        if arm in tuned_lr or fair}  # fair: an SVM arm as it is
            runs = self.arm_runs(claim, {arm: at_tuned[arm] if arm in claim.tuned_arms else c
                                         for arm, c in configs.items()}, claim_id, progress)
            tuned_runs = self.arm_runs(claim, at_tuned, claim_id, progress) if fair else []
            self.done |= {("tuned", configs[r.arm].key(), r.seed) for r in runs + tuned_runs
                          if r.result is not None and (fair or r.arm in claim.tuned_arms)}
            self.tracker.log_params({f"tuned_lr.{key_name(arm)}": lr for arm, lr in tuned_lr.items()})
            self.tracker.log_params({"rule": claim.rule, "metric": claim.metric, "min_effect": claim.min_effect,
                                     "arms": "; ".join(f"{a}: {o or 'lecture'}" for a, o in claim.arms.items())})
        return runs, tuned_runs, tuned_lr, claim_id

    def arm_runs(self, claim: Claim, configs: dict[str, Config], claim_id: str, progress: Progress) -> list[ArmRun]:
        runs = []
        for arm, config in configs.items():
            for seed in self.seeds_of(claim):
                progress.status(f"{claim.id}: {arm}, seed {seed}")
                runs.append(self.arm_run(claim, arm, config, seed, claim_id, progress))
                if runs[-1].result is not None:
                    progress.finished(runs[-1])
        return runs

    def wait(self, runs: list[ArmRun], progress: Progress) -> None:
        """Until every run is finished: poll the ones other workers hold; take over any whose worker
        died. Runs left out by the budget are not waited for, nor is anything past the deadline."""
        while (pending := [r for r in runs if r.result is None and not r.skipped]) and time.monotonic() < self.deadline:
            progress.status(f"waiting for {len(pending)} runs that other workers train")
            time.sleep(self.poll_s * random.uniform(0.5, 1.5))  # jitter: two workers that both gave way retry apart
            for r in pending:
                done = self.arm_run(r.claim, r.arm, r.config, r.seed, r.parent, progress)
                r.result, r.run_id, r.reused, r.skipped = done.result, done.run_id, done.reused, done.skipped
                if r.result is not None:
                    progress.finished(r)

    def judge(self, claims: list[Claim], finished: dict, suite_id: str) -> list[ClaimReport]:
        """The finished claims' verdicts — their comparisons, at the scale's lr and at tuned lrs, one
        Holm family — each logged on its claim's run (reopened: its arm runs may have finished
        elsewhere), with a one-table summary on the suite's run."""
        reports = judge_all([(c, finished[c.id][0]) for c in claims], self.scale, self.alpha,
                            tuned=[(c, finished[c.id][1]) for c in claims if finished[c.id][1]])
        for report in reports:
            runs, tuned_runs, tuned_lr, claim_id = finished[report.claim.id]
            report.tuned_lr = tuned_lr
            report.run_id = claim_id
            with self.tracker.open_run("", {}, parent=suite_id, run_id=claim_id):
                self.tracker.set_tags({"verdict": report.verdict, "statement": report.claim.statement,
                                       "mlflow.runName": f"{report.claim.id} — {report.verdict}",
                                       "mlflow.note.content": claim_section(report),
                                       **({"verdict_reason": report.reason} if report.reason else {}),
                                       **({"verdict_tuned_lr": report.tuned.verdict} if report.tuned else {})})
                self.tracker.log_metrics(claim_metrics(report))
                self.tracker.log_dict({"verdict": report.verdict, "evidence": report.evidence,
                                       "tuned_lr": report.tuned_lr,
                                       "verdict_tuned_lr": report.tuned.verdict if report.tuned else None,
                                       "runs": [{"arm": r.arm, "seed": r.seed, "lr": r.config.lr, "run_id": r.run_id,
                                                 "reused": r.reused} for r in runs + tuned_runs]}, "verdict.json")
        if reports:
            self.tracker.log_text(summary_markdown(reports), "summary.md")
        return reports

    @property
    def trials(self) -> int:
        """Trials of an arm's lr study: --tune-lr N, else the scale's for a claim's tuned_arms."""
        return self.options.tune_lr or self.scale.tune_trials

    def trial(self, config: Config) -> Config:
        """An lr study's trial config: the arm's, scored on a validation split of the training set."""
        return replace(config, validation_size=self.scale.validation_size, test_size=None)

    def tuned_lr(self, config: Config) -> float:
        """The best lr of a small Optuna study on a validation split carved from the training
        set (never the test set). One study per arm config and code version, so a re-run adds
        only the trials still missing, and arms shared between claims are tuned once. Its first
        trials are a grid evenly spaced over the log-scale lr range (a few random draws can all
        land in one corner), and none is pruned: a sigmoid net sits at chance for the first
        epochs even at an lr that trains it."""
        name = f"lr-{config.key()}-{self.code}"
        base = self.trial(config)
        sampler_seed = int(config.key()[:8], 16)  # per arm: arms must not all draw the same lrs
        study = None
        for _ in range(2):  # a worker that finds the study missing creates it; a rival may do so first
            try:
                study = load_study(self.options.storage, name, seed=sampler_seed)
                break
            except ValueError:  # not created yet
                with contextlib.suppress(ValueError):  # "already exists": a rival created it in between
                    space = search_space(["lr"])
                    created = create_study(self.options.storage, name, self.tracker, base=base, space=space,
                                           pruner="none", tags={"arm_config": config.key()})
                    low, high, _ = space["lr"]
                    for i in range(self.trials):
                        created.enqueue_trial({"lr": low * (high / low) ** (i / max(1, self.trials - 1))})
        study = study or load_study(self.options.storage, name, seed=sampler_seed)
        missing = self.trials - sum(t.state.is_finished() for t in study.trials)
        if missing > 0:
            optimize(study, self.tracker, self.data, trials=missing, timeout=None, seed=0)
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if not complete:  # every trial diverged or was pruned: keep the lecture's lr, and say so
            print(f"warning: no trial of study {name} completed; {config.lr} (the scale's lr) is used",
                  file=sys.stderr)
            return config.lr
        return study.best_params["lr"]

    def study_state(self, config: Config) -> tuple[int, float | None]:
        """(trials its lr study still lacks, the tuned lr once the study is complete) — read only."""
        try:
            study = load_study(self.options.storage, f"lr-{config.key()}-{self.code}", seed=0)
        except ValueError:  # no study yet
            return self.trials, None
        missing = max(0, self.trials - sum(t.state.is_finished() for t in study.trials))
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        return missing, None if missing else study.best_params["lr"] if complete else config.lr

    def arm_run(self, claim: Claim, arm: str, config: Config, seed: int, claim_id: str, progress: Progress) -> ArmRun:
        """The finished run for (config, seed): from the store, or trained here (resuming from the
        checkpoint of an interrupted one); ``result`` None while another worker trains it, or when
        the budget left it out (``skipped``)."""
        run_key, key = self.run_key(config, seed), ("run", config.key(), seed)
        done = finished_run(self.tracker, run_key)
        if done:
            self.done.add(key)
            return ArmRun(arm, seed, config, self.tracker.load_result(done), done.info.run_id, True, claim, claim_id)
        speed = self.speeds.get(speed_key(config))
        estimate = self.seconds(key) or (run_seconds(config, speed, self.store_s) if speed else 0.0)
        if not self.fits(estimate):
            return ArmRun(arm, seed, config, None, "", True, claim, claim_id, skipped=True)
        checkpoint = self.checkpoint(config, seed)
        tags = {"kind": "arm", "claim": claim.id, "arm": arm, "scale": self.scale.name,
                "resumed": checkpoint.exists(), "estimate_s": round(estimate, 1)}
        run_id, holder = reserve_run(self.tracker, run_key, f"{claim.id}/{arm}/seed{seed}", tags, claim_id)
        if run_id is None:
            return ArmRun(arm, seed, config, None, holder, True, claim, claim_id)
        begin = time.monotonic()
        try:
            with self.tracker.open_run("", {}, run_id=run_id):
                self.tracker.log_train_start(config.to_dict(), environment(self.device), seed)
                result = self.train_logged(claim, arm, config, seed, checkpoint, progress)
                self.tracker.log_result(result)
        except BudgetSpent as stop:
            print(f"budget: {claim.id}/{arm}/seed{seed} stopped after epoch {stop.args[0]} of {config.epochs} "
                  f"(its checkpoint is kept: the next run of the suite resumes it)", file=sys.stderr, flush=True)
            return ArmRun(arm, seed, config, None, run_id, False, claim, claim_id, skipped=True)
        ckpt.discard(checkpoint)
        self.trained += 1
        self.done.add(key)
        progress.trained(estimate, time.monotonic() - begin)
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
            if record["epoch"] < config.epochs and time.monotonic() > self.deadline:
                raise BudgetSpent(record["epoch"])  # after the epoch's checkpoint: resumable

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
