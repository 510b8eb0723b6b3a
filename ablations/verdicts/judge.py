"""Judging: a claim's registered rule (``ablations.verdicts.rules``) applied to its finished runs, with the
evidence the claim declares, every comparison in one Holm family. Reads results only."""

from __future__ import annotations

from dataclasses import dataclass, field

from ablations.claims import Claim, Scale
from ablations.stats import decision, significance
from ablations.verdicts.evidence import EVIDENCE
from ablations.verdicts.rules import RULES, Context, Values
from alexnet.config import Config
from alexnet.result import TrainResult


@dataclass
class ArmRun:
    """One arm x seed run of a claim, and where it came from."""
    arm: str
    seed: int
    config: Config
    result: TrainResult | None  # None while another worker trains it
    run_id: str
    reused: bool  # found in the store (trained by an earlier invocation or another worker)
    claim: Claim | None = None
    parent: str = ""  # the claim run it was first asked for
    skipped: bool = False  # left out (or stopped) by the suite's time budget


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
    comparisons: dict[tuple[str, str], decision.Verdict] = field(default_factory=dict)  # (arm a, arm b) -> verdict
    reason: str = ""  # inconclusive: why, in one sentence (what the scale cannot test, or what the data lack)
    caveats: list[str] = field(default_factory=list)  # any verdict: what it rests on that a reader must know
    proxy: str = ""  # the scale of runs below full it was judged on ("quick"): its verdict says so
    look: str = ""  # --seeds auto: the look that decided the claim, with its alpha
    values: Values | None = None  # metric -> arm -> seed -> value, as judged (the report reads them here)

    @property
    def shown(self) -> str:
        """The verdict with its scale (``contradicted (quick proxy)``) and, after a dash, why
        (inconclusive) and what it rests on (caveats), as every output prints it."""
        why = "; ".join(([self.reason] if self.reason else []) + self.caveats)
        return label(self.verdict, self.proxy) + (f" — {why}" if why else "")


def label(verdict: str, proxy: str) -> str:
    """The verdict as shown: ``reproduced (quick proxy)`` when judged on a proxy's runs."""
    return f"{verdict} ({proxy} proxy)" if proxy else verdict


def judge_all(items: list[tuple[Claim, list[ArmRun]]], scale: Scale, alpha: float = decision.ALPHA,
              tuned: list[tuple[Claim, list[ArmRun]]] = ()) -> list[ClaimReport]:
    """Every claim judged, the comparisons of all of them as one family: each comparison's p is
    Holm-adjusted over the family (family-wise ``alpha``) and its verdict uses the adjusted p.
    ``tuned``: the same claims' runs at tuned lrs (``--tune-lr``), judged in the same family; their
    reports become the ``tuned`` of the first ones."""
    groups = [list(items), list(tuned)]
    first = [[judge_claim(claim, runs, scale) for claim, runs in group] for group in groups]
    pvalues = {(g, r.claim.id, pair): v.stats["p"] for g, reports in enumerate(first) for r in reports
               for pair, v in r.comparisons.items() if "p" in v.stats}
    adjusted = significance.holm(pvalues)
    final = [[judge_claim(claim, runs, scale, {pair: p for (h, c, pair), p in adjusted.items()
                                               if (h, c) == (g, claim.id)}, len(pvalues), alpha)
              for claim, runs in group] for g, group in enumerate(groups)]
    at_tuned = {r.claim.id: r for r in final[1]}
    for report in final[0]:
        report.tuned = at_tuned.get(report.claim.id)
    return final[0]


def undecided(reports: list[ClaimReport]) -> list[Claim]:
    """Comparison claims that more seeds could still decide (``--seeds auto``)."""
    return [r.claim for r in reports if r.comparisons and r.verdict == "inconclusive"]


def judge_claim(claim: Claim, runs: list[ArmRun], scale: Scale, adjusted: dict | None = None, family: int = 1,
          alpha: float = decision.ALPHA) -> ClaimReport:
    """The claim's rule applied to its runs (or, for static claims, to the models).
    ``adjusted``: (arm a, arm b) -> Holm-adjusted p of each comparison in a ``family`` of them,
    decided at family-wise ``alpha``."""
    if claim.rule not in RULES:
        raise ValueError(f"claim {claim.id!r} has unknown rule {claim.rule!r}: expected one of {', '.join(RULES)}")
    evidence = []
    diverged = [f"{r.arm} seed {r.seed}" for r in runs if r.result is None or r.result.status != "finished"]
    if diverged:
        evidence.append(f"diverged (left out of the statistics): {', '.join(diverged)}")
    values = Values(runs)
    judged = RULES[claim.rule].apply(claim, runs, Context(values, adjusted or {}, family, alpha))
    parts, found_stats, comparisons = judged.parts, judged.stats, judged.comparisons
    evidence += judged.evidence
    with_result = [r for r in runs if r.result is not None]  # one still training elsewhere has none
    for name in claim.evidence:
        found = EVIDENCE[name](with_result, claim, found_stats)
        if isinstance(found, decision.Verdict):
            parts.append(found)
            found = found.evidence
        evidence += found.split("\n")
    word = decision.combine(parts)
    reason = _reason(parts, comparisons) if word == "inconclusive" else ""
    if claim.id in scale.cannot_test:
        word, reason = "inconclusive", f"not testable at the {scale.name} scale: {scale.cannot_test[claim.id]}"
        evidence.insert(0, reason)
    return ClaimReport(claim, word, [e for e in evidence if e], runs, found_stats, comparisons=comparisons,
                       reason=reason, values=values, caveats=judged.caveats + scale.at_lecture_note(claim.id, word),
                       proxy=scale.name if claim.arms and scale.name != "full" else "")  # a static claim: none


def _reason(parts: list[decision.Verdict], comparisons: dict) -> str:
    """Why a claim is inconclusive, in one sentence: a failed precondition of its evidence (nothing
    overfits) comes first, then what each undecided comparison lacks."""
    judged = list(comparisons.values())
    for v in parts:
        if v.outcome == "inconclusive" and v not in judged:
            return v.evidence.split("\n")[0]
    lacking = [f"{a} vs {b} lacks {v.stats['lacks']}" if "lacks" in v.stats else  # or too few seeds to compare
               f"{a} vs {b}: " + v.evidence.split("\n")[0] for (a, b), v in comparisons.items()
               if v.outcome == "inconclusive"]
    return "; ".join(lacking) or "its parts disagree"
