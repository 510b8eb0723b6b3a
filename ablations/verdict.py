"""Verdict rules: per-seed values in, *reproduced* / *contradicted* / *inconclusive* out.

Every rule returns its evidence (means, stds, effect, test) next to the word, so a
reader can check the verdict against the numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import mean, stdev

from scipy import stats

ALPHA = 0.05  # two-sided significance level of Welch's t-test across seeds


@dataclass(frozen=True)
class Verdict:
    verdict: str  # reproduced | contradicted | inconclusive
    evidence: str
    stats: dict = field(default_factory=dict)


def _sd(xs) -> float:
    return stdev(xs) if len(xs) > 1 else 0.0


def welch(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b) with Welch's t-test, 95% interval and Cohen's d (pooled sd)."""
    diff = mean(a) - mean(b)
    va, vb = _sd(a) ** 2, _sd(b) ** 2
    se = math.sqrt(va / len(a) + vb / len(b))
    if se == 0:  # identical seeds in both arms: the difference is exact
        p, half = (0.0 if diff else 1.0), 0.0
    else:
        df = se**4 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
        p = 2 * stats.t.sf(abs(diff) / se, df)
        half = stats.t.ppf(1 - ALPHA / 2, df) * se
    pooled = math.sqrt((va + vb) / 2)
    return {"diff": diff, "p": p, "ci_low": diff - half, "ci_high": diff + half,
            "cohens_d": diff / pooled if pooled else math.copysign(math.inf, diff) if diff else 0.0,
            "mean_a": mean(a), "sd_a": _sd(a), "mean_b": mean(b), "sd_b": _sd(b), "n_a": len(a), "n_b": len(b)}


def describe(s: dict, names: tuple[str, str], metric: str) -> str:
    return (f"{metric}: {names[0]} {s['mean_a']:.4f} ± {s['sd_a']:.4f} (n={s['n_a']}) vs {names[1]} "
            f"{s['mean_b']:.4f} ± {s['sd_b']:.4f} (n={s['n_b']}); difference {s['diff']:+.4f} "
            f"[95% CI {s['ci_low']:+.4f}, {s['ci_high']:+.4f}], d={s['cohens_d']:.2f}, Welch p={s['p']:.3g}")


def _enough(a, b) -> bool:
    return len(a) >= 2 and len(b) >= 2


def better(a: list[float], b: list[float], min_effect: float, *, higher_is_better: bool = True,
           names=("a", "b"), metric="value") -> Verdict:
    """The claim: arm a beats arm b. Reproduced when a is better by at least ``min_effect``
    and Welch's test is significant; contradicted when b is, by the same standard."""
    if not _enough(a, b):
        return Verdict("inconclusive", f"{metric}: needs at least 2 seeds per arm (have {len(a)} and {len(b)})")
    s = welch(a, b)
    gain = s["diff"] if higher_is_better else -s["diff"]
    s["gain"] = gain
    if s["p"] < ALPHA and gain >= min_effect:
        word = "reproduced"
    elif s["p"] < ALPHA and gain <= -min_effect:
        word = "contradicted"
    else:
        word = "inconclusive"
    direction = "higher" if higher_is_better else "lower"
    return Verdict(word, describe(s, names, metric) + f"; expected {names[0]} {direction} by ≥ {min_effect}", s)


def no_gain(a: list[float], b: list[float], min_effect: float, *, names=("a", "b"), metric="value") -> Verdict:
    """The claim: arm a adds nothing over arm b. Reproduced when the 95% interval of
    a - b lies below ``min_effect``; contradicted when a is significantly better by at
    least ``min_effect``."""
    if not _enough(a, b):
        return Verdict("inconclusive", f"{metric}: needs at least 2 seeds per arm (have {len(a)} and {len(b)})")
    s = welch(a, b)
    if s["ci_high"] < min_effect:
        word = "reproduced"
    elif s["p"] < ALPHA and s["diff"] >= min_effect:
        word = "contradicted"
    else:
        word = "inconclusive"
    return Verdict(word, describe(s, names, metric) + f"; claim holds if {names[0]} gains < {min_effect}", s)


def same(a: list[float], b: list[float], margin: float, *, names=("a", "b"), metric="value") -> Verdict:
    """The claim: arms a and b give the same result (equivalence). Reproduced when the 95% interval
    of a - b lies inside ±``margin``; contradicted when it lies wholly outside; else inconclusive."""
    if not _enough(a, b):
        return Verdict("inconclusive", f"{metric}: needs at least 2 seeds per arm (have {len(a)} and {len(b)})")
    s = welch(a, b)
    if -margin < s["ci_low"] and s["ci_high"] < margin:
        word = "reproduced"
    elif s["ci_low"] >= margin or s["ci_high"] <= -margin:
        word = "contradicted"
    else:
        word = "inconclusive"
    return Verdict(word, describe(s, names, metric) + f"; the same if the interval lies inside ±{margin}", s)


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
