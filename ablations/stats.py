"""Statistics for paired-seed verdicts (issue 12, groundwork): every arm of a claim runs the same
seeds, and a seed fixes the data order, the augmentation draws and the initial weights, so the
per-seed differences are the unit of analysis.

- ``paired``: mean difference with a t interval (n < 10) or a seeded percentile bootstrap
  (n >= 10, 10,000 resamples), the paired t-test's p, and P(A > B).
- ``holm``: Holm–Bonferroni adjusted p-values for the comparisons judged together.
- ``binomial_se``: the test set's own sampling noise at an accuracy.
- ``seeds_needed``: seeds for 80% power to detect a minimum effect, given the seed-to-seed sd.

References: Bouthillier et al. 2021; Colas et al. 2018; Agarwal et al. 2021 (probability of
improvement)."""

from __future__ import annotations

import math
from statistics import mean, stdev

import numpy as np
from scipy import stats

ALPHA = 0.05
BOOTSTRAP_FROM = 10  # seeds from which the interval is a bootstrap one
RESAMPLES = 10_000


def prob_improvement(a: list[float], b: list[float]) -> float:
    """P(A > B): the chance that a run of arm a beats a run of arm b (ties count half), over all
    pairs of runs — the Mann–Whitney U statistic divided by n_a * n_b."""
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


def paired(a: list[float], b: list[float], *, alpha: float = ALPHA, seed: int = 0) -> dict:
    """a[i] - b[i] per seed i: mean, sd, the (1 - alpha) interval, the paired t-test's p and P(A > B)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired analysis needs the same seeds in both arms, at least 2 (have {len(a)} and {len(b)})")
    d = [x - y for x, y in zip(a, b)]
    n, m, sd = len(d), mean(d), stdev(d)
    if sd == 0:
        p, low, high, method = (0.0 if m else 1.0), m, m, "exact (identical differences)"
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
        if n < BOOTSTRAP_FROM:
            half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n)
            low, high, method = m - half, m + half, "paired t"
        else:
            rng = np.random.default_rng(seed)
            means = np.asarray(d)[rng.integers(0, n, size=(RESAMPLES, n))].mean(axis=1)
            low, high = (float(q) for q in np.quantile(means, [alpha / 2, 1 - alpha / 2]))
            method = f"bootstrap ({RESAMPLES:,} resamples, seed {seed})"
    return {"diff": m, "sd_diff": sd, "n": n, "ci_low": low, "ci_high": high, "p": p, "method": method,
            "p_improvement": prob_improvement(a, b)}


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values (step-down; monotone; at most 1): reject H_i at family-wise
    level alpha when its adjusted p < alpha."""
    order = sorted(pvalues, key=pvalues.get)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def binomial_se(accuracy: float, images: int) -> float:
    """Standard error of an accuracy measured on ``images`` test images (each right or wrong)."""
    return math.sqrt(accuracy * (1 - accuracy) / images)


def paired_power(n: int, effect: float, sd_diff: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n seeds to detect a true mean difference ``effect``."""
    df, nc = n - 1, effect / (sd_diff / math.sqrt(n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(effect: float, sd_diff: float, power: float = 0.8, alpha: float = ALPHA, limit: int = 10_000) -> int:
    """The fewest seeds (>= 2) whose paired t-test reaches ``power`` for ``effect``; ``limit`` + 1
    when even ``limit`` seeds do not."""
    if sd_diff == 0:
        return 2
    for n in range(2, limit + 1):
        if paired_power(n, effect, sd_diff, alpha) >= power:
            return n
    return limit + 1


def looks(max_seeds: int, first: int = 3, step: int = 2) -> list[int]:
    """The seed counts at which ``--seeds auto:MAX`` looks at the data: first, first + step, ... MAX."""
    counts = list(range(first, max_seeds + 1, step))
    return counts if counts and counts[-1] == max_seeds else counts + [max_seeds]


def alpha_per_look(alpha: float, n_looks: int) -> float:
    """Bonferroni alpha spending: each of the planned looks tests at alpha / looks, so stopping at
    the first significant look keeps the false-positive rate at most alpha (conservative, and
    valid whatever the dependence between looks)."""
    return alpha / n_looks
