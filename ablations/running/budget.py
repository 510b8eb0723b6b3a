"""Budget and ETA: each planned run's estimated seconds (from a probe of this device), the
deadline a time budget sets, and the progress line or bar with the time left.

With a budget, the suite trains whole claims first: it does not start a claim, or a run, that
cannot finish in the time left by its estimate, and stops a run that overruns at an epoch
boundary (``BudgetSpent``: resumable from its checkpoint)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

from ablations.running.leasing import finished_run, reuse_tags
from ablations.running.plan import PlannedRun
from ablations.running.speed import PROBE_S, duration, image_counts, probe, run_seconds, speed_key
from alexnet.config import Config
from alexnet.data import FashionMNIST
from alexnet.tracking import RunStopped, Tracker

REPORT_RESERVE_S = 20.0  # of a budget, kept for judging and writing the report
REPROBE_S = 10.0  # the second probe's time, when the first one's estimate would refuse the suite or drop claims


class BudgetSpent(RunStopped):
    """The budget ran out during a run: it ends KILLED, as on an interrupt, and resumes from its
    checkpoint next time."""


class Budget:
    """The plan's rows and their estimates, and the deadline they are spent against."""

    def __init__(self, budget_s: float | None):
        self.deadline = math.inf if budget_s is None else time.monotonic() + budget_s - REPORT_RESERVE_S
        self.rows: list[PlannedRun] = []  # the plan (``plan``)
        self.speeds: dict = {}  # speed key -> the probe's measured speed
        self.store_s, self.probe_s = 0.0, 0.0  # one store round trip; the probes' own time
        self.probe_totals: tuple[float, float] | None = None  # the plan's total by each probe, once probed again
        self.done: set[tuple] = set()  # run keys of the plan's runs finished by the time they were needed

    def plan(self, rows: list[PlannedRun]) -> None:
        """The plan the budget is spent on (``Schedule.rows``)."""
        self.rows = rows

    def finish(self, keys: set[tuple]) -> float:
        """Mark these run keys finished; the estimated seconds of those not finished before."""
        new = set(keys) - self.done
        self.done |= new
        return sum(self.seconds(k) for k in new)

    def spent(self) -> bool:
        """Past the deadline: no run starts and a running one stops at its epoch's end."""
        return time.monotonic() > self.deadline

    def estimate(self, rows: list[PlannedRun], tracker: Tracker, data: FashionMNIST, device, code: str,
                 on_probe=None, again: bool = False) -> float:
        """Fills each row's ``seconds`` from a probe of the distinct configurations still to train
        on this device (none when nothing is to train); returns the plan's total. ``again``:
        probe every configuration once more and keep, for each, the faster of the two probes
        (``probe_totals``: the plan's total by the first probe, then by the second alone)."""
        work = {}
        for r in rows:
            if r.to_do:
                steps = math.ceil(image_counts(r.config)[0] / r.config.batch_size) * (r.config.epochs - r.from_epoch)
                config, planned = work.get(speed_key(r.config), (r.config, 0))
                work[speed_key(r.config)] = (config, planned + steps * max(1, r.trials))
        begin = time.perf_counter()
        if not again:
            work = {k: w for k, w in work.items() if k not in self.speeds}  # a later look of --seeds auto: known
        if work:
            t = time.perf_counter()
            finished_run(tracker, reuse_tags(Config(), -1, code))  # one store round trip
            self.store_s = time.perf_counter() - t
            fresh = probe(work, data, device, budget_s=REPROBE_S if again else PROBE_S, on_start=on_probe)
            if again:
                self.probe_totals = (self._fill(rows, self.speeds), self._fill(rows, {**self.speeds, **fresh}))
                fresh = {k: min(self.speeds[k], speed, key=lambda s: s.step_s) for k, speed in fresh.items()}
            self.speeds |= fresh
        self.probe_s += time.perf_counter() - begin
        return self._fill(rows, self.speeds)

    def _fill(self, rows: list[PlannedRun], speeds: dict) -> float:
        """Each row's ``seconds`` at these speeds; the plan's total."""
        fitted = set()  # a config that does not depend on the seed (an SVM) is fitted once per process
        for r in rows:
            if r.to_do:
                r.seconds = run_seconds(r.config, speeds[speed_key(r.config)], self.store_s,
                                        r.from_epoch) * max(1, r.trials)
                if not r.config.sgd:
                    r.seconds *= r.config.key() not in fitted
                    fitted.add(r.config.key())
        return sum(r.seconds for r in rows)

    def seconds(self, key: tuple) -> float:
        """The estimate of the plan's row with this run key (0 when it is not to be trained)."""
        return sum(r.seconds for r in self.rows if r.key == key and r.to_do)

    def run_estimate(self, key: tuple, config: Config) -> float:
        """A run's estimate: its row's, else (a run the plan did not list) from the probe's speed."""
        speed = self.speeds.get(speed_key(config))
        return self.seconds(key) or (run_seconds(config, speed, self.store_s) if speed else 0.0)

    def claim_seconds(self, claim_id: str) -> float:
        """The estimated time still needed for the claim's runs not finished yet."""
        return sum(self.seconds(k) for k in {r.key for r in self.rows if r.claim == claim_id} - self.done)

    def fits(self, seconds: float) -> bool:
        return time.monotonic() + seconds <= self.deadline

    def over(self, claim_ids: list[str]) -> list[str]:
        """The claims a start now would not begin, by the estimates: whole claims in order, each
        started only if it fits in the time left, as ``Suite.train`` does (--plan shows them)."""
        left, done, out = self.deadline - time.monotonic(), set(), []
        for claim_id in claim_ids:
            keys = {r.key for r in self.rows if r.claim == claim_id} - done
            seconds = sum(self.seconds(k) for k in keys)
            if seconds <= left:
                left, done = left - seconds, done | keys
            else:
                out.append(claim_id)
        return out

    def left_out(self, claim_id: str) -> list[str]:
        """The claim's runs not finished: ``ARM seed N``."""
        return [f"{r.arm} seed {r.seed}" for r in self.rows if r.claim == claim_id and r.key not in self.done]

    def probe_metrics(self) -> dict[str, float]:
        """The probe's measured speeds, for the suite run."""
        metrics = {"probe_s": self.probe_s, "plan_estimate_s": sum(r.seconds for r in self.rows),
                   "store_round_trip_s": self.store_s}
        for key, speed in self.speeds.items():
            metrics |= {f"probe.{key}.train_images_per_s": speed.train_images_per_s,
                        f"probe.{key}.eval_images_per_s": speed.eval_images_per_s,
                        f"probe.{key}.first_step_s": speed.first_step_s, f"probe.{key}.steps_timed": speed.steps}
        return metrics


@dataclass
class Pace:
    """The time left: the estimates of the runs still to train, scaled by how the finished runs'
    actual times compared with their estimates."""
    left_s: float = 0.0  # estimated seconds of the runs still to train
    estimated_s: float = 0.0  # the estimates of the runs trained so far
    actual_s: float = 0.0  # their wall times

    def eta(self) -> str:
        pace = self.actual_s / self.estimated_s if self.estimated_s else 1.0
        return f"~{duration(max(0.0, self.left_s) * pace)} left"

    def trained(self, estimated_s: float, actual_s: float) -> None:
        self.left_s -= estimated_s
        self.estimated_s += estimated_s
        self.actual_s += actual_s


@dataclass
class SuiteProgress:
    """The suite's bar over arm x seed runs, and one plain line per finished run when the bar is
    disabled; both show the time left (``Pace``)."""
    total: int
    pace: Pace
    bar: object = None
    task: object = None
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def status(self, text: str) -> None:
        self.bar.update(self.task, status=f"{text} · {self.pace.eta()}")

    def finished(self, run) -> None:
        self.done += 1
        self.bar.update(self.task, advance=1)
        if not self.bar.disable:
            return
        result = run.result
        acc = f"{result.eval_key} {result.final(result.eval_key):.3f}" if result.status == "finished" else result.status
        how = "reused" if run.reused else f"{sum(e['epoch_time_s'] for e in result.epochs):.0f} s"
        print(f"[{self.done}/{self.total}] {run.claim.id}: {run.arm}, seed {run.seed}: {acc} ({how}); "
              f"{self.total - self.done} runs left, {duration(time.monotonic() - self.started)} elapsed, "
              f"{self.pace.eta()}", file=sys.stderr, flush=True)
