"""Reserving and reusing runs: an arm x seed run is found finished in the store, or reserved
(``ablations.running.leasing``) and trained here, resuming from the checkpoint of an interrupted one, or
left pending while another worker trains it (``wait`` polls those, and takes over any whose
worker died)."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import torch

from ablations.claims import Claim
from ablations.running.budget import Budget, BudgetSpent, SuiteProgress
from ablations.running.leasing import finished_run, reserve_run, reuse_tags
from ablations.running.plan import plan_key
from ablations.verdicts.judge import ArmRun
from alexnet import checkpoint as ckpt
from alexnet.config import Config
from alexnet.data import FashionMNIST
from alexnet.env import environment
from alexnet.run import run
from alexnet.tracking import Tracker
from alexnet.untrusted import env_number

POLL_S = 5.0  # default seconds between looks at runs other workers hold ($ALEXNET_POLL_S)


class Runner:
    def __init__(self, tracker: Tracker, data: FashionMNIST, device: torch.device, code: str, scale: str,
                 checkpoint_dir: Path, budget: Budget, train: bool = True):
        self.tracker, self.data, self.device, self.code, self.scale = tracker, data, device, code, scale
        self.checkpoint_dir, self.budget = checkpoint_dir, budget
        self.train = train  # False (--report-only): a run the store lacks is left out, as the budget leaves one
        self.poll_s = env_number("ALEXNET_POLL_S", POLL_S, low=0.0)
        self.trained = 0  # arm x seed runs trained by this invocation (the rest came from the store)

    def checkpoint(self, config: Config, seed: int) -> Path:
        return self.checkpoint_dir / f"{config.key()}-seed{seed}-{self.code}.pt"

    def state(self, config: Config, seed: int) -> tuple[str, int]:
        """What will happen to the run: reuse, resume (from which epoch) or train. Trains nothing."""
        if finished_run(self.tracker, reuse_tags(config, seed, self.code)):
            return "reuse", 0
        path = self.checkpoint(config, seed)
        if path.exists():
            try:
                return "resume", len(ckpt.load(path)["epochs"])
            except ckpt.CheckpointError:  # moved aside when its turn comes; the run starts afresh
                pass
        return "train", 0

    def get(self, claim: Claim, arm: str, config: Config, seed: int, claim_id: str, progress: SuiteProgress) -> ArmRun:
        """The finished run for (config, seed): from the store, or trained here; ``result`` None
        while another worker trains it, or when the budget left it out (``skipped``)."""
        tags, key = reuse_tags(config, seed, self.code), plan_key("run", config, seed)
        found = dict(arm=arm, seed=seed, config=config, claim=claim, parent=claim_id)
        done = finished_run(self.tracker, tags)
        if done:
            self.budget.finish({key})
            return ArmRun(**found, result=self.tracker.load_result(done), run_id=done.info.run_id, reused=True)
        estimate = self.budget.run_estimate(key, config)
        if not self.train or not self.budget.fits(estimate):
            return ArmRun(**found, result=None, run_id="", reused=True, skipped=True)
        checkpoint = self.checkpoint(config, seed)
        run_id, holder = reserve_run(self.tracker, tags, f"{claim.id}/{arm}/seed{seed}",
                                     {"kind": "arm", "claim": claim.id, "arm": arm, "scale": self.scale,
                                      "resumed": checkpoint.exists(), "estimate_s": round(estimate, 1)}, claim_id)
        if run_id is None:
            return ArmRun(**found, result=None, run_id=holder, reused=True)
        begin = time.monotonic()
        try:
            with self.tracker.open_run("", {}, run_id=run_id):
                self.tracker.log_train_start(config.to_dict(), environment(self.device), seed)
                result = self._train(claim, arm, config, seed, checkpoint, progress)
                self.tracker.log_result(result)
        except BudgetSpent as stop:
            print(f"budget: {claim.id}/{arm}/seed{seed} stopped after epoch {stop.args[0]} of {config.epochs} "
                  f"(its checkpoint is kept: the next run of the suite resumes it)", file=sys.stderr, flush=True)
            return ArmRun(**found, result=None, run_id=run_id, reused=False, skipped=True)
        ckpt.discard(checkpoint)
        self.trained += 1
        self.budget.finish({key})
        progress.pace.trained(estimate, time.monotonic() - begin)
        return ArmRun(**found, result=result, run_id=run_id, reused=False)

    def _train(self, claim: Claim, arm: str, config: Config, seed: int, checkpoint: Path, progress: SuiteProgress):
        """``train`` with each epoch logged as it ends; a damaged or foreign checkpoint is moved
        aside (``*.corrupt``, noted on the run) and the run starts from epoch 1."""
        logged = set()

        def on_epoch(record):
            self.tracker.log_epoch(record)
            logged.add(record["epoch"])
            progress.status(f"{claim.id}: {arm}, seed {seed}, epoch {record['epoch']}/{config.epochs}, "
                            f"test acc {record['test_acc']:.3f}")
            if record["epoch"] < config.epochs and self.budget.spent():
                raise BudgetSpent(record["epoch"])  # after the epoch's checkpoint: resumable

        try:
            result = run(config, seed, data=self.data, checkpoint=checkpoint, on_epoch=on_epoch, progress=False)
        except (ckpt.DamagedCheckpoint, ckpt.ForeignCheckpoint) as exc:
            moved = ckpt.quarantine(checkpoint)
            self.tracker.set_tags({"resumed": False, "checkpoint.moved_aside": moved.name,
                                   "checkpoint.problem": str(exc)[:4000]})
            print(f"warning: {exc}\n  moved it aside to {moved}; {claim.id}/{arm}/seed{seed} restarts from epoch 1",
                  file=sys.stderr)
            result = run(config, seed, data=self.data, checkpoint=checkpoint, on_epoch=on_epoch, progress=False)
        for record in result.epochs:  # epochs restored from a checkpoint
            if record["epoch"] not in logged:
                self.tracker.log_epoch(record)
        return result

    def wait(self, runs: list[ArmRun], progress: SuiteProgress) -> None:
        """Until every run is finished: poll the ones other workers hold; take over any whose worker
        died. Runs left out by the budget are not waited for, nor is anything past the deadline."""
        while (pending := [r for r in runs if r.result is None and not r.skipped]) \
                and not self.budget.spent():
            progress.status(f"waiting for {len(pending)} runs that other workers train")
            time.sleep(self.poll_s * random.uniform(0.5, 1.5))  # jitter: two workers that both gave way retry apart
            for r in pending:
                done = self.get(r.claim, r.arm, r.config, r.seed, r.parent, progress)
                r.result, r.run_id, r.reused, r.skipped = done.result, done.run_id, done.reused, done.skipped
                if r.result is not None:
                    progress.finished(r)
