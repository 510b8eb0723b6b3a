"""Verdicts: per-seed values in, *reproduced* / *contradicted* / *inconclusive* out (the
statistics of each rule that ``ablations.verdicts.rules`` registers).

Every test returns its evidence (means, stds, interval, p, noise floor, power) next to the
word, so a reader can check the verdict against the numbers; an inconclusive one says what
it lacks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean, stdev

import numpy as np

from ablations.stats import significance
from ablations.stats.significance import Difference

ALPHA = significance.ALPHA  # family-wise: Holm over the comparisons judged together (``judge.judge_all``)
ACCURACY_METRICS = ("test_acc", "gap")  # metrics that carry the test set's sampling noise


@dataclass(frozen=True)
class Verdict:
    outcome: str  # reproduced | contradicted | inconclusive
    evidence: str  # lines joined by newlines
    stats: dict = field(default_factory=dict)
    precondition: bool = False  # what must hold for the claim to be testable at all (dropout: overfitting)


@dataclass(frozen=True)
class Test:
    """How a comparison rule (``ablations.verdicts.rules``) decides between two arms' per-seed values.
    ``decide(d, m, higher_is_better) -> (p, outcome)``: the p of the test the verdict rests on and
    the verdict it supports; ``expected``: the outcome the claim expects ({a}: the favoured arm,
    {m}: the minimum effect, {direction}: higher or lower); ``power_at``: the true effect its power
    is reported at; ``power(n, m, sd_diff, alpha)``."""
    decide: Callable[[Difference, float, bool], tuple[float, str | None]]
    expected: str
    power_at: str
    power: Callable[[int, float, float, float], float] = significance.paired_power


def _sd(xs) -> float:
    return stdev(xs) if len(xs) > 1 else 0.0


def difference(a: dict | list, b: dict | list, by_image: tuple | None = None
               ) -> tuple[Difference | None, list, list, str]:
    """The difference a - b: paired on the seeds both arms finished when a and b map seed ->
    value, Welch's when they are plain lists (arms that cannot pair). (None when too few runs.)
    ``by_image``: (seed -> a's per-image outcomes, b's per-image outcomes) where b is one
    deterministic fit: paired by seed and by image (``significance.image_paired``)."""
    note = ""
    if isinstance(a, dict) and isinstance(b, dict):
        common = sorted(set(a) & set(b))
        alone = sorted(set(a) ^ set(b))
        if alone:
            note = f"seeds {', '.join(map(str, alone))} finished in one arm only: left out of the pairs"
        xa, xb = [a[s] for s in common], [b[s] for s in common]
        if by_image and common and all(s in by_image[0] for s in common):
            outcomes = np.array([by_image[0][s] for s in common], dtype=float)
            return significance.image_paired(outcomes, np.array(by_image[1], dtype=float)), xa, xb, note
        return (significance.paired(xa, xb) if len(common) >= 2 else None), xa, xb, note
    xa, xb = list(a), list(b)
    return (significance.welch(xa, xb) if len(xa) >= 2 and len(xb) >= 2 else None), xa, xb, note


def improvement(xa: list, xb: list, higher_is_better: bool = True) -> float:
    """P(A better than B) over all pairs of runs."""
    return significance.prob_improvement(xa, xb) if higher_is_better else significance.prob_improvement(xb, xa)


def describe(d: Difference, xa: list, xb: list, names: tuple[str, str], metric: str,
             higher_is_better: bool = True) -> str:
    low, high = d.interval()
    pairing = "paired by seed and image" if "image" in d.method else "paired by seed"
    n = f"{len(xa)} seeds, {pairing}" if d.paired else f"n={len(xa)} and {len(xb)}, unpaired"
    return (f"{metric}: {names[0]} {mean(xa):.4f} ± {_sd(xa):.4f} vs {names[1]} {mean(xb):.4f} ± {_sd(xb):.4f} "
            f"({n}); difference {d.diff:+.4f} [unadjusted 95% CI {low:+.4f}, {high:+.4f}, {d.method}], "
            f"P({names[0]} {'>' if higher_is_better else '<'} {names[1]}) "
            f"{improvement(xa, xb, higher_is_better):.2f}")


def decide(test: Test, d: Difference, min_effect: float, higher_is_better: bool = True,
           p_adjusted: float | None = None, alpha: float = ALPHA) -> tuple[str, float, float]:
    """(verdict, p, the p it is decided on): the test's outcome when that p is below ``alpha``;
    a difference without spread decides nothing."""
    if d.se <= significance.FLAT_SE:
        return "inconclusive", 1.0, 1.0 if p_adjusted is None else p_adjusted
    p, outcome = test.decide(d, min_effect, higher_is_better)
    p_adj = p if p_adjusted is None else p_adjusted
    return (outcome if outcome and p_adj < alpha else "inconclusive"), p, p_adj


def compare(test: Test, a: dict | list, b: dict | list, min_effect: float, *, higher_is_better: bool = True,
            names=("a", "b"), metric="value", images: int | None = None, accuracy: float | None = None,
            p_adjusted: float | None = None, family: int = 1, alpha: float = ALPHA,
            by_image: tuple | None = None) -> Verdict:
    """A comparison test applied to two arms' per-seed values (``Test.decide``), with the noise
    floor and the rule's power beside it. ``p_adjusted``: this comparison's Holm-adjusted p in a
    ``family`` of comparisons (None: judged alone), decided at ``alpha`` (below 0.05 at each look of
    ``--seeds auto``). Power and seeds for 80% are the test's own (``Test.power``) at
    alpha / family: Bonferroni, a conservative stand-in for the Holm step the decision faces.
    ``images`` and ``accuracy``: the test set's size and the two arms' mean accuracy, at which its
    binomial noise is reported (accuracy metrics only). Differences without spread (every seed
    the same) decide nothing: the verdict is inconclusive and says so."""
    d, xa, xb, note = difference(a, b, by_image)
    if d is None:
        return Verdict("inconclusive", f"{metric}: needs at least 2 seeds per arm (have {len(xa)} and {len(xb)})"
                       + (f"; {note}" if note else ""))
    flat = d.se <= significance.FLAT_SE  # identical differences (or identical arms): no spread to test against
    word, p, p_adj = decide(test, d, min_effect, higher_is_better, p_adjusted, alpha)
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
         "alpha": alpha, "power_alpha": power_alpha, "flat": int(flat)}
    if word == "inconclusive" and min_effect and not flat:  # what would decide it: power and seeds, as ranges
        s |= power_range(test, len(xa), min_effect, sd_diff, power_alpha)
    expected = test.expected.format(a=names[0], m=min_effect, direction="higher" if higher_is_better else "lower")
    adjusted = (f", Holm-adjusted {p_adj:.3g} over {family} comparisons" if family > 1 else "") + (
        f", decided at α = {alpha:.3g}" if alpha != ALPHA else "")
    lines = [describe(d, xa, xb, names, metric, higher_is_better) + f", p {p:.3g}{adjusted}; {expected}"]
    floor = [f"seed-to-seed sd {names[0]} {sd_a:.4f}, {names[1]} {sd_b:.4f}, of the "
             f"{'paired differences' if d.paired else 'difference of two runs'} {sd_diff:.4f}"]
    if images and accuracy is not None and metric in ACCURACY_METRICS:
        s |= {"binomial_se": binomial_floor(floor, accuracy, images, names), "images": images}
    lines.append("noise floor: " + "; ".join(floor))
    if note:
        lines.append(note)
    if word == "inconclusive":
        s["lacks"] = lacks(s, len(xa))
        lines.append("inconclusive — it lacks " + s["lacks"])
        if "power_low" in s:
            lines.append(f"what would decide it: power of this rule at {len(xa)} seeds "
                         f"({test.power_at.format(m=min_effect)}, α {power_alpha:.3g} = {_alpha_text(alpha)} / "
                         f"{family} comparisons) {_range(_pct(s['power_low']), _pct(s['power_high']))}; 80% needs "
                         f"{_seeds_range(s['seeds_needed_low'], s['seeds_needed_high'])} (the range: the 95% "
                         f"interval of the true spread, from {len(xa)} seeds)")
    return Verdict(word, "\n".join(lines), s)


def power_range(test: Test, n: int, m: float, sd_diff: float, alpha: float) -> dict[str, float]:
    """The rule's power at n seeds and the seeds 80% needs, at both ends of the true spread's 95%
    interval (``significance.sd_interval``): what a few seeds can say about what would decide."""
    sd_low, sd_high = significance.sd_interval(sd_diff, n)
    return {"power_low": test.power(n, m, sd_high, alpha), "power_high": test.power(n, m, sd_low, alpha),
            "seeds_needed_low": significance.seeds_needed(m, sd_low, alpha=alpha, test=test.power),
            "seeds_needed_high": significance.seeds_needed(m, sd_high, alpha=alpha, test=test.power)}


def binomial_floor(floor: list[str], accuracy: float | tuple, images: int, names: tuple) -> float:
    """The test set's binomial SE at each arm's own accuracy (a pair) or at one accuracy, put first
    in ``floor``; returns the larger."""
    each = accuracy if isinstance(accuracy, tuple) else (accuracy, accuracy)
    ses = [significance.binomial_se(x, images) for x in each]
    floor.insert(0, f"test-set binomial SE ±{ses[0]:.4f} at {names[0]}'s accuracy {each[0]:.3f}, ±{ses[1]:.4f} at "
                    f"{names[1]}'s {each[1]:.3f}, on {images:,} images" if isinstance(accuracy, tuple) else
                    f"test-set binomial SE ±{ses[0]:.4f} at accuracy {each[0]:.3f} on {images:,} images")
    return max(ses)


def _alpha_text(alpha: float) -> str:
    """The family-wise alpha as it came: 0.05, or 0.05 spread over the looks of --seeds auto."""
    return "0.05" if alpha == ALPHA else f"{alpha:.3g} (0.05 over the looks of --seeds auto)"


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 else "<1%"


def _range(low: str, high: str) -> str:
    return low if low == high else f"{low}–{high}"


def _seeds_range(low: int, high: int) -> str:
    if low == high:
        return _seeds(low)
    return f"{low:,}–{high:,} seeds" if high <= 10_000 else f"{_seeds(low).removesuffix(' seeds')} to {_seeds(high)}"


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
    """a beats b by more than m. Gain estimated above m: p of 'the gain is at most m' (reproduced);
    else p of 'the gain is at least m' (contradicted: no gain of m or more, a loss included), so
    that enough seeds settle a claim with no effect as surely as one with an effect."""
    gain, above, below = _tails(d, higher_is_better)
    return (min(1.0, 2 * above(m)), "reproduced") if gain > m else (min(1.0, 2 * below(m)), "contradicted")


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


# the tests of the rules "better", "no_gain" and "same" (ablations.verdicts.rules registers them)
BETTER_TEST = Test(decide_better, "expected {a} {direction} by more than {m} (the gain's interval above {m}; below "
                   "{m}: contradicted)", "a true gain of 0 or of 2 x {m}, {m} from the bound either way")
NO_GAIN_TEST = Test(decide_no_gain, "claim holds if {a} gains less than {m} (the gain's interval below {m})",
                    "a true gain of 0 or of 2 x {m}, {m} from the bound either way")
SAME_TEST = Test(decide_same, "the same if the difference's interval lies inside ±{m}", "a true difference of 0",
                 power=significance.tost_power)


def lacks(s: dict, n: int) -> str:
    """What an inconclusive comparison lacks: spread, seeds, or it fell to the correction."""
    if s.get("flat"):
        what = "paired differences" if s.get("paired", 1) else "runs of each arm"
        return (f"spread: the {n} {what} leave no variance ({s['diff']:+.4f} every time), and a sample without "
                "it decides nothing (more seeds, or a larger test set, would show the noise it hides)")
    missing = []
    if s["min_effect"] and s.get("seeds_needed_high", 0) > n:
        missing.append(f"seeds: {_seeds_range(s['seeds_needed_low'], s['seeds_needed_high'])} for 80% power of "
                       f"this rule (have {n})")
    if s["p"] < s["alpha"] <= s["p_holm"]:
        missing.append(f"significance after the multiple-comparison correction (p {s['p']:.3g}, Holm-adjusted "
                       f"{s['p_holm']:.3g})")
    return "; ".join(missing) or "precision: the interval still straddles the bound (more seeds would narrow it)"


def compare_better(a, b, min_effect: float, **kw) -> Verdict:
    """The claim: arm a beats arm b by at least ``min_effect`` (``decide_better``)."""
    return compare(BETTER_TEST, a, b, min_effect, **kw)


def compare_no_gain(a, b, min_effect: float, **kw) -> Verdict:
    """The claim: arm a gains less than ``min_effect`` over arm b."""
    return compare(NO_GAIN_TEST, a, b, min_effect, **kw)


def compare_same(a, b, margin: float, **kw) -> Verdict:
    """The claim: arms a and b give the same result, within ±``margin`` (equivalence)."""
    return compare(SAME_TEST, a, b, margin, **kw)


def matches(values: dict[str, list[float]], targets: dict[str, float], tolerances: dict[str, float]) -> Verdict:
    """The claim: the lecture's printed numbers, each one run of the lecture's, against the seeds.
    Reproduced when every seed mean's 95% t interval lies inside its tolerance of the printed value
    (our typical run prints about what the lecture printed). Contradicted when a printed value lies
    outside the 95% prediction interval of one more run, widened by the tolerance: a single run
    drawn from our runs' own distribution falls there at most 5% of the time, at any number of
    seeds (the mean's interval shrinks with seeds, and once contradicted such a run ever more
    often). Else inconclusive (one seed has no interval)."""
    parts, words, s = [], set(), {}
    for name, target in targets.items():
        xs = values.get(name, [])
        if not xs:
            return Verdict("inconclusive", f"no finished runs to compare with {name} {target}")
        m, tol = mean(xs), tolerances[name]
        if len(xs) > 1 and _sd(xs) == 0:  # a sample without spread decides nothing
            return Verdict("inconclusive", f"{name}: the {len(xs)} seeds all gave {m:.4f}; a sample without spread "
                                           "decides nothing")
        half, predict = significance.t_half_width(xs), significance.prediction_half_width(xs)
        low, high = m - half, m + half
        if target - tol <= low and high <= target + tol:
            word, where = "reproduced", "the mean's interval lies inside the tolerance"
        elif abs(target - m) > predict + tol:
            word, where = "contradicted", "the printed run lies outside the prediction interval, widened by it"
        else:
            word, where = "inconclusive", "neither"
        words.add(word)
        s |= {name: m, f"{name}.ci_low": low, f"{name}.ci_high": high, f"{name}.pi_low": m - predict,
              f"{name}.pi_high": m + predict}
        parts.append(f"{name} {m:.3f} [95% CI {low:.3f}, {high:.3f}; 95% prediction interval of one run "
                     f"{m - predict:.3f}, {m + predict:.3f}] over {len(xs)} seeds vs the printout's single run "
                     f"{target} (tolerance ±{tol}: {where})")
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
    """All parts must hold for a claim to be reproduced; any contradiction contradicts it; a
    precondition not shown to hold leaves it untestable (inconclusive) whatever the rest says."""
    if any(v.precondition and v.outcome != "reproduced" for v in verdicts):
        return "inconclusive"
    words = {v.outcome for v in verdicts}
    if "contradicted" in words:
        return "contradicted"
    return "reproduced" if words == {"reproduced"} else "inconclusive"
