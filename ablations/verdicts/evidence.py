"""The registry of evidence that claims name (``Claim.evidence``; plots: ``ablations.reporting.plots``).

A claim declares what it needs by name; adding a kind of evidence is one decorated function
here or anywhere else (a test, a plugin), never a branch on claim ids:

    @evidence("grad_norms")
    def grad_norm_ratio(runs, claim, stats) -> str | Verdict: ...

An evidence function gets the claim's runs, the claim (its arms, in order, with their roles)
and the statistics dict (which it may extend); it returns a line of context (str) or a
``Verdict`` that joins the claim's verdict."""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import median

from ablations.stats import decision, ladder, significance
from alexnet.tracking import key_name

EVIDENCE: dict[str, Callable] = {}


def evidence(name: str):
    def register(fn):
        EVIDENCE[name] = fn
        return fn
    return register


def per_arm(runs: list, name: str) -> dict[str, dict[int, float]]:
    """Each arm's final ``name`` by seed, finished seeds only (diverged runs left out)."""
    values: dict[str, dict[int, float]] = {}
    for r in runs:
        values.setdefault(r.arm, {})
        v = r.result.final(name) if r.result is not None else math.nan
        if math.isfinite(v):
            values[r.arm][r.seed] = v
    return values


@evidence("grad_norms")
def grad_norm_ratio(runs, claim, stats) -> str:
    """Mean first-epoch gradient norm of the first conv layer over that of the last dense layer."""
    by_arm: dict[str, list[float]] = {}
    for r in runs:
        g = r.result.grad_norms
        if g:
            names = list(g)
            by_arm.setdefault(r.arm, []).append(g[names[0]] / g[names[-1]] if g[names[-1]] else math.nan)
    return "first-epoch gradient norm, first conv / last dense layer: " + ", ".join(
        f"{arm} {sum(v) / len(v):.3g}" for arm, v in by_arm.items())


@evidence("compute")
def compute_cost(runs, claim, stats) -> decision.Verdict:
    """FLOPs per image and training speed of the two arms: reproduced when the first costs more."""
    arms = list(claim.arms)
    flops = {r.arm: r.result.flops_per_image for r in runs}
    params = {r.arm: r.result.params for r in runs}
    speed = {arm: median(e["examples_per_s"] for r in runs if r.arm == arm for e in r.result.epochs)
             for arm in arms if any(r.arm == arm and r.result.epochs for r in runs)}
    f_ratio = flops[arms[0]] / flops[arms[1]]
    stats.update(flops_ratio=f_ratio)
    text = (f"compute: {arms[0]} {flops[arms[0]]:,} FLOPs/image vs {arms[1]} {flops[arms[1]]:,} "
            f"({f_ratio:.2f}x)")
    if params[arms[0]] != params[arms[1]]:  # what "28 px" means here: another stem and first dense layer
        text += (f"; the two networks differ in more than the input: the stem (11x11/4 against 3x3/1), the first "
                 f"dense layer's inputs and the parameters ({params[arms[0]]:,} against {params[arms[1]]:,})")
    if len(speed) == 2:
        s_ratio = speed[arms[1]] / speed[arms[0]]
        stats.update(speed_ratio=s_ratio)
        text += (f"; training {speed[arms[0]]:.1f} vs {speed[arms[1]]:.1f} images/s "
                 f"({arms[1]} {s_ratio:.2f}x faster, median over epochs and seeds)")
    return decision.Verdict("reproduced" if f_ratio > 1 else "contradicted", text)


def arm_costs(runs: list, arms: list[str]) -> dict[str, dict]:
    """arm -> its finished runs' test accuracies (``acc``), median wall time per run (``wall_s``:
    its epochs' times), FLOPs per image at prediction and training FLOPs per run (a network: 3x
    its forward FLOPs per training image and epoch; None for a fitted kind, the SVM, whose fit is not counted)."""
    out = {}
    for arm in arms:
        done = [r for r in runs if r.arm == arm and r.result is not None and r.result.status == "finished"]
        if done:
            res = done[0].result
            sgd = done[0].config.sgd
            out[arm] = {"acc": [r.result.final("test_acc") for r in done],
                        "wall_s": median(r.result.wall_s for r in done),
                        "flops": res.flops_per_image,
                        "train_flops": 3 * res.flops_per_image * res.train_examples * len(res.epochs) if sgd else None,
                        "images": res.train_examples}
    return out


@evidence("cost")
def cost(runs, claim, stats) -> str:
    """Each arm's accuracy beside its cost on this machine: wall time, and FLOPs where counted."""
    arms = list(claim.arms)
    parts = []
    for arm, c in arm_costs(runs, arms).items():
        stats[f"wall_s.{key_name(arm)}"] = c["wall_s"]
        train = (f", {c['train_flops']:.2g} training FLOPs" if c["train_flops"] else
                 " (the fit's FLOPs not counted)")
        parts.append(f"{arm} {sum(c['acc']) / len(c['acc']):.3f} in {c['wall_s']:.1f} s on {c['images']:,} images"
                     f"{train}, {c['flops']:.2g} FLOPs/image to predict")
    return ("accuracy and cost per run on this machine (median wall time; the SVM's prediction counted without "
            "its HOG extraction): " + "; ".join(parts))


@evidence("overfits")
def overfits(runs, claim, stats) -> decision.Verdict:
    """The dropout claim's precondition, as a test: the arm without dropout (the second) overfits,
    its train - test gap above the claim's minimum effect m (the gap's 95% interval over seeds above
    m); nothing overfits when the interval lies below m; else it cannot tell (more seeds)."""
    arms = list(claim.arms)
    gaps = list(per_arm(runs, "gap").get(arms[1], {}).values())
    m = stats.get("min_effect", 0.0)
    if len(gaps) < 2:
        return decision.Verdict("inconclusive", f"overfitting: {arms[1]} needs at least 2 finished seeds "
                                                f"(has {len(gaps)})", precondition=True)
    gap = significance.paired(gaps, [0.0] * len(gaps))
    low, high = gap.interval()
    stats.update(overfit_gap=gap.diff, overfit_gap_low=low, overfit_gap_high=high)
    shown = f"{arms[1]}'s train - test gap is {gap.diff:+.4f} [95% CI {low:+.4f}, {high:+.4f}] over {len(gaps)} seeds"
    if low > m:
        return decision.Verdict("reproduced", f"overfitting: {shown}, above the minimum effect {m}", precondition=True)
    if high < m:
        return decision.Verdict("inconclusive", f"nothing overfits at this scale: {shown}, below the minimum "
                                                f"effect {m}, so there is nothing for dropout to control",
                                precondition=True)
    return decision.Verdict("inconclusive", f"cannot tell whether {arms[1]} overfits: {shown}, straddling the "
                                            f"minimum effect {m} (more seeds would tell)", precondition=True)


@evidence("attribution")
def attribution(runs, claim, stats) -> str:
    """The ladder's attribution of the total gain to each change, both orders, and the lr of each arm."""
    arms = list(claim.arms)
    att = ladder.attribute(per_arm(runs, "test_acc"), claim.arms)
    stats.update({f"gain.{s.change}": s.forward.diff for s in att.steps if s.forward})
    lrs = {arm: sorted({r.config.lr for r in runs if r.arm == arm}) for arm in arms}
    tuned = set(claim.tuned_arms)
    return "\n".join(ladder.describe(att, "test_acc") + [
        "lr of each arm (tuned: from its own Optuna study on a validation split of the training set, the "
        "smallest lr the best one does not beat beyond noise; at the scale's lr and epochs a sigmoid net stays at "
        "chance): " + ", ".join(
            f"{arm} {'/'.join(f'{lr:.3g}' for lr in lr_set)}{' (tuned)' if arm in tuned else ''}"
            for arm, lr_set in lrs.items())])
