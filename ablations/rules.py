"""The verdict rules, registered like evidence: each entry says how a claim naming it
(``Claim.rule``) is judged, what it expects, the sentence claims.md describes it with, and whether
the fair mode (``--tune-lr``) also runs its arms at tuned lrs. A new rule is one registration, here
or anywhere else (a test, a plugin); the judge has no branch on rule or claim names:

    comparison("worse", decision.Test(decide, expected, power_at), describes="...", tunable=True)
    register(Rule("mine", apply=my_judge, describes="..."))

A rule's ``apply`` gets the claim, its runs and a ``Context`` (the per-seed values, the Holm-adjusted
p of each comparison, the family's size and alpha) and returns what it found (``Judged``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from alexnet.config import Config
from alexnet.model import build_alexnet, build_lenet, count_params, flops_per_image, shape_trace

from . import decision, ladder
from .claims import LECTURE_TRACE, METRICS, STATED_RATIOS, Claim
from .evidence import per_arm


@dataclass
class Values:
    """metric -> arm -> seed -> final value of a claim's finished runs, each metric read once; the
    claim's result carries it to the report."""
    runs: list
    by_metric: dict = field(default_factory=dict)

    def __call__(self, metric: str) -> dict[str, dict[int, float]]:
        if metric not in self.by_metric:
            self.by_metric[metric] = per_arm(self.runs, metric)
        return self.by_metric[metric]


@dataclass
class Context:
    """What a rule judges with besides the claim and its runs."""
    values: Values
    adjusted: dict  # (arm a, arm b) -> Holm-adjusted p of that comparison (empty: judged alone)
    family: int = 1  # comparisons in the Holm family
    alpha: float = decision.ALPHA  # family-wise level (below 0.05 at each look of --seeds auto)


@dataclass
class Judged:
    parts: list[decision.Verdict]  # the verdicts the claim's combines
    stats: dict
    evidence: list[str]
    comparisons: dict = field(default_factory=dict)  # (arm a, arm b) -> Verdict: the rule's p-values, in the family


@dataclass(frozen=True)
class Rule:
    name: str
    apply: Callable[[Claim, list, Context], Judged]  # the judging: (claim, runs, context) -> what it found
    describes: str  # the sentence claims.md uses for it
    tunable: bool = False  # --tune-lr also runs its arms at each arm's tuned lr
    test: decision.Test | None = None  # a comparison rule's test
    check: Callable[[Claim], str] = lambda claim: ""  # what a claim naming it lacks ("": nothing), before training


RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    RULES[rule.name] = rule
    return rule


def judge_pairs(claim: Claim, runs: list, ctx: Context, test: decision.Test, pairs: list[tuple[str, str]]) -> Judged:
    """``test`` applied to each (favoured arm, other arm) pair of the claim's metric; the claim's
    context metrics compared beside it (the first two arms), not judged."""
    values, arms = ctx.values(claim.metric), list(claim.arms)
    found = Judged([], {}, [])
    images = next((r.result.eval_examples for r in runs if r.result), None)
    for a, b in pairs:
        accuracy = [r.result.final("test_acc") for r in runs
                    if r.arm in (a, b) and r.result is not None and r.result.status == "finished"]
        v = decision.compare(test, values[a], values[b], claim.min_effect, higher_is_better=METRICS[claim.metric],
                            names=(a, b), metric=claim.metric, images=images,
                            accuracy=sum(accuracy) / len(accuracy) if accuracy else None,
                            p_adjusted=ctx.adjusted.get((a, b)), family=ctx.family, alpha=ctx.alpha)
        found.comparisons[(a, b)] = v
        found.parts.append(v)
        found.evidence += v.evidence.split("\n")
    found.stats = dict(next(iter(found.comparisons.values())).stats)
    for name in claim.context_metrics:
        context = ctx.values(name)
        d, xa, xb, _ = decision.difference(context[arms[0]], context[arms[1]])
        if d is not None:
            found.evidence.append("context: " + decision.describe(d, xa, xb, (arms[0], arms[1]), name, METRICS[name]))
    return found


def _two_arms(claim: Claim) -> str:
    return "" if len(claim.arms) >= 2 else f"a comparison needs two arms (has {len(claim.arms)})"


def comparison(name: str, test: decision.Test, describes: str, tunable: bool = False) -> Rule:
    """Register a rule that judges the claim's comparisons (``Claim.comparisons``) with ``test``."""
    return register(Rule(name, lambda claim, runs, ctx: judge_pairs(claim, runs, ctx, test, claim.comparisons()),
                         describes, tunable, test, _two_arms))


comparison("better", decision.BETTER, "reproduced when the favoured arm's gain is significantly above m, contradicted "
           "when its loss is significantly above m, else inconclusive", tunable=True)
comparison("no_gain", decision.NO_GAIN, "reproduced when the gain is significantly below m, contradicted when it is "
           "significantly above m", tunable=True)
comparison("same", decision.SAME, "reproduced when the difference is significantly inside ±m (two one-sided tests), "
           "contradicted when significantly outside")


def _ladder(claim: Claim, runs: list, ctx: Context) -> Judged:
    rungs, _ = ladder.roles(claim.arms)
    return judge_pairs(claim, runs, ctx, decision.BETTER, [(rungs[-1], rungs[0])])


def _rungs(claim: Claim) -> str:
    rungs, _ = ladder.roles(claim.arms)
    return "" if len(rungs) >= 2 else "a ladder needs rung arms (claims.rung) above its first arm"


register(Rule("ladder", _ladder, "the top rung beats the bottom one by the *better* rule, with each change's gain "
              "attributed both ways and interactions Holm-corrected among themselves", tunable=True,
              test=decision.BETTER, check=_rungs))


def _matches(claim: Claim, runs: list, ctx: Context) -> Judged:
    first = list(claim.arms)[0]
    v = decision.matches({m: list(ctx.values(m)[first].values()) for m in claim.printed},
                        {m: value for m, (value, _) in claim.printed.items()},
                        {m: tolerance for m, (_, tolerance) in claim.printed.items()})
    return Judged([v], v.stats, [v.evidence])


register(Rule("matches", _matches, "reproduced when the 95% interval of every seed mean lies inside its tolerance "
              "of the printed number (a single run of the lecture's), contradicted when one lies wholly outside",
              check=lambda c: "" if c.arms and c.printed else "matches needs an arm and printed numbers"))


def _size(claim: Claim, runs: list, ctx: Context) -> Judged:
    """Parameter and FLOP ratios of AlexNet-224 to LeNet, against the lecture's stated ones."""
    alex, lenet = build_alexnet(Config()), build_lenet()
    p = count_params(alex) / count_params(lenet)
    f = flops_per_image(alex, 224) / flops_per_image(lenet, 28)
    parts = [decision.ratio(p, STATED_RATIOS["params"], "parameters"),
             decision.ratio(f, STATED_RATIOS["flops"], "FLOPs/image")]
    evidence = [v.evidence for v in parts] + [
        f"AlexNet-224 {count_params(alex):,} parameters, {flops_per_image(alex, 224):,} FLOPs/image; "
        f"LeNet {count_params(lenet):,} parameters, {flops_per_image(lenet, 28):,} FLOPs/image"]
    return Judged(parts, {"params_ratio": p, "flops_ratio": f}, evidence)


register(Rule("size", _size, "measured ratios within a factor of 2 of the stated ones"))


def _shapes(claim: Claim, runs: list, ctx: Context) -> Judged:
    """The model's own shape trace for a 1x1x224x224 input against the lecture's printout."""
    trace = [(r.layer, r.shape) for r in shape_trace(build_alexnet(Config()), 224)]
    wrong = [f"layer {i}: {ours} vs lecture {theirs}" for i, (ours, theirs) in
             enumerate(zip(trace, LECTURE_TRACE)) if ours != theirs]
    same = not wrong and len(trace) == len(LECTURE_TRACE)
    text = f"all {len(trace)} layers match the printout" if same else "; ".join(wrong)
    return Judged([decision.Verdict("reproduced" if same else "contradicted", "")], {"layers": len(trace)}, [text])


register(Rule("shapes", _shapes, "reproduced when every layer's output shape for a 1x1x224x224 input equals the "
              "lecture's printout"))


def describe_rules() -> str:
    """The rules section of claims.md, from the registry."""
    return ("Verdict rules (every comparison is tested against the minimum effect m, one-sided with its p doubled, so "
            "that Holm-adjusted p < 0.05 says the 95% interval lies beyond the bound): "
            + "; ".join(f"*{r.name}* — {r.describes}" for r in RULES.values()) + ".")
