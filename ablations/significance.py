"""Statistics of the verdicts. Every arm of a claim runs the same seeds, and a seed fixes the
data order, the augmentation draws and the initial weights, so the per-seed differences are the
unit of analysis (``paired``); arms that cannot pair are compared with Welch's test (``welch``).

- ``Difference``: a mean difference and its sampling distribution — a t distribution below 10
  pairs, a seeded bootstrap-t (10,000 resamples) from 10 — from which come the 95%
  interval and the p-values every verdict rule uses, so the two always agree.
- ``prob_improvement``: P(A > B), the chance a run of one arm beats a run of the other.
- ``holm``: Holm–Bonferroni adjusted p-values for the comparisons judged together.
- ``binomial_se``: the test set's own sampling noise.
- ``paired_power``, ``tost_power``, ``seeds_needed``: power of a verdict rule as it is applied (a
  one-sided test against the minimum effect, or two of them for equivalence); seeds for 80% power.
- ``mean_sd``, ``t_interval``: the seed aggregates the reports print and log.
- ``looks``, ``alpha_per_look``: the sequential plan of ``--seeds auto``.

References: Bouthillier et al. 2021; Colas et al. 2018; Agarwal et al. 2021 (probability of
improvement)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev

import numpy as np
from scipy import stats

ALPHA = 0.05
BOOTSTRAP_FROM = 10  # pairs from which the interval is a bootstrap one
RESAMPLES = 10_000
FLAT_SE = 1e-9  # a difference's standard error at or below this is float rounding of equal values: no spread
MAX_DEGENERATE = 0.01  # share of zero-spread resamples above which ties dominate: the bootstrap-t is undefined
POWER = 0.8
Z_POWER = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)  # 2.80: a z-test's 80% power at alpha 0.05


@dataclass(frozen=True, eq=False)
class Difference:
    """mean(a - b) and its sampling distribution: (diff - true) / se follows t(df), or the
    bootstrap's studentized resamples ``boot`` (bootstrap-t: Efron & Tibshirani 1993, ch. 12,
    whose coverage at 10-20 pairs is close to nominal where the percentile bootstrap's is not)."""
    diff: float
    se: float
    df: float
    method: str
    paired: bool
    boot: np.ndarray | None = None

    def p_above(self, c: float) -> float:
        """One-sided p of 'the true difference is at most c' (small: the difference is surely above c)."""
        if self.se == 0:
            return 0.0 if self.diff > c else 1.0
        if self.boot is not None:
            return float((np.sum(self.boot >= (self.diff - c) / self.se) + 1) / (len(self.boot) + 1))
        return float(stats.t.sf((self.diff - c) / self.se, self.df))

    def p_below(self, c: float) -> float:
        """One-sided p of 'the true difference is at least c'."""
        if self.se == 0:
            return 0.0 if self.diff < c else 1.0
        if self.boot is not None:
            return float((np.sum(self.boot <= (self.diff - c) / self.se) + 1) / (len(self.boot) + 1))
        return float(stats.t.cdf((self.diff - c) / self.se, self.df))

    def p_differs(self, c: float = 0.0) -> float:
        """Two-sided p of 'the true difference is c'."""
        return min(1.0, 2 * min(self.p_above(c), self.p_below(c)))

    def interval(self, alpha: float = ALPHA) -> tuple[float, float]:
        if self.se == 0:
            return self.diff, self.diff
        if self.boot is not None:
            t_low, t_high = np.quantile(self.boot, [alpha / 2, 1 - alpha / 2])
            return self.diff - float(t_high) * self.se, self.diff - float(t_low) * self.se
        half = stats.t.ppf(1 - alpha / 2, self.df) * self.se
        return self.diff - half, self.diff + half


def paired(a: list[float], b: list[float], *, seed: int = 0) -> Difference:
    """a[i] - b[i] per seed i: a t distribution with n - 1 df below 10 pairs, else a seeded
    bootstrap-t of the mean difference (studentized resamples). Where ties dominate (more than 1%
    of the resamples have no spread, e.g. runs stuck at chance beside runs that learn), the
    studentized statistic is undefined and the t distribution is used; the method says so."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired analysis needs the same seeds in both arms, at least 2 (have {len(a)} and {len(b)})")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n, sd = len(d), float(np.std(d, ddof=1))
    m, se = float(d.mean()), sd / math.sqrt(n)
    if sd == 0 or n < BOOTSTRAP_FROM:
        return Difference(m, se, n - 1, "paired t", True)
    resampled = d[np.random.default_rng(seed).integers(0, n, size=(RESAMPLES, n))]
    spread = resampled.std(axis=1, ddof=1)
    degenerate = spread <= 1e-12 * max(1.0, float(np.abs(d).max()))  # equal values (up to float rounding)
    if degenerate.mean() > MAX_DEGENERATE:
        return Difference(m, se, n - 1, f"paired t (ties: {degenerate.mean():.0%} of bootstrap resamples have no "
                                        "spread)", True)
    t = (resampled.mean(axis=1)[~degenerate] - m) / (spread[~degenerate] / math.sqrt(n))
    return Difference(m, se, n - 1, f"paired bootstrap-t ({RESAMPLES:,} resamples, seed {seed})", True, np.sort(t))


def t_half_width(xs: list[float], alpha: float = ALPHA) -> float:
    """Half the width of the (1 - alpha) t interval of the mean of ``xs`` (inf for one value)."""
    if len(xs) < 2:
        return math.inf
    return float(stats.t.ppf(1 - alpha / 2, len(xs) - 1)) * stdev(xs) / math.sqrt(len(xs))


def welch(a: list[float], b: list[float]) -> Difference:
    """mean(a) - mean(b) of independent arms: Welch's t (Welch–Satterthwaite df)."""
    va, vb = (stdev(x) ** 2 if len(x) > 1 else 0.0 for x in (a, b))
    se = math.sqrt(va / len(a) + vb / len(b))
    df = se**4 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1)) if se else 1.0
    return Difference(mean(a) - mean(b), se, df, "Welch t", False)


def prob_improvement(a: list[float], b: list[float]) -> float:
    """P(A > B): the chance that a run of arm a beats a run of arm b (ties count half), over all
    pairs of runs — the Mann–Whitney U statistic divided by n_a * n_b."""
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


def holm(pvalues: dict) -> dict:
    """Holm–Bonferroni adjusted p-values (step-down; monotone; at most 1): reject H_i at family-wise
    level alpha when its adjusted p < alpha."""
    p = {name: 1.0 if math.isnan(v) else v for name, v in pvalues.items()}  # no p: nothing to reject
    order = sorted(p, key=p.get)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[name]))
        adjusted[name] = running
    return adjusted


def binomial_se(accuracy: float, images: int) -> float:
    """Standard error of an accuracy measured on ``images`` test images (each right or wrong)."""
    return math.sqrt(accuracy * (1 - accuracy) / images)


def paired_power(n: int, effect: float, sd_diff: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n seeds to detect a true mean difference ``effect``."""
    if sd_diff == 0:
        return 1.0
    df, nc = n - 1, abs(effect) / (sd_diff / math.sqrt(n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    if nc - crit > 8:  # power is 1 to double precision (scipy's nct returns nan out there)
        return 1.0
    upper, lower = float(stats.nct.sf(crit, df, nc)), float(stats.nct.cdf(-crit, df, nc))
    return min(1.0, upper + (lower if math.isfinite(lower) else 0.0))  # the lower tail: negligible where nan


def tost_power(n: int, margin: float, sd_diff: float, alpha: float = ALPHA) -> float:
    """Power of two one-sided paired t-tests (each at alpha / 2, as the ``same`` rule doubles its
    p) to show |difference| < ``margin`` when the true difference is 0: 1 - 2 P(one test fails),
    a lower bound (Bonferroni over the two tests; exact as power nears 1)."""
    if sd_diff == 0:
        return 1.0
    df, nc = n - 1, margin / (sd_diff / math.sqrt(n))
    return max(0.0, 1.0 - 2 * float(stats.nct.cdf(stats.t.ppf(1 - alpha / 2, df), df, nc)))


def seeds_needed(effect: float, sd_diff: float, power: float = POWER, alpha: float = ALPHA, limit: int = 10_000,
                 test=None) -> int:
    """The fewest seeds (>= 2) at which a rule's ``test(n, effect, sd_diff, alpha)`` (its power as it
    is applied; default ``paired_power``: better and no_gain) reaches ``power``; ``limit`` + 1 when
    even ``limit`` seeds do not."""
    test = test or paired_power
    if sd_diff == 0:
        return 2
    n = max(2, math.floor(min((Z_POWER * sd_diff / effect) ** 2, limit + 1)))  # the z-test's n: a lower bound
    while n <= limit and test(n, effect, sd_diff, alpha) < power:
        n += 1
    return n


def mean_sd(xs: list[float]) -> tuple[float, float]:
    """Mean and sample sd of the finite values of xs (sd 0 for one value; nan for none)."""
    xs = [x for x in xs if not math.isnan(x)]
    return (mean(xs), stdev(xs) if len(xs) > 1 else 0.0) if xs else (math.nan, math.nan)


def t_interval(xs: list[float]) -> tuple[float, float]:
    """95% t interval of the mean of xs (nan below 2 values)."""
    if len(xs) < 2:
        return math.nan, math.nan
    half = t_half_width(xs)
    return mean(xs) - half, mean(xs) + half


def looks(max_seeds: int, first: int = 3, step: int = 2) -> list[int]:
    """The seed counts at which ``--seeds auto:MAX`` looks at the data: first, first + step, ... MAX."""
    counts = list(range(first, max_seeds + 1, step))
    return counts if counts and counts[-1] == max_seeds else counts + [max_seeds]


def alpha_per_look(alpha: float, n_looks: int) -> float:
    """Bonferroni alpha spending: each of the planned looks tests at alpha / looks, so stopping at
    the first significant look keeps the false-positive rate at most alpha (conservative, and
    valid whatever the dependence between looks)."""
    return alpha / n_looks
