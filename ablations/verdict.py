"""Verdict rules: per-seed values in, *reproduced* / *contradicted* / *inconclusive* out.

Every rule returns its evidence (means, stds, interval, p, noise floor, power) next to the
word, so a reader can check the verdict against the numbers; an inconclusive one says what
it lacks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import mean, stdev

from . import stats
from .stats import Difference

ALPHA = stats.ALPHA  # family-wise: Holm over the comparisons judged together (``judge.judge_all``)
RULES = ("better", "no_gain", "same")  # the comparison rules: two arms, a p-value, a family
ACCURACY_METRICS = ("test_acc", "gap")  # metrics that carry the test set's sampling noise


@dataclass(frozen=True)
class Verdict:
    verdict: str  # reproduced | contradicted | inconclusive
    evidence: str  # lines joined by newlines
    stats: dict = field(default_factory=dict)


def _sd(xs) -> float:
    return stdev(xs) if len(xs) > 1 else 0.0


def estimate(a: dict | list, b: dict | list) -> tuple[Difference | None, list, list, str]:
    """The difference a - b: paired on the seeds both arms finished when a and b map seed ->
    value, Welch's when they are plain lists (arms that cannot pair). (None when too few runs.)"""
    note = ""
    if isinstance(a, dict) and isinstance(b, dict):
        common = sorted(set(a) & set(b))
        alone = sorted(set(a) ^ set(b))
        if alone:
            note = f"seeds {', '.join(map(str, alone))} finished in one arm only: left out of the pairs"
        xa, xb = [a[s] for s in common], [b[s] for s in common]
        return (stats.paired(xa, xb) if len(common) >= 2 else None), xa, xb, note
    xa, xb = list(a), list(b)
    return (stats.welch(xa, xb) if len(xa) >= 2 and len(xb) >= 2 else None), xa, xb, note


def improvement(xa: list, xb: list, higher_is_better: bool = True) -> float:
    """P(A better than B) over all pairs of runs."""
    return stats.prob_improvement(xa, xb) if higher_is_better else stats.prob_improvement(xb, xa)


def describe(d: Difference, xa: list, xb: list, names: tuple[str, str], metric: str,
             higher_is_better: bool = True) -> str:
    low, high = d.interval()
    n = f"{len(xa)} seeds, paired by seed" if d.paired else f"n={len(xa)} and {len(xb)}, unpaired"
    return (f"{metric}: {names[0]} {mean(xa):.4f} ± {_sd(xa):.4f} vs {names[1]} {mean(xb):.4f} ± {_sd(xb):.4f} "
            f"({n}); difference {d.diff:+.4f} [95% CI {low:+.4f}, {high:+.4f}, {d.method}], "
            f"P({names[0]} {'>' if higher_is_better else '<'} {names[1]}) "
            f"{improvement(xa, xb, higher_is_better):.2f}")


def compare(rule: str, a: dict | list, b: dict | list, min_effect: float, *, higher_is_better: bool = True,
            names=("a", "b"), metric="value", images: int | None = None, accuracy: float | None = None,
            p_adjusted: float | None = None, family: int = 1, alpha: float = ALPHA) -> Verdict:
    """A comparison rule applied to two arms' per-seed values (see ``decide``), with the noise
    floor and power beside it. ``p_adjusted``: this comparison's Holm-adjusted p in a ``family``
    of comparisons (None: judged alone), decided at ``alpha`` (below 0.05 at each look of
    ``--seeds auto``). ``images`` and ``accuracy``: the test set's size and the accuracy at which
    its binomial noise is reported (accuracy metrics only)."""
    d, xa, xb, note = estimate(a, b)
    if d is None:
        return Verdict("inconclusive", f"{metric}: needs at least 2 seeds per arm (have {len(xa)} and {len(xb)})"
                       + (f"; {note}" if note else ""))
    p, outcome = decide(rule, d, min_effect, higher_is_better)
    p_adj = p if p_adjusted is None else p_adjusted
    word = outcome if outcome and p_adj < alpha else "inconclusive"
    sd_a, sd_b = _sd(xa), _sd(xb)
    sd_diff = _sd([x - y for x, y in zip(xa, xb)]) if d.paired else math.sqrt(sd_a**2 + sd_b**2)
    low, high = d.interval()
    pooled = math.sqrt((sd_a**2 + sd_b**2) / 2)
    s = {"diff": d.diff, "gain": d.diff if higher_is_better else -d.diff, "ci_low": low, "ci_high": high,
         "p": p, "p_holm": p_adj, "family": family, "p_improvement": improvement(xa, xb, higher_is_better),
         "mean_a": mean(xa), "sd_a": sd_a, "n_a": len(xa), "mean_b": mean(xb), "sd_b": sd_b, "n_b": len(xb),
         "cohens_d": d.diff / pooled if pooled else math.copysign(math.inf, d.diff) if d.diff else 0.0,
         "paired": int(d.paired), "method": d.method, "sd_diff": sd_diff, "min_effect": min_effect,
         "alpha": alpha, "power": stats.paired_power(len(xa), min_effect, sd_diff, alpha) if min_effect else math.nan,
         "seeds_needed": stats.seeds_needed(min_effect, sd_diff, alpha=alpha) if min_effect else math.nan}
    expected = {"better": f"expected {names[0]} {'higher' if higher_is_better else 'lower'} by ≥ {min_effect}",
                "no_gain": f"claim holds if {names[0]} gains < {min_effect}",
                "same": f"the same if the difference lies inside ±{min_effect}"}[rule]
    adjusted = (f", Holm-adjusted {p_adj:.3g} over {family} comparisons" if family > 1 else "") + (
        f", decided at α = {alpha:.3g}" if alpha != ALPHA else "")
    lines = [describe(d, xa, xb, names, metric, higher_is_better) + f", p {p:.3g}{adjusted}; {expected}"]
    floor = [f"seed-to-seed sd {names[0]} {sd_a:.4f}, {names[1]} {sd_b:.4f}, of the "
             f"{'paired differences' if d.paired else 'difference of two runs'} {sd_diff:.4f}"]
    if images and accuracy is not None and metric in ACCURACY_METRICS:
        s |= {"binomial_se": stats.binomial_se(accuracy, images), "images": images,
              "images_needed": stats.images_needed(accuracy, min_effect) if min_effect else 0}
        floor.insert(0, f"test-set binomial SE ±{s['binomial_se']:.4f} at accuracy {accuracy:.3f} on {images:,} images")
    if min_effect:
        floor.append(f"power at {len(xa)} seeds to detect {min_effect}: {s['power']:.0%}; 80% power needs "
                     f"{_seeds(s['seeds_needed'])}")
    lines.append("noise floor: " + "; ".join(floor))
    if note:
        lines.append(note)
    if word == "inconclusive":
        s["lacks"] = lacks(s, outcome, len(xa))
        lines.append("inconclusive — it lacks " + s["lacks"])
    return Verdict(word, "\n".join(lines), s)


def _seeds(n: int) -> str:
    return f"more than {n - 1:,} seeds" if n > 10_000 else f"{n:,} seeds"


def decide(rule: str, d: Difference, m: float, higher_is_better: bool = True) -> tuple[float, str | None]:
    """(p, outcome): the p-value of the test the verdict rests on, and the verdict it supports
    (None: no outcome, the difference is too small to matter either way). Every p is two-sided
    (one-sided tests doubled), so p < 0.05 says exactly that the 95% interval excludes the bound.

    - better: a beats b. p: the difference is 0; reproduced when a's gain is ≥ m, contradicted
      when its loss is ≥ m.
    - no_gain: a gains less than m over b. p: the gain is ≥ m (reproduced), or, when the
      estimated gain is ≥ m, the difference is 0 (contradicted).
    - same: |a - b| < m (equivalence, two one-sided tests); when the estimate lies outside ±m,
      p: the difference is inside ±m (contradicted)."""
    sign = 1 if higher_is_better else -1
    gain = sign * d.diff
    if rule == "better":
        return d.p_differs(0.0), "reproduced" if gain >= m else "contradicted" if gain <= -m else None
    if rule == "no_gain":
        if gain < m:
            return min(1.0, 2 * (d.p_below(m) if sign > 0 else d.p_above(-m))), "reproduced"
        return d.p_differs(0.0), "contradicted"
    if rule == "same":
        if abs(d.diff) < m:
            return min(1.0, 2 * max(d.p_above(-m), d.p_below(m))), "reproduced"
        return min(1.0, 2 * (d.p_above(m) if d.diff > 0 else d.p_below(-m))), "contradicted"
    raise ValueError(f"unknown comparison rule {rule!r}: expected one of {', '.join(RULES)}")


def lacks(s: dict, outcome: str | None, n: int) -> str:
    """What an inconclusive comparison lacks: effect, seeds, test images, or it fell to the correction."""
    missing = []
    if outcome is None:
        missing.append(f"effect: the measured difference, {s['gain']:+.4f}, is smaller than the minimum effect "
                       f"{s['min_effect']}")
    if s["min_effect"] and s["seeds_needed"] > n:
        missing.append(f"seeds: {_seeds(s['seeds_needed'])} for 80% power at the minimum effect (have {n})")
    if s.get("images_needed", 0) > s.get("images", 0):
        missing.append(f"test images: {s['images_needed']:,} for the test set's own noise to resolve "
                       f"{s['min_effect']} (have {s['images']:,})")
    if s["p"] < s["alpha"] <= s["p_holm"]:
        missing.append(f"significance after the multiple-comparison correction (p {s['p']:.3g}, Holm-adjusted "
                       f"{s['p_holm']:.3g})")
    return "; ".join(missing) or "precision: the interval still straddles the bound (more seeds would narrow it)"


def better(a, b, min_effect: float, **kw) -> Verdict:
    """The claim: arm a beats arm b by at least ``min_effect`` (see ``decide``)."""
    return compare("better", a, b, min_effect, **kw)


def no_gain(a, b, min_effect: float, **kw) -> Verdict:
    """The claim: arm a gains less than ``min_effect`` over arm b."""
    return compare("no_gain", a, b, min_effect, **kw)


def same(a, b, margin: float, **kw) -> Verdict:
    """The claim: arms a and b give the same result, within ±``margin`` (equivalence)."""
    return compare("same", a, b, margin, **kw)


def matches(values: dict[str, list[float]], targets: dict[str, float], tolerances: dict[str, float]) -> Verdict:
    """The claim: the lecture's printed numbers. Reproduced when every per-seed mean is within
    its tolerance of the printed value, contradicted otherwise."""
    parts, ok, s = [], True, {}
    for name, target in targets.items():
        xs = values.get(name, [])
        if not xs:
            return Verdict("inconclusive", f"no finished runs to compare with {name} {target}")
        m = mean(xs)
        inside = abs(m - target) <= tolerances[name]
        ok &= inside
        s[name] = m
        parts.append(f"{name} {m:.3f} ± {_sd(xs):.3f} vs printed {target} (tolerance ±{tolerances[name]}, "
                     f"{'within' if inside else 'outside'})")
    return Verdict("reproduced" if ok else "contradicted", "; ".join(parts), s)


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
