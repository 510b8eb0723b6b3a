"""Verdicts: per-seed values in, *reproduced* / *contradicted* / *inconclusive* out (the
statistics of each rule that ``ablations.rules`` registers).

Every test returns its evidence (means, stds, interval, p, noise floor, power) next to the
word, so a reader can check the verdict against the numbers; an inconclusive one says what
it lacks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean, stdev

from . import significance
from .significance import Difference

ALPHA = significance.ALPHA  # family-wise: Holm over the comparisons judged together (``judge.judge_all``)
ACCURACY_METRICS = ("test_acc", "gap")  # metrics that carry the test set's sampling noise


@dataclass(frozen=True)
class Verdict:
    verdict: str  # reproduced | contradicted | inconclusive
    evidence: str  # lines joined by newlines
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Test:
    """How a comparison rule (``ablations.rules``) decides between two arms' per-seed values.
    ``decide(d, m, higher_is_better) -> (p, outcome)``: the p of the test the verdict rests on and
    the verdict it supports; ``expected``: the outcome the claim expects ({a}: the favoured arm,
    {m}: the minimum effect, {direction}: higher or lower); ``power_at``: the true effect its power
    is reported at; ``power(n, m, sd_diff, alpha)``; ``needs_effect``: an inconclusive verdict
    lacks effect when the measured gain is not beyond m."""
    decide: Callable[[Difference, float, bool], tuple[float, str | None]]
    expected: str
    power_at: str
    power: Callable[[int, float, float, float], float] = significance.paired_power
    needs_effect: bool = False


def _sd(xs) -> float:
    return stdev(xs) if len(xs) > 1 else 0.0


def difference(a: dict | list, b: dict | list) -> tuple[Difference | None, list, list, str]:
    """The difference a - b: paired on the seeds both arms finished when a and b map seed ->
    value, Welch's when they are plain lists (arms that cannot pair). (None when too few runs.)"""
    note = ""
    if isinstance(a, dict) and isinstance(b, dict):
        common = sorted(set(a) & set(b))
        alone = sorted(set(a) ^ set(b))
        if alone:
            note = f"seeds {', '.join(map(str, alone))} finished in one arm only: left out of the pairs"
        xa, xb = [a[s] for s in common], [b[s] for s in common]
        return (significance.paired(xa, xb) if len(common) >= 2 else None), xa, xb, note
    xa, xb = list(a), list(b)
    return (significance.welch(xa, xb) if len(xa) >= 2 and len(xb) >= 2 else None), xa, xb, note


def improvement(xa: list, xb: list, higher_is_better: bool = True) -> float:
    """P(A better than B) over all pairs of runs."""
    return significance.prob_improvement(xa, xb) if higher_is_better else significance.prob_improvement(xb, xa)


def describe(d: Difference, xa: list, xb: list, names: tuple[str, str], metric: str,
             higher_is_better: bool = True) -> str:
    low, high = d.interval()
    n = f"{len(xa)} seeds, paired by seed" if d.paired else f"n={len(xa)} and {len(xb)}, unpaired"
    return (f"{metric}: {names[0]} {mean(xa):.4f} ± {_sd(xa):.4f} vs {names[1]} {mean(xb):.4f} ± {_sd(xb):.4f} "
            f"({n}); difference {d.diff:+.4f} [unadjusted 95% CI {low:+.4f}, {high:+.4f}, {d.method}], "
            f"P({names[0]} {'>' if higher_is_better else '<'} {names[1]}) "
            f"{improvement(xa, xb, higher_is_better):.2f}")


def compare(test: Test, a: dict | list, b: dict | list, min_effect: float, *, higher_is_better: bool = True,
            names=("a", "b"), metric="value", images: int | None = None, accuracy: float | None = None,
            p_adjusted: float | None = None, family: int = 1, alpha: float = ALPHA) -> Verdict:
    """A comparison test applied to two arms' per-seed values (``Test.decide``), with the noise
    floor and the rule's power beside it. ``p_adjusted``: this comparison's Holm-adjusted p in a
    ``family`` of comparisons (None: judged alone), decided at ``alpha`` (below 0.05 at each look of
    ``--seeds auto``). Power and seeds for 80% are the test's own (``Test.power``) at
    alpha / family: Bonferroni, a conservative stand-in for the Holm step the decision faces.
    ``images`` and ``accuracy``: the test set's size and the two arms' mean accuracy, at which its
    binomial noise is reported (accuracy metrics only). Differences without spread (every seed
    the same) decide nothing: the verdict is inconclusive and says so."""
    d, xa, xb, note = difference(a, b)
    if d is None:
        return Verdict("inconclusive", f"{metric}: needs at least 2 seeds per arm (have {len(xa)} and {len(xb)})"
                       + (f"; {note}" if note else ""))
    flat = d.se <= significance.FLAT_SE  # identical differences (or identical arms): no spread to test against
    p, outcome = (1.0, None) if flat else test.decide(d, min_effect, higher_is_better)
    p_adj = p if p_adjusted is None else p_adjusted
    word = outcome if outcome and p_adj < alpha else "inconclusive"
    sd_a, sd_b = _sd(xa), _sd(xb)
    sd_diff = _sd([x - y for x, y in zip(xa, xb)]) if d.paired else math.sqrt(sd_a**2 + sd_b**2)
    low, high = d.interval()
    pooled = math.sqrt((sd_a**2 + sd_b**2) / 2)
    power_alpha = alpha / family
    s = {"diff": d.diff, "gain": d.diff if higher_is_better else -d.diff, "ci_low": low, "ci_high": high,
         "p": p, "p_holm": p_adj, "family": family, "p_improvement": improvement(xa, xb, higher_is_better),
         "mean_a": mean(xa), "sd_a": sd_a, "n_a": len(xa), "mean_b": mean(xb), "sd_b": sd_b, "n_b": len(xb),
         "cohens_d": d.diff / pooled if pooled else math.copysign(math.inf, d.diff) if d.diff else 0.0,
         "paired": int(d.paired), "method": d.method, "sd_diff": sd_diff, "min_effect": min_effect,
         "alpha": alpha, "power_alpha": power_alpha, "flat": int(flat),
         "power": test.power(len(xa), min_effect, sd_diff, power_alpha) if min_effect and not flat else math.nan,
         "seeds_needed": significance.seeds_needed(min_effect, sd_diff, alpha=power_alpha, test=test.power)
         if min_effect and not flat else math.nan}
    expected = test.expected.format(a=names[0], m=min_effect, direction="higher" if higher_is_better else "lower")
    adjusted = (f", Holm-adjusted {p_adj:.3g} over {family} comparisons" if family > 1 else "") + (
        f", decided at α = {alpha:.3g}" if alpha != ALPHA else "")
    lines = [describe(d, xa, xb, names, metric, higher_is_better) + f", p {p:.3g}{adjusted}; {expected}"]
    floor = [f"seed-to-seed sd {names[0]} {sd_a:.4f}, {names[1]} {sd_b:.4f}, of the "
             f"{'paired differences' if d.paired else 'difference of two runs'} {sd_diff:.4f}"]
    if images and accuracy is not None and metric in ACCURACY_METRICS:
        s |= {"binomial_se": significance.binomial_se(accuracy, images), "images": images}
        floor.insert(0, f"test-set binomial SE ±{s['binomial_se']:.4f} at the two arms' accuracy {accuracy:.3f} "
                        f"on {images:,} images")
    if min_effect and not flat:
        floor.append(f"power of this rule at {len(xa)} seeds ({test.power_at.format(m=min_effect)}, α "
                     f"{power_alpha:.3g} = 0.05 / {family} comparisons): {s['power']:.0%}; 80% needs "
                     f"{_seeds(s['seeds_needed'])}")
    lines.append("noise floor: " + "; ".join(floor))
    if note:
        lines.append(note)
    if word == "inconclusive":
        s["lacks"] = lacks(s, len(xa), test.needs_effect)
        lines.append("inconclusive — it lacks " + s["lacks"])
    return Verdict(word, "\n".join(lines), s)


def _seeds(n: int) -> str:
    return f"more than {n - 1:,} seeds" if n > 10_000 else f"{n:,} seeds"


def _tails(d: Difference, higher_is_better: bool):
    """(the gain, p of 'the true gain is at most c', p of 'the true gain is at least c'): one-sided."""
    if higher_is_better:
        return d.diff, d.p_above, d.p_below
    return -d.diff, lambda c: d.p_below(-c), lambda c: d.p_above(-c)


# Every test is against the minimum effect m, one-sided, its p doubled (so p < 0.05 says exactly
# that the 95% interval lies beyond the bound).

def decide_better(d: Difference, m: float, higher_is_better: bool = True) -> tuple[float, str]:
    """a beats b by more than m. Gain estimated above 0: p of 'the gain is at most m' (reproduced);
    else p of 'the loss is at most m' (contradicted)."""
    gain, above, below = _tails(d, higher_is_better)
    return (min(1.0, 2 * above(m)), "reproduced") if gain > 0 else (min(1.0, 2 * below(-m)), "contradicted")


def decide_no_gain(d: Difference, m: float, higher_is_better: bool = True) -> tuple[float, str]:
    """a gains less than m over b. Gain estimated below m: p of 'the gain is at least m'
    (reproduced); else p of 'the gain is at most m' (contradicted)."""
    gain, above, below = _tails(d, higher_is_better)
    return (min(1.0, 2 * below(m)), "reproduced") if gain < m else (min(1.0, 2 * above(m)), "contradicted")


def decide_same(d: Difference, m: float, higher_is_better: bool = True) -> tuple[float, str]:
    """|a - b| < m (equivalence, two one-sided tests); when the estimate lies outside ±m, p of
    'the difference is inside ±m' (contradicted)."""
    if abs(d.diff) < m:
        return min(1.0, 2 * max(d.p_above(-m), d.p_below(m))), "reproduced"
    return min(1.0, 2 * (d.p_above(m) if d.diff > 0 else d.p_below(-m))), "contradicted"


BETTER = Test(decide_better, "expected {a} {direction} by more than {m} (the gain's interval above {m})",
              "a true gain of 2 x {m}", needs_effect=True)
NO_GAIN = Test(decide_no_gain, "claim holds if {a} gains less than {m} (the gain's interval below {m})",
               "a true gain of 0")
SAME = Test(decide_same, "the same if the difference's interval lies inside ±{m}", "a true difference of 0",
            power=significance.tost_power)


def lacks(s: dict, n: int, needs_effect: bool = True) -> str:
    """What an inconclusive comparison lacks: spread, effect, seeds, or it fell to the correction."""
    if s.get("flat"):
        return (f"spread: the {n} paired differences are all {s['diff']:+.4f}, and a sample without variance "
                "decides nothing (more seeds, or a larger test set, would show the noise it hides)")
    missing = []
    if needs_effect and abs(s["gain"]) <= s["min_effect"]:
        missing.append(f"effect: the measured difference, {s['gain']:+.4f}, is not beyond the minimum effect "
                       f"{s['min_effect']}")
    if s["min_effect"] and s["seeds_needed"] > n:  # (nan when flat: handled above)
        missing.append(f"seeds: {_seeds(s['seeds_needed'])} for 80% power of this rule (have {n})")
    if s["p"] < s["alpha"] <= s["p_holm"]:
        missing.append(f"significance after the multiple-comparison correction (p {s['p']:.3g}, Holm-adjusted "
                       f"{s['p_holm']:.3g})")
    return "; ".join(missing) or "precision: the interval still straddles the bound (more seeds would narrow it)"


def better(a, b, min_effect: float, **kw) -> Verdict:
    """The claim: arm a beats arm b by at least ``min_effect`` (``decide_better``)."""
    return compare(BETTER, a, b, min_effect, **kw)


def no_gain(a, b, min_effect: float, **kw) -> Verdict:
    """The claim: arm a gains less than ``min_effect`` over arm b."""
    return compare(NO_GAIN, a, b, min_effect, **kw)


def same(a, b, margin: float, **kw) -> Verdict:
    """The claim: arms a and b give the same result, within ±``margin`` (equivalence)."""
    return compare(SAME, a, b, margin, **kw)


def matches(values: dict[str, list[float]], targets: dict[str, float], tolerances: dict[str, float]) -> Verdict:
    """The claim: the lecture's printed numbers (one run of the lecture's) against the seeds' mean.
    Reproduced when every mean's 95% t interval lies inside its tolerance of the printed value,
    contradicted when one lies wholly outside it, else inconclusive (one seed has no interval)."""
    parts, words, s = [], set(), {}
    for name, target in targets.items():
        xs = values.get(name, [])
        if not xs:
            return Verdict("inconclusive", f"no finished runs to compare with {name} {target}")
        m, tol = mean(xs), tolerances[name]
        if len(xs) > 1 and _sd(xs) == 0:  # a sample without spread decides nothing
            return Verdict("inconclusive", f"{name}: the {len(xs)} seeds all gave {m:.4f}; a sample without spread "
                                           "decides nothing")
        half = significance.t_half_width(xs)
        low, high = m - half, m + half
        if target - tol <= low and high <= target + tol:
            word, where = "reproduced", "inside"
        elif high < target - tol or low > target + tol:
            word, where = "contradicted", "outside"
        else:
            word, where = "inconclusive", "straddling"
        words.add(word)
        s |= {name: m, f"{name}.ci_low": low, f"{name}.ci_high": high}
        parts.append(f"{name} {m:.3f} [95% CI {low:.3f}, {high:.3f}] over {len(xs)} seeds vs the printout's single "
                     f"run {target} (tolerance ±{tol}: the interval lies {where})")
    word = "contradicted" if "contradicted" in words else "reproduced" if words == {"reproduced"} else "inconclusive"
    return Verdict(word, "; ".join(parts), s)


def ratio(measured: float, stated: float, what: str, factor: float = 2.0) -> Verdict:
    """A stated ratio holds when the measured one is within ``factor`` of it either way."""
    inside = stated / factor <= measured <= stated * factor
    return Verdict("reproduced" if inside else "contradicted",
                   f"{what}: measured {measured:,.0f}x vs stated {stated:,.0f}x "
                   f"({'within' if inside else 'outside'} a factor of {factor:g})",
                   {"measured": measured, "stated": stated})


def combine(verdicts: list[Verdict]) -> str:
    """All parts must hold for a claim to be reproduced; any contradiction contradicts it."""
    words = {v.verdict for v in verdicts}
    if "contradicted" in words:
        return "contradicted"
    return "reproduced" if words == {"reproduced"} else "inconclusive"
