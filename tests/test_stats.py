"""The paired-seed statistics against reference implementations and hand-checked cases."""

import math

import numpy as np
import pytest
from scipy import stats

from ablations.significance import (
    binomial_se,
    holm,
    paired,
    paired_power,
    prob_improvement,
    seeds_needed,
    welch,
)


def test_paired_t_interval_and_p_values_match_scipy():
    a, b = [0.55, 0.53, 0.58, 0.51], [0.50, 0.49, 0.55, 0.50]
    d = paired(a, b)
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert d.method == "paired t" and d.p_differs(0) == pytest.approx(ref.pvalue)
    assert d.interval() == pytest.approx((ci.low, ci.high))
    assert d.diff == pytest.approx(0.0325)
    # one-sided tests against a bound: scipy's one-sample t-test of the differences
    diffs = [x - y for x, y in zip(a, b)]
    assert d.p_below(0.05) == pytest.approx(stats.ttest_1samp(diffs, 0.05, alternative="less").pvalue)
    assert d.p_above(0.01) == pytest.approx(stats.ttest_1samp(diffs, 0.01, alternative="greater").pvalue)


def test_welch_matches_scipy_for_arms_that_cannot_pair():
    a, b = [0.81, 0.84, 0.80, 0.83], [0.79, 0.80, 0.78]
    d = welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert not d.paired and d.p_differs(0) == pytest.approx(ref.pvalue)
    assert d.interval() == pytest.approx(tuple(ref.confidence_interval(0.95)))


def test_pairing_removes_the_shared_seed_effect_that_welch_keeps():
    # seeds move both arms together (a large seed effect), arm a is always 0.01 better
    base = [0.50, 0.60, 0.55, 0.45, 0.58]
    a, b = [x + 0.01 for x in base], base
    assert paired(a, b).p_differs(0) < 1e-6 and paired(a, b).interval()[0] == pytest.approx(0.01)
    assert stats.ttest_ind(a, b, equal_var=False).pvalue > 0.5  # unpaired, the effect drowns


def test_interval_and_p_agree_at_twelve_seeds():
    rng = np.random.default_rng(1)
    a = list(0.8 + rng.normal(0, 0.01, 12))
    b = list(0.79 + rng.normal(0, 0.01, 12))
    d = paired(a, b)
    assert d.method == "paired t" and d.interval() == paired(a, b).interval()
    low, high = d.interval()
    assert low < d.diff < high
    # 0 lies outside the 95% interval exactly when p < 0.05
    assert (d.p_differs(0) < 0.05) == (not low <= 0 <= high)
    assert d.p_below(high + 0.001) < 0.025 < d.p_below(low)
    assert d.p_differs(0) == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_t_interval_covers_the_true_difference_at_its_nominal_rate():
    rng = np.random.default_rng(5)
    sims, n, covered = 400, 12, 0
    for _ in range(sims):
        a, b = rng.normal(0.01, 0.02, n), rng.normal(0.0, 0.01, n)
        low, high = paired(list(a), list(b)).interval()
        covered += low <= 0.01 <= high
    assert 0.92 <= covered / sims <= 0.98  # 95% nominal; 400 simulations: ±2.2 points of binomial noise


def test_the_spread_s_interval_and_the_seeds_it_leaves_open():
    from ablations.significance import sd_interval, seeds_needed_range

    low, high = sd_interval(0.0217, 3)  # relu's spread at 3 seeds: from 0.011 to 0.136
    assert low == pytest.approx(0.0217 * math.sqrt(2 / stats.chi2.ppf(0.975, 2)))
    assert high == pytest.approx(0.0217 * math.sqrt(2 / stats.chi2.ppf(0.025, 2))) and high / low > 10
    fewest, most = seeds_needed_range(0.005, 0.0179, 5, alpha=0.005)  # dropout's review case: 176 at the point
    assert fewest < seeds_needed(0.005, 0.0179, alpha=0.005) < most


def test_probability_of_improvement_is_mann_whitney_u_over_pairs():
    a, b = [3, 5, 7, 7], [1, 7, 4]
    u = stats.mannwhitneyu(a, b).statistic
    assert prob_improvement(a, b) == pytest.approx(u / 12)
    assert prob_improvement([2, 3], [0, 1]) == 1 and prob_improvement([1], [1]) == 0.5


def test_holm_hand_checked():
    # sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06, monotone), 0.5 (x1 = 0.5)
    adj = holm({"a": 0.03, "b": 0.01, "c": 0.5, "d": 0.02})
    assert adj == pytest.approx({"b": 0.04, "d": 0.06, "a": 0.06, "c": 0.5})
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}


def test_noise_floor_of_the_test_set():
    assert binomial_se(0.88, 10_000) == pytest.approx(0.00325, abs=1e-5)  # about 0.3 points


def test_power_and_seeds_needed_match_the_textbook_case():
    # a paired t-test for a standardised effect of 0.5 needs 34 pairs for 80% power (G*Power, Cohen 1988)
    assert seeds_needed(0.5, 1.0) == 34
    assert paired_power(34, 0.5, 1.0) >= 0.8 > paired_power(33, 0.5, 1.0)
    assert seeds_needed(0.01, 0.0) == 2 and seeds_needed(1e-6, 1.0, limit=50) == 51


def test_unpaired_input_is_refused_by_name():
    with pytest.raises(ValueError, match="same seeds in both arms"):
        paired([0.1, 0.2, 0.3], [0.1, 0.2])


def test_sequential_looks_keep_the_false_positive_rate_on_null_data():
    from ablations.significance import alpha_per_look, looks

    plan = looks(11)
    assert plan == [3, 5, 7, 9, 11]
    level = alpha_per_look(0.05, len(plan))
    rng = np.random.default_rng(0)
    suites, false_positives, naive = 2000, 0, 0
    for _ in range(suites):
        a, b = rng.normal(0.8, 0.02, plan[-1]), rng.normal(0.8, 0.02, plan[-1])  # no true effect
        ps = [paired(list(a[:n]), list(b[:n])).p_differs(0) for n in plan]
        false_positives += any(p < level for p in ps)
        naive += any(p < 0.05 for p in ps)  # peeking without correction
    assert false_positives / suites <= 0.05
    assert naive / suites > 0.08  # what the correction prevents


def _two_way(a, b):
    """The crossed seeds x images standard error and Welch-Satterthwaite df, written out in plain Python."""
    seeds, images = len(a), len(a[0])
    b_mean = sum(b) / images
    per_seed = [sum(row) / images - b_mean for row in a]
    per_image = [sum(row[i] for row in a) / seeds - b[i] for i in range(images)]

    def var(xs):
        m = sum(xs) / len(xs)
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    v_seed = var(per_seed) / seeds if seeds > 1 else 0.0
    v_image = var(per_image) / images
    se = math.sqrt(v_seed + v_image)
    denominator = (v_seed**2 / (seeds - 1) if seeds > 1 else 0.0) + v_image**2 / (images - 1)
    return sum(per_seed) / seeds, se, (se**4 / denominator if denominator else images - 1)


@pytest.mark.parametrize("seeds", [1, 2, 3])
def test_image_paired_standard_error_and_degrees_of_freedom_recomputed(seeds):
    """An SVM compared image by image: the seeds' and the images' parts of the variance, and
    Welch-Satterthwaite's df, against a plain-Python recomputation; one seed has no seed part."""
    from ablations.significance import image_paired

    rng = np.random.default_rng(seeds)
    a = (rng.random((seeds, 400)) < rng.uniform(0.6, 0.9, (seeds, 1))).astype(float)
    b = (rng.random(400) < 0.7).astype(float)
    d = image_paired(a, b)
    diff, se, df = _two_way(a.tolist(), b.tolist())
    assert (d.diff, d.se, d.df) == pytest.approx((diff, se, df), rel=1e-9) and math.isfinite(d.se) and d.paired
    assert d.method == (f"paired by seed and image, t ({seeds} seeds x 400 images: the seeds' and the images' "
                        "spread)")
    same = image_paired(np.ones((1, 50)), np.zeros(50))  # every image +1: no spread at all
    assert (same.diff, same.se, same.df) == (1.0, 0.0, 49.0)


def test_welch_at_two_runs_per_arm_matches_scipy():
    a, b = [0.81, 0.84], [0.79, 0.80, 0.78]
    d = welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert d.method == "Welch t" and d.p_differs(0) == pytest.approx(ref.pvalue)
    assert d.interval() == pytest.approx(tuple(ref.confidence_interval(0.95)))
