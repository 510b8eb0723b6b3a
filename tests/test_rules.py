"""The verdict rules mean what they say: each decision recomputed independently with scipy, the
rules' error rates and power checked by simulation at the seed counts and the α the reports use,
and the edge cases (ties, no spread) that broke them before (issues 23 and 45). Each simulation
runs in seconds, with a tolerance that fails on the numbers the reviews found."""

import math

import numpy as np
import pytest
from scipy import stats

from ablations.stats import decision as V
from ablations.stats.ladder import attribute, interactions
from ablations.stats.significance import paired, paired_power, seeds_needed, tost_power
from ablations.verdicts.rules import RULES
from conftest import ladder_arms


def _scipy_p(rule: str, d: np.ndarray, m: float, sign: int) -> tuple[float, str]:
    """The rule's (p, outcome) from scipy's one-sample t-test on the per-seed gains (n < 10)."""
    g = sign * d  # gains
    def greater(c): return stats.ttest_1samp(g - c, 0.0, alternative="greater").pvalue
    def less(c): return stats.ttest_1samp(g - c, 0.0, alternative="less").pvalue
    if rule == "better":
        return (min(1, 2 * greater(m)), "reproduced") if g.mean() > m else (min(1, 2 * less(m)), "contradicted")
    return (min(1, 2 * less(m)), "reproduced") if g.mean() < m else (min(1, 2 * greater(m)), "contradicted")


@pytest.mark.parametrize("rule", ["better", "no_gain"])
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_each_rule_p_and_decision_match_scipy_on_random_cases(rule, higher_is_better):
    rng = np.random.default_rng(23)
    sign = 1 if higher_is_better else -1
    decided = set()
    for _ in range(60):
        n, m = int(rng.integers(3, 9)), 0.01
        b = rng.uniform(0.5, 0.9, n)
        a = b + rng.normal(rng.uniform(-0.04, 0.04), rng.uniform(0.002, 0.02), n)
        v = V.compare(RULES[rule].test, dict(enumerate(a)), dict(enumerate(b)), m, higher_is_better=higher_is_better)
        p, outcome = _scipy_p(rule, a - b, m, sign)
        assert v.stats["p"] == pytest.approx(p, rel=1e-6, abs=1e-12)
        assert v.outcome == (outcome if p < 0.05 else "inconclusive")
        decided.add(v.outcome)
    assert decided == {"reproduced", "contradicted", "inconclusive"}  # every branch was exercised


def test_same_rule_is_two_one_sided_tests_against_the_margin():
    rng = np.random.default_rng(4)
    for _ in range(40):
        n, m = int(rng.integers(3, 9)), 0.01
        b = rng.uniform(0.5, 0.9, n)
        d = rng.normal(rng.uniform(-0.02, 0.02), 0.005, n)
        v = V.compare_same(dict(enumerate(b + d)), dict(enumerate(b)), m)
        if abs(d.mean()) < m:
            p = 2 * max(stats.ttest_1samp(d + m, 0, alternative="greater").pvalue,
                        stats.ttest_1samp(d - m, 0, alternative="less").pvalue)
        else:
            p = 2 * stats.ttest_1samp(d - math.copysign(m, d.mean()), 0,
                                      alternative="greater" if d.mean() > 0 else "less").pvalue
        assert v.stats["p"] == pytest.approx(min(1, p), rel=1e-6, abs=1e-12)


def _bootstrap_t(d: np.ndarray, rng, resamples: int = 2000) -> tuple[float, float]:
    """The studentized bootstrap's 95% interval of the mean of d (the method the suite no longer uses)."""
    n, m, se = len(d), d.mean(), d.std(ddof=1) / math.sqrt(len(d))
    draws = d[rng.integers(0, n, size=(resamples, n))]
    spread = draws.std(axis=1, ddof=1)
    t = (draws.mean(axis=1)[spread > 0] - m) / (spread[spread > 0] / math.sqrt(n))
    low, high = np.quantile(t, [0.025, 0.975])
    return m - high * se, m - low * se


def test_the_t_interval_keeps_its_coverage_on_heavy_tailed_differences_where_the_bootstrap_t_does_not():
    """Per-seed differences with heavy tails (t, 3 df: one seed far off now and then): the paired t
    interval the suite uses covers at least 94% at 3 to 30 seeds; the bootstrap-t it used from 10
    seeds covered 92.9% at 10-12 (the review), and stays below 94% up to 100 pairs (measured:
    93.5% at 10, 92.9% at 30, 93.4% at 100, 2,000 suites each)."""
    rng = np.random.default_rng(45)
    for n in (3, 5, 10, 30):
        d = rng.standard_t(3, size=(1500, n))
        covered = np.mean([paired(list(x), [0.0] * n).interval()[0] <= 0 <= paired(list(x), [0.0] * n).interval()[1]
                           for x in d])
        assert covered >= 0.94, (n, covered)
    for n in (10, 30):
        boot = np.mean([lo <= 0 <= hi for lo, hi in (_bootstrap_t(x, rng) for x in rng.standard_t(3, size=(1500, n)))])
        assert boot < 0.945, (n, boot)  # 1,500 suites: binomial SE 0.6 points


def test_a_sample_of_ties_decides_no_more_often_than_alpha():
    # runs stuck at chance beside runs that learn: many differences are exactly 0, the t interval stays finite
    d = [0.0] * 7 + [0.30, 0.25, 0.35]
    diff = paired(d, [0.0] * 10)
    low, high = diff.interval()
    assert diff.method == "paired t" and math.isfinite(low) and math.isfinite(high)
    assert diff.p_differs() == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    # no true effect, half the runs at chance: 'better' decides (either way) in at most 5% of 1,000 suites,
    # up to the simulation's noise (SE 0.7%; the bootstrap-t with NaN bounds made 10.7%)
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(1000):
        a = np.where(rng.random(10) < 0.5, 0.1, rng.uniform(0.2, 0.6, 10))
        b = np.where(rng.random(10) < 0.5, 0.1, rng.uniform(0.2, 0.6, 10))
        hits += V.compare_better(dict(enumerate(a)), dict(enumerate(b)), 0.02).outcome == "reproduced"
    assert hits / 1000 <= 0.065


def _simulate(rule: str, n: int, true: float, m: float, sd: float, sims: int, seed: int,
              alpha: float = 0.05) -> dict[str, float]:
    """P(verdict) over ``sims`` suites of n seeds whose per-seed differences are N(true, sd), decided
    at ``alpha`` (the family's share: 0.05 / comparisons)."""
    rng = np.random.default_rng(seed)  # the rule's decision as compare() applies it, without its report
    words = [V.decide(RULES[rule].test, paired(list(0.7 + d), [0.7] * n), m, alpha=alpha)[0]
             for d in rng.normal(true, sd, size=(sims, n))]
    return {w: words.count(w) / sims for w in ("reproduced", "contradicted", "inconclusive")}


def test_better_settles_a_null_as_surely_as_an_effect_at_its_printed_power():
    """'better' at true gains 0, m and 2m. At 2m it reproduces with its printed power; at 0 it now
    contradicts with the same power (before, P(contradicted) was 0.2% at 5 seeds and 0 at 12: a claim
    with no effect stayed inconclusive whatever the seeds); at m, on the bound, it decides either way
    at most alpha / 2 each."""
    m, sd = 0.01, 0.006
    n = seeds_needed(m, sd)
    printed = paired_power(n, m, sd)
    assert 3 <= n <= 10 and printed >= 0.8
    at_2m = _simulate("better", n, 2 * m, m, sd, 1000, 0)
    at_0 = _simulate("better", n, 0.0, m, sd, 1000, 1)
    at_m = _simulate("better", n, m, m, sd, 1000, 2)
    assert abs(at_2m["reproduced"] - printed) < 0.04 and at_2m["contradicted"] == 0
    assert abs(at_0["contradicted"] - printed) < 0.04 and at_0["reproduced"] == 0
    assert at_m["reproduced"] <= 0.04 and at_m["contradicted"] <= 0.04
    # the dropout case of the review: a measured gain near 0 whose spread needs more seeds; a decisive null
    assert _simulate("better", 12, 0.0, 0.005, 0.004, 500, 3)["contradicted"] > 0.8


def test_no_gain_is_not_contradicted_when_the_gain_is_below_the_minimum_effect():
    for n in (9, 12):  # the review found 0.32-0.38 when 'contradicted' tested against 0
        assert _simulate("no_gain", n, 0.009, 0.01, 0.01, 500, n)["contradicted"] <= 0.03


def test_same_reproduces_with_its_printed_power_at_the_alpha_of_a_family():
    """The review's case: 'same' at 13 seeds in a family of 10 (α 0.005) printed 82% and delivered
    67%. The power is now exact for normal differences, at the α the family leaves."""
    assert seeds_needed(0.01, 0.01, test=tost_power) == 13 and seeds_needed(0.01, 0.01) == 10
    assert tost_power(10, 0.01, 0.01) < 0.7
    for n, alpha in ((13, 0.005), (8, 0.05)):
        printed = tost_power(n, 0.01, 0.006 if n == 8 else 0.01, alpha)
        found = _simulate("same", n, 0.0, 0.01, 0.006 if n == 8 else 0.01, 2000, n, alpha=alpha)["reproduced"]
        assert abs(found - printed) < 0.04, (n, alpha, printed, found)


def test_matches_contradicts_a_printed_run_from_its_own_distribution_at_most_5_percent():
    """A printed single run drawn from the seeds' own distribution (sd 0.015, tolerance 0.02) was
    contradicted 6.5% of the time at 10 seeds and 8.9% at 30 (the mean's interval shrinks, the
    printed run's own noise does not); the prediction interval keeps it at most 5% at any seeds."""
    rng = np.random.default_rng(9)
    for n in (5, 10, 30):
        contradicted = 0
        for _ in range(2000):
            runs, printed = rng.normal(0.88, 0.015, n), rng.normal(0.88, 0.015)
            contradicted += V.matches({"test_acc": list(runs)}, {"test_acc": printed},
                                      {"test_acc": 0.02}).outcome == "contradicted"
        assert contradicted / 2000 <= 0.05, (n, contradicted / 2000)  # 2,000 suites: SE 0.5 points
    far = V.matches({"test_acc": [0.70, 0.72, 0.71, 0.73, 0.69]}, {"test_acc": 0.883}, {"test_acc": 0.02})
    near = V.matches({"test_acc": [0.880, 0.885, 0.882, 0.884, 0.881]}, {"test_acc": 0.883}, {"test_acc": 0.02})
    assert far.outcome == "contradicted" and near.outcome == "reproduced"


def test_power_and_seeds_are_printed_only_where_undecided_as_a_range_at_the_alpha_the_family_leaves():
    decided = V.compare_better([0.72, 0.70, 0.74, 0.71], [0.65, 0.66, 0.64, 0.67], 0.02)
    assert decided.outcome == "reproduced" and "power" not in decided.evidence and "power_low" not in decided.stats
    a, b = [0.72, 0.70, 0.74, 0.71], [0.70, 0.69, 0.70, 0.72]
    alone = V.compare_better(a, b, 0.02)
    six = V.compare_better(a, b, 0.02, p_adjusted=0.9, family=6)
    assert alone.outcome == six.outcome == "inconclusive" and six.stats["power_alpha"] == pytest.approx(0.05 / 6)
    assert six.stats["power_high"] < alone.stats["power_high"]
    assert six.stats["seeds_needed_low"] > alone.stats["seeds_needed_low"]
    assert six.stats["seeds_needed_low"] < six.stats["seeds_needed_high"]  # 4 seeds: a wide range of spreads
    assert "α 0.00833 = 0.05 / 6 comparisons" in six.evidence and "what would decide it" in six.evidence


def test_ladder_interactions_are_holm_corrected_together():
    rng = np.random.default_rng(8)
    seeds = range(6)
    base = {s: 0.3 + rng.normal(0, 0.01) for s in seeds}
    values = {"LeNet": base, "+ ReLU": {s: base[s] + 0.2 for s in seeds}}
    # ReLU's forward gain is 0.2 on every seed; leave-one-out from the top rung is 0.2 plus noise with a
    # small positive mean: raw p of its interaction near 0.03, over 3 testable changes Holm makes it > 0.05
    values["+ max pooling"] = {s: values["+ ReLU"][s] + 0.05 + rng.normal(0, 0.01) for s in seeds}
    values["+ depth"] = {s: values["+ max pooling"][s] + 0.05 + rng.normal(0, 0.01) for s in seeds}
    loo = [0.012, 0.028, -0.002, 0.026, 0.004, 0.020]
    values["− ReLU"] = {s: values["+ depth"][s] - 0.2 + loo[s] for s in seeds}
    values["− max pooling"] = {s: values["+ depth"][s] - 0.05 + rng.normal(0, 0.01) for s in seeds}
    values["− depth"] = {s: values["+ depth"][s] - 0.05 + rng.normal(0, 0.01) for s in seeds}
    att = attribute(values, ladder_arms(list(values)))
    relu = next(s for s in att.steps if s.change == "ReLU")
    assert 0.001 < relu.interaction.p_differs() < 0.05
    adjusted = interactions(att)
    assert len(adjusted) == 3 and adjusted["ReLU"] > 0.05


def test_the_review_s_edge_cases_print_no_nan_and_decide_nothing_without_spread():
    from ablations.stats.significance import holm, paired_power

    for nc in np.linspace(8.0, 15.0, 15):  # scipy's noncentral t returns nan for the lower tail out here
        power = paired_power(5, nc * 0.01 / math.sqrt(5), 0.01, 0.05 / 7)
        assert math.isfinite(power) and 0.0 < power <= 1.0
    assert V.matches({"test_acc": [0.8, 0.8, 0.8]}, {"test_acc": 0.8}, {"test_acc": 0.01}).outcome == "inconclusive"
    flat = V.compare_better({0: 0.9, 1: 0.8}, {0: 0.5, 1: 0.4}, 0.01)
    assert flat.outcome == "inconclusive" and "power of this rule" not in flat.evidence
    assert "power_low" not in flat.stats and "the 2 paired differences leave no variance" in flat.evidence
    welch = V.compare_better([0.9, 0.9], [0.5, 0.5], 0.01)  # arms that cannot pair, each without spread
    assert "the 2 runs of each arm leave no variance" in welch.evidence and "paired differences" not in welch.evidence
    assert holm({"x": math.nan, "y": 1e-6, "z": 1e-5}) == pytest.approx({"x": 1.0, "y": 3e-6, "z": 2e-5})
    # an interaction equal on every seed up to float jitter has no spread: not a finding
    seeds = range(5)
    values = {"LeNet": {s: 0.3 + 0.01 * s for s in seeds}}
    values["+ ReLU"] = {s: values["LeNet"][s] + 0.2 for s in seeds}
    values["+ pool"] = {s: values["+ ReLU"][s] + 0.05 + 0.002 * (-1) ** s for s in seeds}
    values["− ReLU"] = {s: values["+ pool"][s] - 0.19 + 1e-13 * s for s in seeds}
    assert interactions(attribute(values, ladder_arms(list(values)))) == {}


@pytest.mark.parametrize("n, reach", [(3, 2.0), (5, 1.0), (10, 1.0), (4, 0.3), (2, 0.3)])
def test_tost_power_is_the_simulated_rate_at_which_both_one_sided_tests_reject(n, reach):
    """Simulated TOST at a true difference of 0 (each one-sided test at alpha / 2), 400,000 samples
    of n normal differences: the printed power within 4 of the simulation's standard errors."""
    rng = np.random.default_rng(n)
    sd, margin = 0.01, 0.01 * reach
    d = rng.normal(0, sd, (400_000, n))
    half = stats.t.ppf(0.975, n - 1) * d.std(axis=1, ddof=1) / math.sqrt(n)
    rate = np.mean((d.mean(axis=1) - half > -margin) & (d.mean(axis=1) + half < margin))
    assert tost_power(n, margin, sd) == pytest.approx(rate, abs=4 * math.sqrt(max(rate, 1e-4) / 400_000) + 1e-4)
    assert tost_power(n, margin, 0.0) == 1.0  # no spread: the interval is a point inside the margin
    assert tost_power(4, 0.1, 0.01) == 1.0  # quadrature lands a hair above 1 there: capped
