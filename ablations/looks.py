"""Judging a claims table, look by look: ``look`` trains what the store lacks, judges and records
the verdicts in the store (``ablations.reporting.record``); ``sequential`` is the ``--seeds auto``
policy, several looks with more seeds for the claims still undecided."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from ablations.claims import Claim
from ablations.reporting.record import log_verdicts
from ablations.running.suite import Suite
from ablations.stats.significance import ALPHA, alpha_per_look, looks
from ablations.verdicts.judge import ClaimReport, undecided


@dataclass
class Looked:
    """What the looks decided: the reports (each claim as judged at the look that decided it), the
    family-wise level every look judged at, and one line per look for claims.md."""
    reports: list[ClaimReport]
    alpha: float = ALPHA
    looks: list[str] = field(default_factory=list)


def look(suite: Suite, claims: list[Claim], command: str, plans: dict | None = None, alpha: float = ALPHA,
         number: int = 1) -> list[ClaimReport]:
    """One look: train and judge (``Suite.run_claims``), then log each verdict on its claim's run
    and the summary table on the suite's run."""
    reports = suite.run_claims(claims, command, plans, alpha, number)
    log_verdicts(suite.tracker, reports, suite.run_id)
    return reports


def sequential(suite: Suite, claims: list[Claim], command: str, plans: dict, max_seeds: int) -> Looked:
    """``--seeds auto:MAX``: judge at the scale's seeds, then give the claims still undecided 2
    more seeds at a time, up to MAX, until all are decided. Every look judges at family-wise
    alpha / looks (Bonferroni alpha spending: stopping at the first decisive look keeps the
    false-positive rate at most alpha); finished seeds are reused from the store."""
    seed_counts = looks(max_seeds, first=len(suite.plan.seeds))
    done = Looked([], alpha_per_look(ALPHA, len(seed_counts)))
    decided: dict[str, ClaimReport] = {}  # each claim as judged at the look that decided it
    for i, n in enumerate(seed_counts):
        reports = look(suite, claims, command, plans, done.alpha, i + 1)
        left = undecided(reports)
        for r in reports:
            if r.claim.id not in decided and r.claim not in left and r.comparisons:
                r.look = f"decided at look {i + 1} of {len(seed_counts)} ({n} seeds, α {done.alpha:.3g})"
                decided[r.claim.id] = r
        done.reports = [decided.get(r.claim.id, r) for r in reports]
        done.looks.append(f"look {i + 1} of {len(seed_counts)}: {'up to ' if suite.plan.counts else ''}{n} seeds, "
                          f"{len(left)} claims undecided" + (f" ({', '.join(c.id for c in left)})" if left else ""))
        print(f"--seeds auto: {done.looks[-1]}", file=sys.stderr, flush=True)
        if not left or i + 1 == len(seed_counts) or suite.unfinished:
            return done
        suite.plan.add_seeds({c.id: seed_counts[i + 1] for c in left})
        suite.plan.estimate(suite.plan.rows(claims, plans))  # the next look's runs
    return done
