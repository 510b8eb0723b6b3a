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

from ablations.claims import LECTURE_TRACE, METRICS, NOTES_TABLE, STATED_RATIOS, Claim
from ablations.stats import decision, ladder, significance
from ablations.verdicts.evidence import per_arm
from alexnet.config import Config
from alexnet.model import build_alexnet, build_lenet, count_params, flops_per_image, shape_trace


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
    caveats: list[str] = field(default_factory=list)  # what the verdict rests on that a reader must know


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
        accuracy = [[r.result.final("test_acc") for r in runs if r.arm == arm and r.result is not None
                     and r.result.status == "finished"] for arm in (a, b)]
        v = decision.compare(test, values[a], values[b], claim.min_effect, higher_is_better=METRICS[claim.metric],
                            names=(a, b), metric=claim.metric, images=images,
                            accuracy=tuple(sum(x) / len(x) for x in accuracy) if all(accuracy) else None,
                            p_adjusted=ctx.adjusted.get((a, b)), family=ctx.family, alpha=ctx.alpha,
                            by_image=by_image(runs, a, b) if claim.metric == "test_acc" else None)
        found.comparisons[(a, b)] = v
        found.parts.append(v)
        found.evidence += v.evidence.split("\n")
    found.stats = dict(next(iter(found.comparisons.values())).stats)
    compared = list(dict.fromkeys(arm for pair in pairs for arm in pair))
    for arm, (note, short) in untrained(runs, compared).items():
        others = ", ".join(b if a == arm else a for a, b in pairs if arm in (a, b))
        where = "" if "every" in short else " on those seeds"
        found.evidence.append(f"{note}: the comparison measures {others} against chance{where}, not against a trained "
                              f"{arm}")
        found.caveats.append(f"{short}: {others} measured against chance{where}")
    for name in claim.context_metrics:
        context = ctx.values(name)
        d, xa, xb, _ = decision.difference(context[arms[0]], context[arms[1]])
        if d is not None:
            found.evidence.append("context: " + decision.describe(d, xa, xb, (arms[0], arms[1]), name, METRICS[name]))
            low, high = d.interval()
            worse = high < 0 if METRICS[name] else low > 0  # the favoured arm surely worse on it
            if worse and found.parts[0].outcome == "reproduced":
                bounds = sorted((abs(low), abs(high)))
                found.caveats.append(f"at a cost: {arms[0]}'s {name} is {'lower' if METRICS[name] else 'higher'} by "
                                     f"{abs(d.diff):.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]")
    return found


def by_image(runs: list, a: str, b: str) -> tuple | None:
    """(seed -> a's per-image test outcomes, b's) when b is one deterministic fit (an SVM: the same
    on every seed) and every finished run kept its outcomes; else None (paired by seed alone)."""
    done = {arm: [r for r in runs if r.arm == arm and r.result is not None and r.result.status == "finished"]
            for arm in (a, b)}
    if not (done[a] and done[b]) or done[b][0].config.sgd or any(r.result.correct() is None for r in done[a] + done[b]):
        return None
    return {r.seed: r.result.correct() for r in done[a]}, done[b][0].result.correct()


def untrained(runs: list, arms: list[str]) -> dict[str, tuple[str, str]]:
    """arm -> (what the evidence says, how the verdict says it) for an arm that did not train on
    some or all of its finished seeds: its test accuracy within chance's noise there (10 balanced
    classes; ``significance.chance_ceiling``). A comparison with such a seed is one with chance."""
    found = {}
    for arm in arms:
        done = [r for r in runs if r.arm == arm and r.result is not None and r.result.status == "finished"]
        if not done or done[0].result.eval_key != "test_acc":
            continue
        images = done[0].result.eval_examples
        ceiling = significance.chance_ceiling(images)
        stuck = sorted((r.seed, r.result.final("test_acc")) for r in done if r.result.final("test_acc") <= ceiling)
        if not stuck:
            continue
        noise = f"within chance's noise (0.100 + 3 SE = {ceiling:.3f} on {images:,} images)"
        accuracy = [a for _, a in stuck]
        shown = f"{accuracy[0]:.3f}" if len(set(accuracy)) == 1 else f"{min(accuracy):.3f}–{max(accuracy):.3f}"
        if len(stuck) == len(done):
            found[arm] = (f"{arm} did not train: test accuracy {shown} on every one of its {len(done)} seeds, {noise}",
                          f"{arm} did not train (at chance on every seed)")
        else:
            seeds = ", ".join(str(s) for s, _ in stuck)
            found[arm] = (f"{arm} did not train on {len(stuck)} of its {len(done)} seeds (seed {seeds}: test accuracy "
                          f"{shown}, {noise})",
                          f"{arm} did not train on {len(stuck)} of {len(done)} seeds (seed {seeds})")
    return found


def _two_arms(claim: Claim) -> str:
    return "" if len(claim.arms) >= 2 else f"a comparison needs two arms (has {len(claim.arms)})"


def comparison(name: str, test: decision.Test, describes: str, tunable: bool = False) -> Rule:
    """Register a rule that judges the claim's comparisons (``Claim.comparisons``) with ``test``."""
    return register(Rule(name, lambda claim, runs, ctx: judge_pairs(claim, runs, ctx, test, claim.comparisons()),
                         describes, tunable, test, _two_arms))


comparison("better", decision.BETTER_TEST, "reproduced when the favoured arm's gain is significantly above m, "
           "contradicted when it is significantly below m (no gain of m or more: a loss, or nothing), else "
           "inconclusive", tunable=True)
comparison("no_gain", decision.NO_GAIN_TEST, "reproduced when the gain is significantly below m, contradicted when it "
           "is significantly above m", tunable=True)
comparison("same", decision.SAME_TEST, "reproduced when the difference is significantly inside ±m (two one-sided "
           "tests), contradicted when significantly outside")


def _ladder(claim: Claim, runs: list, ctx: Context) -> Judged:
    rungs, _ = ladder.roles(claim.arms)
    return judge_pairs(claim, runs, ctx, decision.BETTER_TEST, [(rungs[-1], rungs[0])])


def _rungs(claim: Claim) -> str:
    rungs, _ = ladder.roles(claim.arms)
    return "" if len(rungs) >= 2 else "a ladder needs rung arms (claims.rung) above its first arm"


register(Rule("ladder", _ladder, "the top rung beats the bottom one by the *better* rule, with each change's gain "
              "attributed both ways and interactions Holm-corrected among themselves", tunable=True,
              test=decision.BETTER_TEST, check=_rungs))


def _matches(claim: Claim, runs: list, ctx: Context) -> Judged:
    first = list(claim.arms)[0]
    v = decision.matches({m: list(ctx.values(m)[first].values()) for m in claim.printed},
                        {m: value for m, (value, _) in claim.printed.items()},
                        {m: tolerance for m, (_, tolerance) in claim.printed.items()})
    return Judged([v], v.stats, [v.evidence])


register(Rule("matches", _matches, "reproduced when the 95% interval of every seed mean lies inside its tolerance "
              "of the printed number (a single run of the lecture's), contradicted when a printed number lies "
              "outside the 95% prediction interval of one run, widened by the tolerance",
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
    if len(trace) != len(LECTURE_TRACE):
        wrong.append(f"the model has {len(trace)} layers, the printout {len(LECTURE_TRACE)}")
    same = not wrong
    text = f"all {len(trace)} layers match the printout" if same else "; ".join(wrong)
    return Judged([decision.Verdict("reproduced" if same else "contradicted", "")], {"layers": len(trace)}, [text])


register(Rule("shapes", _shapes, "reproduced when every layer's output shape for a 1x1x224x224 input equals the "
              "lecture's printout"))


def code_layers() -> dict[str, dict]:
    """The code's network (the lecture's AlexNet at 224 px) as the notes' table names its rows:
    the input, Conv1-5, MaxPool1-3 and Dense1-3, each with its kernel, stride, output (C, H, W), units."""
    net = build_alexnet(Config())
    rows = {"input": {"shape": (1, 224, 224)}}
    count = {"Conv2d": 0, "MaxPool2d": 0, "Linear": 0}
    for module, traced in zip(net, shape_trace(net, 224)):
        kind = module.__class__.__name__
        if kind not in count:
            continue
        count[kind] += 1
        name = {"Conv2d": "Conv", "MaxPool2d": "MaxPool", "Linear": "Dense"}[kind] + str(count[kind])
        if kind == "Linear":
            rows[name] = {"units": module.out_features}
        else:
            size = lambda v: v[0] if isinstance(v, tuple) else v  # noqa: E731
            rows[name] = {"kernel": size(module.kernel_size), "stride": size(module.stride), "shape": traced.shape[1:]}
    return rows


def _layers(claim: Claim, runs: list, ctx: Context) -> Judged:
    """The notes' table row by row against the code; a differing row is the 2012 paper's where it
    agrees with the paper, a slip of the notes where it agrees with neither."""
    code, lines, slips, paper_rows = code_layers(), [], 0, 0
    previous_channels = None
    for row, notes, paper in NOTES_TABLE:
        ours = {k: code[row][k] for k in notes}
        differ = [k for k in notes if notes[k] != ours[k]]
        if not differ:
            lines.append(f"{row}: as the code ({_fields(notes)})")
        elif all(notes[k] == paper[k] for k in differ):
            paper_rows += 1
            lines.append(f"{row}: the notes' {_fields(notes)} is the 2012 paper's ImageNet network; the code has "
                         f"{_fields(ours)}")
        else:
            slips += 1
            why = (f"a pooling layer cannot change its input's {previous_channels} channels to {notes['shape'][0]}"
                   if row.startswith("MaxPool") and previous_channels and notes["shape"][0] != previous_channels
                   else f"the paper's row is {_fields(paper)}")
            lines.append(f"{row}: a slip of the notes: {_fields(notes)}, neither the code's {_fields(ours)} nor the "
                         f"paper's ({why})")
        previous_channels = notes.get("shape", (previous_channels,))[0]
    summary = (f"{len(NOTES_TABLE)} rows: {len(NOTES_TABLE) - slips - paper_rows} as the code, {paper_rows} the 2012 "
               f"paper's ImageNet network (its RGB input, 55-px maps and 1,000 classes), {slips} slips of the notes")
    return Judged([decision.Verdict("contradicted" if slips else "reproduced", summary)],
                  {"rows": len(NOTES_TABLE), "slips": slips, "paper_rows": paper_rows}, [summary, *lines])


def _fields(row: dict) -> str:
    names = {"kernel": "{0}x{0}", "stride": "stride {}", "shape": "{}", "units": "{} units"}
    return ", ".join(names[k].format(v if k != "shape" else tuple(v)) for k, v in row.items())


register(Rule("layers", _layers, "reproduced when every row of the notes' layer table is the code's, or the 2012 "
              "paper's ImageNet network where the lecture's Fashion-MNIST one differs; contradicted by a row that is "
              "neither (a slip of the notes)"))


def describe_rules() -> str:
    """The rules section of claims.md, from the registry."""
    return ("Verdict rules (every comparison is tested against the minimum effect m, one-sided with its p doubled, so "
            "that p < 0.05 says the unadjusted 95% interval lies beyond the bound, and Holm-adjusted p < 0.05 the "
            "same of the wider interval the family's correction implies): "
            + "; ".join(f"*{r.name}* — {r.describes}" for r in RULES.values()) + ".")
