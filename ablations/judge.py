"""Judging: a claim's rule applied to its finished runs' per-seed numbers, with the evidence
the claim declares. Reads results only: no store, no leasing."""

from __future__ import annotations

from dataclasses import dataclass, field

from alexnet.config import Config
from alexnet.model import build_alexnet, build_lenet, count_params, flops_per_image, shape_trace
from alexnet.result import TrainResult

from . import ladder, stats, verdict
from .claims import LECTURE_TRACE, METRICS, STATED_RATIOS, Claim, Scale
from .evidence import EVIDENCE, per_arm


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
    comparisons: dict[tuple[str, str], verdict.Verdict] = field(default_factory=dict)  # (arm a, arm b) -> verdict
    reason: str = ""  # inconclusive: why, in one sentence (what the scale cannot test, or what the data lack)
    look: str = ""  # --seeds auto: the look that decided the claim, with its alpha


def judge_all(items: list[tuple[Claim, list[ArmRun]]], scale: Scale, alpha: float = verdict.ALPHA,
              tuned: list[tuple[Claim, list[ArmRun]]] = ()) -> list[ClaimReport]:
    """Every claim judged, the comparisons of all of them as one family: each comparison's p is
    Holm-adjusted over the family (family-wise ``alpha``) and its verdict uses the adjusted p.
    ``tuned``: the same claims' runs at tuned lrs (``--tune-lr``), judged in the same family; their
    reports become the ``tuned`` of the first ones."""
    groups = [list(items), list(tuned)]
    first = [[judge(claim, runs, scale) for claim, runs in group] for group in groups]
    pvalues = {(g, r.claim.id, pair): v.stats["p"] for g, reports in enumerate(first) for r in reports
               for pair, v in r.comparisons.items() if "p" in v.stats}
    adjusted = stats.holm(pvalues)
    final = [[judge(claim, runs, scale, {pair: p for (h, c, pair), p in adjusted.items() if (h, c) == (g, claim.id)},
                    len(pvalues), alpha) for claim, runs in group] for g, group in enumerate(groups)]
    at_tuned = {r.claim.id: r for r in final[1]}
    for report in final[0]:
        report.tuned = at_tuned.get(report.claim.id)
    return final[0]


def undecided(reports: list[ClaimReport]) -> list[Claim]:
    """Comparison claims that more seeds could still decide (``--seeds auto``)."""
    return [r.claim for r in reports if r.comparisons and r.verdict == "inconclusive"]


def judge(claim: Claim, runs: list[ArmRun], scale: Scale, adjusted: dict | None = None, family: int = 1,
          alpha: float = verdict.ALPHA) -> ClaimReport:
    """The claim's rule applied to its per-seed values (or, for static claims, to the models).
    ``adjusted``: (arm a, arm b) -> Holm-adjusted p of each comparison in a ``family`` of them,
    decided at family-wise ``alpha``."""
    arms = list(claim.arms)
    evidence, parts, found_stats, comparisons = [], [], {}, {}
    diverged = [f"{r.arm} seed {r.seed}" for r in runs if r.result is None or r.result.status != "finished"]
    if diverged:
        evidence.append(f"diverged (left out of the statistics): {', '.join(diverged)}")
    if claim.rule in verdict.RULES or claim.rule == "ladder":
        values = per_arm(runs, claim.metric)
        rule, pairs = claim.rule, claim.comparisons()
        if claim.rule == "ladder":  # judged: the top rung (the lecture's AlexNet) beats the bottom one (LeNet)
            rungs, _ = ladder.roles(arms)
            rule, pairs = "better", [(rungs[-1], rungs[0])]
        for a, b in pairs:
            accuracy = [r.result.final("test_acc") for r in runs
                        if r.arm in (a, b) and r.result is not None and r.result.status == "finished"]
            v = verdict.compare(rule, values[a], values[b], claim.min_effect,
                                higher_is_better=METRICS[claim.metric], names=(a, b), metric=claim.metric,
                                images=next((r.result.eval_examples for r in runs if r.result), None),
                                accuracy=sum(accuracy) / len(accuracy) if accuracy else None,
                                p_adjusted=(adjusted or {}).get((a, b)), family=family, alpha=alpha)
            comparisons[(a, b)] = v
            parts.append(v)
            evidence += v.evidence.split("\n")
        found_stats = dict(next(iter(comparisons.values())).stats)
        for name in claim.context_metrics:  # compared beside the claim's metric, not judged
            context = per_arm(runs, name)
            d, xa, xb, _ = verdict.estimate(context[arms[0]], context[arms[1]])
            if d is not None:
                evidence.append("context: " + verdict.describe(d, xa, xb, (arms[0], arms[1]), name, METRICS[name]))
    elif claim.rule == "matches":
        v = verdict.matches({m: list(per_arm(runs, m)[arms[0]].values()) for m in claim.printed},
                            {m: value for m, (value, _) in claim.printed.items()},
                            {m: tolerance for m, (_, tolerance) in claim.printed.items()})
        found_stats = v.stats
        parts.append(v)
        evidence.append(v.evidence)
    elif claim.rule == "size":
        parts, found_stats = _size(evidence)
    elif claim.rule == "shapes":
        parts, found_stats = _shapes(evidence)
    else:
        raise ValueError(f"claim {claim.id!r} has unknown rule {claim.rule!r}")
    for name in claim.evidence:
        found = EVIDENCE[name](runs, arms, found_stats)
        if isinstance(found, verdict.Verdict):
            parts.append(found)
            found = found.evidence
        evidence += found.split("\n")
    word = verdict.combine(parts)
    reason = _reason(parts, comparisons) if word == "inconclusive" else ""
    if claim.id in scale.cannot_test:
        word, reason = "inconclusive", f"not testable at the {scale.name} scale: {scale.cannot_test[claim.id]}"
        evidence.insert(0, reason)
    return ClaimReport(claim, word, [e for e in evidence if e], runs, found_stats, comparisons=comparisons,
                       reason=reason)


def _reason(parts: list[verdict.Verdict], comparisons: dict) -> str:
    """Why a claim is inconclusive, in one sentence: a failed precondition of its evidence (nothing
    overfits) comes first, then what each undecided comparison lacks."""
    judged = list(comparisons.values())
    for v in parts:
        if v.verdict == "inconclusive" and v not in judged:
            return v.evidence.split("\n")[0]
    lacking = [f"{a} vs {b} lacks {v.stats['lacks']}" for (a, b), v in comparisons.items()
               if v.verdict == "inconclusive" and "lacks" in v.stats]
    return "; ".join(lacking) or "its parts disagree"


def _size(evidence: list[str]) -> tuple[list[verdict.Verdict], dict]:
    """Parameter and FLOP ratios of AlexNet-224 to LeNet, against the lecture's stated ones."""
    alex, lenet = build_alexnet(Config()), build_lenet()
    p = count_params(alex) / count_params(lenet)
    f = flops_per_image(alex, 224) / flops_per_image(lenet, 28)
    parts = [verdict.ratio(p, STATED_RATIOS["params"], "parameters"),
             verdict.ratio(f, STATED_RATIOS["flops"], "FLOPs/image")]
    evidence += [v.evidence for v in parts] + [
        f"AlexNet-224 {count_params(alex):,} parameters, {flops_per_image(alex, 224):,} FLOPs/image; "
        f"LeNet {count_params(lenet):,} parameters, {flops_per_image(lenet, 28):,} FLOPs/image"]
    return parts, {"params_ratio": p, "flops_ratio": f}


def _shapes(evidence: list[str]) -> tuple[list[verdict.Verdict], dict]:
    """The model's own shape trace for a 1x1x224x224 input against the lecture's printout."""
    trace = [(r.layer, r.shape) for r in shape_trace(build_alexnet(Config()), 224)]
    wrong = [f"layer {i}: {ours} vs lecture {theirs}" for i, (ours, theirs) in
             enumerate(zip(trace, LECTURE_TRACE)) if ours != theirs]
    same = not wrong and len(trace) == len(LECTURE_TRACE)
    evidence.append(f"all {len(trace)} layers match the printout" if same else "; ".join(wrong))
    return [verdict.Verdict("reproduced" if same else "contradicted", "")], {"layers": len(trace)}
