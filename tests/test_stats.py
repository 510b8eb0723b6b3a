"""The paired-seed statistics against reference implementations and hand-checked cases."""

import math

import numpy as np
import pytest
from scipy import stats

from ablations.stats.significance import (
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
    from ablations.stats.significance import sd_interval, seeds_needed_range

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
    from ablations.stats.significance import alpha_per_look, looks

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
    from ablations.stats.significance import image_paired

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


@pytest.mark.parametrize("xs", [[0.80, 0.83], [0.80, 0.83, 0.81], [0.7, 0.75, 0.72, 0.71, 0.74]])
def test_the_mean_s_interval_and_one_more_run_s_match_scipy(xs):
    from ablations.stats.significance import prediction_half_width, t_half_width, t_interval

    n, m, s = len(xs), np.mean(xs), np.std(xs, ddof=1)
    low, high = stats.t.interval(0.95, n - 1, loc=m, scale=stats.sem(xs))
    assert t_interval(xs) == pytest.approx((low, high)) and t_half_width(xs) == pytest.approx(high - m)
    assert t_half_width(xs, alpha=0.2) == pytest.approx(stats.t.interval(0.8, n - 1, scale=stats.sem(xs))[1])
    # one more draw: (x - mean) / (s sqrt(1 + 1/n)) ~ t(n - 1)
    assert prediction_half_width(xs) == pytest.approx(stats.t.interval(0.95, n - 1, scale=s * math.sqrt(1 + 1 / n))[1])
    for f in (prediction_half_width, t_half_width):
        assert f(xs[:1]) == math.inf
    assert all(math.isnan(x) for x in t_interval(xs[:1]))


def test_a_prediction_interval_covers_one_more_run_95_percent_of_the_time():
    from ablations.stats.significance import prediction_half_width

    rng = np.random.default_rng(7)
    samples = rng.normal(0, 1, (5_000, 4))  # three runs and one more
    half = np.array([prediction_half_width(list(row[:3])) for row in samples])
    covered = np.abs(samples[:, 3] - samples[:, :3].mean(axis=1)) < half
    assert covered.mean() == pytest.approx(0.95, abs=0.012)  # 4 standard errors of 5,000 draws


def test_mean_and_sd_skip_missing_values_and_chance_s_ceiling_is_three_binomial_errors_above_a_tenth():
    from ablations.stats.significance import chance_ceiling, mean_sd

    assert mean_sd([0.5, math.nan, 0.7]) == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1)))
    assert mean_sd([0.5]) == (0.5, 0.0) and all(math.isnan(x) for x in mean_sd([math.nan]) + mean_sd([]))
    assert chance_ceiling(1000) == pytest.approx(0.1 + 3 * math.sqrt(0.1 * 0.9 / 1000))
    assert chance_ceiling(400, classes=2, z=2) == pytest.approx(0.5 + 2 * 0.025)


def test_looks_run_from_the_first_by_step_and_always_end_at_the_maximum():
    from ablations.stats.significance import looks

    assert looks(10) == [3, 5, 7, 9, 10] and looks(9) == [3, 5, 7, 9] and looks(3) == [3]
    assert looks(2) == [2] and looks(8, first=2, step=3) == [2, 5, 8] and looks(7, first=2, step=3) == [2, 5, 7]


@pytest.mark.parametrize("n, effect", [(3, 0.02), (5, 0.01), (8, 0.005), (4, -0.02)])
def test_paired_power_is_the_simulated_rejection_rate_of_the_two_sided_t_test(n, effect):
    rng = np.random.default_rng(n)
    d = rng.normal(effect, 0.01, (200_000, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    rate = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    assert paired_power(n, effect, 0.01) == pytest.approx(rate, abs=4 * math.sqrt(rate * (1 - rate) / 200_000))
    assert paired_power(n, effect, 0.0) == 1.0 and paired_power(1000, 1.0, 0.01) == 1.0  # far past the nan zone


def test_seeds_needed_is_the_first_count_the_power_reaches_the_target_at():
    calls = []

    def power(n, effect, sd, alpha):  # a stand-in power curve, exact in floats: n / 10
        calls.append((n, effect, sd, alpha))
        return n / 10

    assert seeds_needed(0.3, 0.2, alpha=0.01, test=power) == 8 and all(c[1:] == (0.3, 0.2, 0.01) for c in calls)
    assert seeds_needed(0.3, 0.2, power=0.2, test=power) == 2  # reached at 2, exactly: the fewest seeds there are
    assert seeds_needed(0.3, 0.2, power=0.3, test=power) == 3  # one more than the fewest
    assert seeds_needed(0.3, 0.2, power=0.5, test=power) == 5  # exactly at the target counts
    assert seeds_needed(0.3, 0.2, power=1.4, limit=13, test=power) == 14  # not reached by the limit: limit + 1
    assert seeds_needed(0.3, 0.2, power=1.3, limit=13, test=power) == 13  # reached at the limit exactly
    assert seeds_needed(1e-6, 1.0) == 10_001  # the default limit: 10,000 seeds


def test_the_seeds_range_is_the_seeds_needed_at_both_ends_of_the_spread_s_interval():
    from ablations.stats.significance import sd_interval, seeds_needed_range, tost_power

    low, high = sd_interval(0.01, 4)
    assert seeds_needed_range(0.01, 0.01, 4, alpha=0.01, test=tost_power) == (
        seeds_needed(0.01, low, alpha=0.01, test=tost_power), seeds_needed(0.01, high, alpha=0.01, test=tost_power))
    assert seeds_needed_range(0.01, 0.01, 4) == (seeds_needed(0.01, low), seeds_needed(0.01, high))


def test_a_zero_spread_difference_is_certain_and_its_interval_a_point():
    from ablations.stats.significance import Difference, holm, tost_power

    d = Difference(0.1, 0.0, 2, "paired t", True)
    assert (d.p_above(0.05), d.p_above(0.1), d.p_below(0.2), d.p_below(0.1)) == (0.0, 1.0, 0.0, 1.0)
    assert d.interval() == (0.1, 0.1) and d.p_differs(0.1) == 1.0
    wide = Difference(0.1, 1.0, 4, "paired t", True)
    assert wide.interval() == pytest.approx((0.1 - stats.t.ppf(0.975, 4), 0.1 + stats.t.ppf(0.975, 4)))
    assert holm({"a": math.nan, "b": 0.01}) == {"b": 0.02, "a": 1.0}
    assert tost_power(3, 1e-9, 0.01) == 0.0  # a margin far inside the noise: no power (nothing to integrate)


def test_paired_power_where_scipy_s_lower_tail_is_nan_is_the_upper_tail_alone():
    n, effect, sd = 2, 0.01378, 0.001  # nc 19.5, crit 12.7: scipy's nct.cdf gives nan, its sf does not
    nc, crit = effect / (sd / math.sqrt(n)), stats.t.ppf(0.975, n - 1)
    assert math.isnan(stats.nct.cdf(-crit, n - 1, nc))
    assert paired_power(n, effect, sd) == pytest.approx(stats.nct.sf(crit, n - 1, nc))
    assert paired_power(n, effect, sd) < 0.9  # not pushed to 1 by the missing tail


def test_paired_power_at_no_effect_is_alpha_from_both_tails():
    assert paired_power(5, 0.0, 0.01) == pytest.approx(0.05) and paired_power(5, 0.0, 0.01, alpha=0.2) == (
        pytest.approx(0.2))
