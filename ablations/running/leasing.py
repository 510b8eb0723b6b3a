"""Leasing: how several workers sharing one MLflow store train each arm x seed run once.

A run is identified by its ``reuse_tags`` (config hash, seed, code version). To train it, a
worker reserves it: it creates its own RUNNING run, then looks for any other live or finished
run with the same key and gives way (deleting its own) if it finds one. Of two workers racing
for one run, the later to look sees the other, so at most one trains it; if both give way,
both retry later at jittered times. Runs left RUNNING by dead workers (see ``Tracker.dead``:
a dead process on this host, or no heartbeat for the lease time) are marked KILLED first, so
their runs are reserved and resumed by whoever comes next."""

from __future__ import annotations

from alexnet.config import Config
from alexnet.tracking import Tracker


def reuse_tags(config: Config, seed: int, code: str) -> dict:
    """The tags that identify an arm x seed run in the store."""
    return {"config_key": config.key(), "seed": seed, "code_version": code}


def finished_run(tracker: Tracker, reuse_tags: dict):
    """The newest FINISHED run with these ``reuse_tags``, or None."""
    done = tracker.find(reuse_tags)
    return done[0] if done else None


def reserve_run(tracker: Tracker, reuse_tags: dict, name: str, tags: dict, parent: str) -> tuple[str | None, str]:
    """(our new RUNNING run's id, "") when this worker may train the run with these ``reuse_tags``;
    (None, the live holder's run id or "") when another worker holds it or won the race."""
    live = tracker.reap(reuse_tags)  # a dead worker's run is marked KILLED: resumed here from its checkpoint
    if live:
        return None, live[0].info.run_id
    run_id = tracker.create(name, {**reuse_tags, **tags}, parent=parent)
    rivals = [r for r in tracker.find(reuse_tags, statuses=("RUNNING", "FINISHED"))
              if r.info.run_id != run_id and (r.info.status == "FINISHED" or not tracker.dead(r))]
    if rivals:
        tracker.abandon(run_id)
        return None, ""
    return run_id, ""
