"""Statistics of the verdicts. Every arm of a claim runs the same seeds, and a seed fixes the
data order, the augmentation draws and the initial weights, so the per-seed differences are the
unit of analysis (``paired``); arms that cannot pair are compared with Welch's test (``welch``).

- ``Difference``: a mean difference and its t distribution, from which come the 95% interval
  and the p-values every verdict rule uses, so the two always agree.
- ``prob_improvement``: P(A > B), the chance a run of one arm beats a run of the other.
- ``holm``: Holm–Bonferroni adjusted p-values for the comparisons judged together.
- ``binomial_se``: the test set's own sampling noise.
- ``paired_power``, ``tost_power``, ``seeds_needed``: power of a verdict rule as it is applied (a
  one-sided test against the minimum effect, or two of them for equivalence); seeds for 80% power,
  as a range over the spread's own interval (``sd_interval``).
- ``prediction_half_width``: where one more run would fall ('matches': a printed single run).
- ``chance_ceiling``: the accuracy a net that learned nothing reaches, noise included.
- ``mean_sd``, ``t_interval``: the seed aggregates the reports print and log.
- ``looks``, ``alpha_per_look``: the sequential plan of ``--seeds auto``.

References: Bouthillier et al. 2021; Colas et al. 2018; Agarwal et al. 2021 (probability of
improvement)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev

import numpy as np
from scipy import integrate, stats

ALPHA = 0.05
FLAT_SE = 1e-9  # a difference's standard error at or below this is float rounding of equal values: no spread
POWER = 0.8
Z_POWER = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)  # 2.80: a z-test's 80% power at alpha 0.05


@dataclass(frozen=True)
class Difference:
    """mean(a - b) and its sampling distribution, (diff - true) / se ~ t(df), from which come the
    95% interval and the p-values every verdict rule uses, so the two always agree. A t interval at
    every n: on heavy-tailed differences (t with 3 df) the bootstrap-t covers 93% at 10 to 100
    pairs where the t interval keeps 95% (tests/test_rules.py simulates both)."""
    diff: float
    se: float
    df: float
    method: str
    paired: bool

    def p_above(self, c: float) -> float:
        """One-sided p of 'the true difference is at most c' (small: the difference is surely above c)."""
        if self.se == 0:
            return 0.0 if self.diff > c else 1.0
        return float(stats.t.sf((self.diff - c) / self.se, self.df))

    def p_below(self, c: float) -> float:
        """One-sided p of 'the true difference is at least c'."""
        if self.se == 0:
            return 0.0 if self.diff < c else 1.0
        return float(stats.t.cdf((self.diff - c) / self.se, self.df))

    def p_differs(self, c: float = 0.0) -> float:
        """Two-sided p of 'the true difference is c'."""
        return min(1.0, 2 * min(self.p_above(c), self.p_below(c)))

    def interval(self, alpha: float = ALPHA) -> tuple[float, float]:
        if self.se == 0:
            return self.diff, self.diff
        half = stats.t.ppf(1 - alpha / 2, self.df) * self.se
        return self.diff - half, self.diff + half


def paired(a: list[float], b: list[float]) -> Difference:
    """a[i] - b[i] per seed i: their mean, with a t distribution of n - 1 df."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired analysis needs the same seeds in both arms, at least 2 (have {len(a)} and {len(b)})")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    return Difference(float(d.mean()), float(np.std(d, ddof=1)) / math.sqrt(n), n - 1, "paired t", True)


def image_paired(a: np.ndarray, b: np.ndarray) -> Difference:
    """Accuracy of arm a minus that of arm b, scored on the same images: ``a`` one row of 0/1
    outcomes per seed, ``b`` the outcomes of a deterministic arm (one fit, the same on every seed:
    an SVM). The test images are a sample too, so the standard error has two parts: the seeds'
    spread of a's accuracy, and the images' spread of (a's mean outcome - b's), each over its count
    (a two-way crossed design; both parts hold the interaction once, so it errs on the wide side).
    t with Welch–Satterthwaite degrees of freedom."""
    seeds, images = a.shape
    per_seed = a.mean(axis=1) - b.mean()
    per_image = a.mean(axis=0) - b
    v_seed = per_seed.var(ddof=1) / seeds if seeds > 1 else 0.0
    v_image = per_image.var(ddof=1) / images
    se = math.sqrt(v_seed + v_image)
    parts = (v_seed**2 / (seeds - 1) if seeds > 1 else 0.0) + v_image**2 / (images - 1)
    df = se**4 / parts if parts else images - 1.0
    return Difference(float(per_seed.mean()), se, df, f"paired by seed and image, t ({seeds} seeds x {images:,} "
                      "images: the seeds' and the images' spread)", True)


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
    p) to show |difference| < ``margin`` when the true difference is 0, exactly for normal
    differences: the mean and the sd of n normal values are independent, so power is the mean over
    the sd's distribution (s^2 (n-1) / sigma^2 ~ chi2(n-1)) of P(|mean| < margin - t s / sqrt(n))."""
    if sd_diff == 0:
        return 1.0
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    reach = math.sqrt(n) * margin / sd_diff  # the margin in standard errors of the mean at the true sd

    def given(q: float) -> float:  # q: the chi2(df) value of the sample's variance
        return max(0.0, 2 * float(stats.norm.cdf(reach - crit * math.sqrt(q / df))) - 1)

    # over the chi2's mass (outside it: below 1e-10), and below the q at which the interval is wider than
    # the margin (no power beyond it)
    low = float(stats.chi2.ppf(1e-10, df))
    high = min(df * (reach / crit) ** 2, float(stats.chi2.ppf(1 - 1e-10, df)))
    if high <= low:
        return 0.0
    power, _ = integrate.quad(lambda q: given(q) * stats.chi2.pdf(q, df), low, high, limit=200,
                              points=[df] if low < df < high else None)
    return min(1.0, max(0.0, power))


def sd_interval(sd: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` interval of a normal sample's true sd from its sample sd over n values
    (chi-squared with n - 1 degrees of freedom): from 3 seeds it spans more than a factor of 10."""
    df = n - 1
    return (sd * math.sqrt(df / stats.chi2.ppf(1 - (1 - level) / 2, df)),
            sd * math.sqrt(df / stats.chi2.ppf((1 - level) / 2, df)))


def seeds_needed(effect: float, sd_diff: float, power: float = POWER, alpha: float = ALPHA, limit: int = 10_000,
                 test=None) -> int:
    """The fewest seeds (>= 2) at which a rule's ``test(n, effect, sd_diff, alpha)`` (its power as it
    is applied; default ``paired_power``: better and no_gain) reaches ``power``; ``limit`` + 1 when
    even ``limit`` seeds do not. Power grows with n: a bisection."""
    test = test or paired_power
    if sd_diff == 0 or test(2, effect, sd_diff, alpha) >= power:
        return 2
    if test(limit, effect, sd_diff, alpha) < power:
        return limit + 1
    low, high = 2, limit  # power(low) < target <= power(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if test(mid, effect, sd_diff, alpha) < power else (low, mid)
    return high


def seeds_needed_range(effect: float, sd_diff: float, n: int, alpha: float = ALPHA, test=None) -> tuple[int, int]:
    """Seeds for 80% power at the low and the high end of the 95% interval of the true spread:
    what a handful of seeds can say about the seeds a decision needs."""
    low, high = sd_interval(sd_diff, n)
    return (seeds_needed(effect, low, alpha=alpha, test=test), seeds_needed(effect, high, alpha=alpha, test=test))


def prediction_half_width(xs: list[float], alpha: float = ALPHA) -> float:
    """Half the width of the (1 - alpha) prediction interval of one more value drawn as ``xs`` were
    (a single printed run, say): t(n-1) * sd * sqrt(1 + 1/n); inf for one value."""
    if len(xs) < 2:
        return math.inf
    return float(stats.t.ppf(1 - alpha / 2, len(xs) - 1)) * stdev(xs) * math.sqrt(1 + 1 / len(xs))


def chance_ceiling(images: int, classes: int = 10, z: float = 3.0) -> float:
    """The highest accuracy a classifier that learned nothing reaches on ``images`` balanced test
    images, but for ``z`` binomial standard errors of noise (one in 700 at z = 3): above it, it learned."""
    chance = 1 / classes
    return chance + z * binomial_se(chance, images)


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
