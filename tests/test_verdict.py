import re
from statistics import stdev

import numpy as np
import pytest

from ablations.claims import Claim
from ablations.stats import decision as V


def test_clear_win_is_reproduced():
    v = V.compare_better([0.85, 0.86, 0.855], [0.60, 0.62, 0.61], 0.02, names=("relu", "sigmoid"), metric="test_acc")
    assert v.outcome == "reproduced"
    assert v.stats["p"] < 0.001 and v.stats["diff"] > 0.2 and v.stats["cohens_d"] > 10
    assert "relu 0.8550" in v.evidence and "sigmoid 0.6100" in v.evidence


def test_clear_loss_is_contradicted():
    assert V.compare_better([0.60, 0.62, 0.61], [0.85, 0.86, 0.855], 0.02).outcome == "contradicted"


def test_noise_is_inconclusive():
    v = V.compare_better([0.80, 0.86, 0.83], [0.82, 0.84, 0.81], 0.01)
    assert v.outcome == "inconclusive" and v.stats["p"] > 0.05


def test_a_significant_but_tiny_effect_is_no_gain_of_m_and_contradicts_better():
    v = V.compare_better([0.8010, 0.8011, 0.8013], [0.8000, 0.8001, 0.8002], 0.01)
    # above 0 for sure, and for sure below the minimum effect 0.01: no gain of m or more
    assert v.stats["ci_low"] > 0 and v.stats["ci_high"] < 0.01 and v.stats["p"] < 0.05 and v.outcome == "contradicted"


def test_lower_is_better_metric_flips_direction():
    # dropout: a smaller train-test gap is the expected win
    low, high = [0.01, 0.012, 0.011], [0.08, 0.09, 0.085]
    assert V.compare_better(low, high, 0.005, higher_is_better=False).outcome == "reproduced"
    assert V.compare_better(high, low, 0.005, higher_is_better=False).outcome == "contradicted"


def test_a_sample_without_spread_decides_nothing():
    paired_flat = ({0: 0.302, 1: 0.514, 2: 0.4}, {0: 0.102, 1: 0.314, 2: 0.2})  # +0.2 on each seed, up to rounding
    for a, b in (([0.9, 0.9], [0.5, 0.5]), ([0.5, 0.5], [0.5, 0.5]), paired_flat):
        v = V.compare_better(a, b, 0.01, p_adjusted=0.5, family=6)
        what = "paired differences" if isinstance(a, dict) else "runs of each arm"  # lists: arms that cannot pair
        assert v.outcome == "inconclusive" and v.stats["lacks"].startswith(f"spread: the {len(a)} {what}")


def test_one_seed_is_never_enough():
    assert V.compare_better([0.9], [0.1], 0.01).outcome == "inconclusive"


def test_no_gain_rule():
    assert V.compare_no_gain([0.880, 0.882, 0.881], [0.879, 0.883, 0.880], 0.01).outcome == "reproduced"
    assert V.compare_no_gain([0.92, 0.935, 0.925], [0.85, 0.86, 0.855], 0.01).outcome == "contradicted"
    assert V.compare_no_gain([0.80, 0.95, 0.88], [0.85, 0.86, 0.855], 0.01).outcome == "inconclusive"


def test_matches_and_ratio():
    targets, tol = {"test_acc": 0.883}, {"test_acc": 0.02}
    assert V.matches({"test_acc": [0.882, 0.884, 0.883]}, targets, tol).outcome == "reproduced"
    assert V.matches({"test_acc": [0.80, 0.81, 0.805]}, targets, tol).outcome == "contradicted"
    # two seeds' mean 0.885 is near 0.883, but its 95% interval (±0.064) is wider than the tolerance
    wide = V.matches({"test_acc": [0.88, 0.89]}, targets, tol)
    assert wide.outcome == "inconclusive" and "over 2 seeds vs the printout's single run" in wide.evidence
    assert V.matches({"test_acc": [0.95]}, targets, tol).outcome == "inconclusive"  # one seed: no interval
    assert V.ratio(300, 260, "FLOPs").outcome == "reproduced"
    assert V.ratio(2204, 260, "FLOPs").outcome == "contradicted"
    assert V.combine([V.Verdict("reproduced", ""), V.Verdict("inconclusive", "")]) == "inconclusive"
    assert V.combine([V.Verdict("reproduced", ""), V.Verdict("contradicted", "")]) == "contradicted"


def test_same_rule_is_equivalence_within_the_margin():
    close = V.compare_same([0.881, 0.884, 0.879], [0.882, 0.880, 0.883], 0.01)
    assert close.outcome == "reproduced" and -0.01 < close.stats["ci_low"] < close.stats["ci_high"] < 0.01
    far = V.compare_same([0.85, 0.851, 0.849], [0.88, 0.881, 0.879], 0.01)
    assert far.outcome == "contradicted" and far.stats["ci_high"] <= -0.01
    noisy = V.compare_same([0.80, 0.88, 0.84], [0.86, 0.82, 0.87], 0.01)  # too few, too noisy seeds to tell
    assert noisy.outcome == "inconclusive"
    assert V.compare_same([0.88], [0.88], 0.01).outcome == "inconclusive"


def test_arms_given_by_seed_are_paired_and_the_seed_effect_cancels():
    # seeds move both arms together; arm a is 0.03 better on every seed
    base = {0: 0.50, 1: 0.62, 2: 0.55, 3: 0.45}
    a, b = {s: x + 0.03 + j for (s, x), j in zip(base.items(), (0.001, -0.002, 0.0, 0.001))}, dict(base)
    paired = V.compare_better(a, b, 0.02, names=("a", "b"), metric="test_acc")
    unpaired = V.compare_better(list(a.values()), list(b.values()), 0.02)
    assert paired.outcome == "reproduced" and paired.stats["paired"] == 1 and "paired by seed" in paired.evidence
    assert unpaired.outcome == "inconclusive" and unpaired.stats["paired"] == 0 and unpaired.stats["p"] > 0.5
    assert paired.stats["p_improvement"] == pytest.approx(unpaired.stats["p_improvement"])  # over all pairs of runs


def test_a_seed_finished_in_one_arm_only_is_left_out_of_the_pairs():
    v = V.compare_better({0: 0.9, 1: 0.91, 2: 0.92}, {0: 0.5, 2: 0.52}, 0.02)
    assert v.stats["n_a"] == v.stats["n_b"] == 2 and "seeds 1 finished in one arm only" in v.evidence


def test_holm_adjusted_p_decides_and_the_report_says_so():
    a, b = {0: 0.63, 1: 0.635, 2: 0.66}, {0: 0.57, 1: 0.575, 2: 0.585}
    alone = V.compare_better(a, b, 0.02)
    assert alone.outcome == "reproduced" and alone.stats["p"] < 0.05
    in_family = V.compare_better(a, b, 0.02, p_adjusted=min(1.0, alone.stats["p"] * 8), family=8)
    assert in_family.outcome == "inconclusive" and in_family.stats["p"] == alone.stats["p"]
    assert "Holm-adjusted" in in_family.evidence and "multiple-comparison correction" in in_family.stats["lacks"]


def test_inconclusive_names_what_it_lacks():
    noisy = V.compare_better({0: 0.80, 1: 0.86, 2: 0.83}, {0: 0.82, 1: 0.84, 2: 0.81}, 0.01, images=1000, accuracy=0.83,
                     metric="test_acc")
    assert noisy.outcome == "inconclusive"
    assert "seeds:" in noisy.stats["lacks"] and noisy.stats["seeds_needed_high"] > noisy.stats["seeds_needed_low"] > 3
    assert "test images" not in noisy.stats["lacks"] and noisy.stats["binomial_se"] == pytest.approx(0.01188, 1e-3)
    assert "noise floor:" in noisy.evidence and "what would decide it: power of this rule at 3 seeds" in noisy.evidence


def test_power_figures_agree_with_the_paired_t_test():
    from ablations.stats.significance import paired_power, seeds_needed

    a, b = {0: 0.60, 1: 0.64, 2: 0.61, 3: 0.66}, {0: 0.58, 1: 0.60, 2: 0.60, 3: 0.61}
    v = V.compare_better(a, b, 0.02)
    sd = stdev([a[s] - b[s] for s in a])
    from ablations.stats.significance import sd_interval

    assert v.outcome == "inconclusive" and v.stats["sd_diff"] == pytest.approx(sd)
    low, high = sd_interval(sd, 4)  # the true spread's 95% interval: power and seeds at both ends
    assert v.stats["power_low"] == pytest.approx(paired_power(4, 0.02, high))
    assert v.stats["power_high"] == pytest.approx(paired_power(4, 0.02, low))
    assert (v.stats["seeds_needed_low"], v.stats["seeds_needed_high"]) == (seeds_needed(0.02, low),
                                                                          seeds_needed(0.02, high))


def _runs(claim, per_seed):
    """Finished one-epoch runs with these final test accuracies (arm -> one per seed)."""
    from conftest import arm_run

    return [arm_run(claim, arm, seed, acc) for arm, accs in per_seed.items() for seed, acc in enumerate(accs)]


def test_judge_all_adjusts_every_comparison_over_the_family():
    from ablations.claims import BY_ID, SCALES
    from ablations.stats.significance import holm
    from ablations.verdicts.judge import judge_all, judge_claim

    relu, maxpool, augment = BY_ID["relu"], BY_ID["maxpool"], BY_ID["augment"]
    items = [(relu, _runs(relu, {"relu": [0.70, 0.74, 0.72], "sigmoid": [0.60, 0.62, 0.61]})),  # clear
             (maxpool, _runs(maxpool, {"max": [0.61, 0.605, 0.635], "avg": [0.57, 0.575, 0.585]})),  # p ~ 0.035
             (augment, _runs(augment, {"augment": [0.60, 0.59, 0.63], "none": [0.60, 0.60, 0.60]}))]  # noise
    alone = {c.id: judge_claim(c, runs, SCALES["quick"]) for c, runs in items}
    raw = {c: r.stats["p"] for c, r in alone.items()}
    assert alone["maxpool"].verdict == "reproduced" and 0.01 < raw["maxpool"] < 0.05
    reports = {r.claim.id: r for r in judge_all(items, SCALES["quick"])}
    expected = holm(raw)
    for c, r in reports.items():
        assert r.stats["p"] == pytest.approx(raw[c]) and r.stats["p_holm"] == pytest.approx(expected[c])
        assert r.stats["family"] == 3
    assert reports["relu"].verdict == "reproduced"
    assert reports["maxpool"].verdict == "inconclusive"
    assert "multiple-comparison correction" in reports["maxpool"].stats["lacks"]


def _null_suites(alpha_at_each_look: float | None, sims: int) -> float:
    """How often ``--seeds auto``'s loop (looks at 3, 5, 7, 9 seeds; undecided claims get more)
    declares any effect in suites of three claims with no true effect, minimum effect 0."""
    from ablations.claims import SCALES, Claim
    from ablations.stats.significance import alpha_per_look, looks
    from ablations.verdicts.judge import judge_all, undecided

    plan = looks(9)
    alpha = alpha_per_look(0.05, len(plan)) if alpha_at_each_look is None else alpha_at_each_look
    claims = [Claim(f"null{i}", "no effect", "better", {"x": {}, "y": {}}, "test_acc", 0.0) for i in range(3)]
    rng, positives = np.random.default_rng(7), 0
    for _ in range(sims):
        values = {c.id: {arm: list(rng.normal(0.6, 0.02, plan[-1])) for arm in c.arms} for c in claims}
        seeds = {c.id: plan[0] for c in claims}
        for i in range(len(plan)):
            items = [(c, _runs(c, {arm: v[:seeds[c.id]] for arm, v in values[c.id].items()})) for c in claims]
            reports = judge_all(items, SCALES["quick"], alpha)
            left = undecided(reports)
            if not left or i + 1 == len(plan):
                break
            seeds |= {c.id: plan[i + 1] for c in left}
        positives += any(r.verdict != "inconclusive" for r in reports)
    return positives / sims


@pytest.mark.slow  # 25-45 s: the integration tier keeps the fast one within 10 min
def test_seeds_auto_keeps_the_false_positive_rate_of_null_suites_at_most_alpha():
    assert _null_suites(None, 1000) <= 0.05  # each look at 0.05 / 4, Holm over the three claims
    assert _null_suites(0.05, 300) > 0.07  # peeking at 0.05 every time: what the spending prevents


LADDER = ["LeNet", "+ ReLU", "+ max pooling", "+ depth and width", "+ dropout",
          "− ReLU", "− max pooling", "− depth and width", "− dropout"]


def _ladder_values(effects: dict[str, float], interaction: float = 0.0, seeds: int = 5) -> dict:
    """Accuracy = 0.3 + the effects of the changes present (+ interaction when ReLU and depth
    and width are both present) + a per-seed offset shared by every arm + a little noise."""
    rng = np.random.default_rng(3)
    offset, changes = rng.normal(0, 0.02, seeds), list(effects)
    present = {"LeNet": set()} | {f"+ {c}": set(changes[:i + 1]) for i, c in enumerate(changes)} \
        | {f"− {c}": set(changes) - {c} for c in changes}
    return {arm: {s: 0.3 + sum(effects[c] for c in on) + interaction * ({"ReLU", "depth and width"} <= on)
                  + offset[s] + rng.normal(0, 0.001) for s in range(seeds)} for arm, on in present.items()}


def test_ladder_attribution_recovers_additive_effects_and_flags_an_interaction():
    from ablations.stats.ladder import attribute, describe
    from conftest import ladder_arms

    effects = {"ReLU": 0.25, "max pooling": 0.03, "depth and width": 0.10, "dropout": 0.01}
    att = attribute(_ladder_values(effects), ladder_arms(LADDER))
    assert att.rungs == LADDER[:5] and att.total.diff == pytest.approx(sum(effects.values()), abs=0.003)
    for step in att.steps:  # additive: both orders give each change its own effect, within the noise
        assert step.forward.diff == pytest.approx(effects[step.change], abs=0.003)
        assert step.without.diff == pytest.approx(effects[step.change], abs=0.003)
    assert sum(s.forward.diff for s in att.steps) == pytest.approx(att.total.diff)  # forward gains add up exactly
    assert "): none detected (Holm-adjusted p:" in describe(att, "test_acc")[-1]
    # ReLU and depth together add 0.08 more: forward credits it to depth (added last), leave-one-out to both
    att = attribute(_ladder_values(effects, interaction=0.08), ladder_arms(LADDER))
    by = {s.change: s for s in att.steps}
    assert by["ReLU"].forward.diff == pytest.approx(0.25, abs=0.003) and by["ReLU"].without.diff == pytest.approx(
        0.33, abs=0.003)
    assert by["depth and width"].forward.diff == pytest.approx(0.18, abs=0.003)
    line = describe(att, "test_acc")[-1]
    assert re.search(r"ReLU forward \+0\.2[45]\d* vs leave-one-out \+0\.33", line)
    assert all(f"{c} forward" not in line for c in ("max pooling", "depth and width", "dropout"))


def test_the_tuned_comparisons_are_in_the_same_holm_family_as_the_others():
    """--tune-lr judges each claim again at tuned lrs: those comparisons join the family, so its
    size (4) is not the number of claims (2), and every p is adjusted over all four."""
    from ablations.claims import BY_ID, SCALES
    from ablations.stats.significance import holm
    from ablations.verdicts.judge import judge_all, judge_claim

    relu, maxpool = BY_ID["relu"], BY_ID["maxpool"]
    items = [(relu, _runs(relu, {"relu": [0.70, 0.74, 0.72], "sigmoid": [0.60, 0.62, 0.61]})),
             (maxpool, _runs(maxpool, {"max": [0.61, 0.605, 0.635], "avg": [0.57, 0.575, 0.585]}))]
    tuned = [(relu, _runs(relu, {"relu": [0.71, 0.73, 0.72], "sigmoid": [0.69, 0.70, 0.72]})),
             (maxpool, _runs(maxpool, {"max": [0.62, 0.60, 0.64], "avg": [0.60, 0.59, 0.62]}))]
    raw = {(g, c.id): judge_claim(c, runs, SCALES["quick"]).stats["p"]
           for g, group in enumerate((items, tuned)) for c, runs in group}
    expected = holm(raw)
    reports = {r.claim.id: r for r in judge_all(items, SCALES["quick"], tuned=tuned)}
    for claim_id, report in reports.items():
        for g, r in enumerate((report, report.tuned)):
            assert r.stats["family"] == 4 and r.stats["p_holm"] == pytest.approx(expected[(g, claim_id)])
    untuned_only = holm({k: p for k, p in raw.items() if k[0] == 0})  # what leaving them out would give
    assert untuned_only[(0, "maxpool")] != pytest.approx(expected[(0, "maxpool")])


def test_a_stated_ratio_holds_within_a_factor_of_2_either_way_and_not_beyond():
    """At the boundaries, where a changed factor or a flipped comparison shows."""
    from ablations.stats import decision as V

    for factor, word in ((1.9, "reproduced"), (2.1, "contradicted"), (0.51, "reproduced"), (0.49, "contradicted"),
                         (2.0, "reproduced"), (0.5, "reproduced")):
        assert V.ratio(1000 * factor, 1000, "parameters").outcome == word, factor


def test_matches_contradicts_on_the_prediction_interval_not_on_the_seed_mean():
    """A printed run 0.03 from our mean, outside the 0.02 tolerance but well inside the prediction
    interval of one run at this spread, contradicts nothing; one beyond that interval does."""
    from ablations.stats import decision as V
    from ablations.stats.significance import prediction_half_width

    xs = [0.85, 0.88, 0.91]
    near = V.matches({"test_acc": xs}, {"test_acc": 0.91}, {"test_acc": 0.02})
    assert near.outcome == "inconclusive"
    beyond = 0.88 + prediction_half_width(xs) + 0.02 + 0.001
    assert V.matches({"test_acc": xs}, {"test_acc": beyond}, {"test_acc": 0.02}).outcome == "contradicted"
    assert V.matches({"test_acc": xs}, {"test_acc": beyond - 0.002}, {"test_acc": 0.02}).outcome == "inconclusive"


def test_the_binomial_floor_is_at_each_arms_mean_accuracy_over_its_finished_runs_only():
    """The evidence gives the test set's binomial SE at each compared arm's own mean test accuracy,
    over that arm's finished runs: a diverged run is left out."""
    import math

    from ablations.claims import BY_ID, SCALES
    from ablations.verdicts.judge import judge_claim

    relu = BY_ID["relu"]
    runs = _runs(relu, {"relu": [0.70, 0.74, 0.72], "sigmoid": [0.60, 0.62, 0.61]})
    diverged = _runs(relu, {"relu": [0.05] * 4})[3]
    diverged.result.status = "diverged"
    report = judge_claim(relu, runs + [diverged], SCALES["quick"])
    se = {arm: math.sqrt(acc * (1 - acc) / 1000) for arm, acc in (("relu", 0.72), ("sigmoid", 0.61))}
    assert report.stats["images"] == 1000 and report.stats["binomial_se"] == pytest.approx(max(se.values()))
    assert (f"test-set binomial SE ±{se['relu']:.4f} at relu's accuracy 0.720, ±{se['sigmoid']:.4f} at sigmoid's "
            "0.610, on 1,000 images") in "\n".join(report.evidence)


def _with_gaps(runs, gaps):
    """The runs with train_eval_acc set so that each arm's train - test gap is ``gaps[arm][seed]``."""
    for r in runs:
        r.result.epochs[-1]["train_eval_acc"] = r.result.epochs[-1]["test_acc"] + gaps[r.arm][r.seed]
    return runs


def _paired_interval(a, b):
    from scipy import stats as st

    d = [x - y for x, y in zip(a, b)]
    half = st.t.ppf(0.975, len(d) - 1) * stdev(d) / len(d) ** 0.5
    return sum(d) / len(d), sum(d) / len(d) - half, sum(d) / len(d) + half


@pytest.mark.parametrize("claim_id, metric, context, favoured, other, worse", [
    ("augment", {"augment": [0.70, 0.72, 0.71], "none": [0.60, 0.61, 0.62]},
     {"augment": [0.10, 0.11, 0.12], "none": [0.02, 0.03, 0.02]}, "augment", "none", "higher"),
    ("dropout", {"p=0.5": [0.010, 0.012, 0.011], "p=0": [0.080, 0.090, 0.085]},
     {"p=0.5": [0.80, 0.81, 0.805], "p=0": [0.85, 0.86, 0.855]}, "p=0.5", "p=0", "lower")])
def test_a_context_metric_is_compared_beside_and_a_sure_cost_is_a_caveat_of_a_reproduced_claim(
        claim_id, metric, context, favoured, other, worse):
    """A claim's context metric (augment: the gap, lower is better; dropout: test accuracy, higher is
    better) is described beside the verdict; when the claim is reproduced and the favoured arm is
    surely worse on it (its 95% interval excludes 0 on the bad side), the cost is a caveat with the
    interval. Not reproduced, or not surely worse: no caveat."""
    from ablations.claims import BY_ID, METRICS, SCALES
    from ablations.verdicts.judge import judge_claim

    claim = BY_ID[claim_id]
    name = claim.context_metrics[0]
    acc, gaps = (metric, context) if claim.metric == "test_acc" else (context, metric)
    report = judge_claim(claim, _with_gaps(_runs(claim, acc), gaps), SCALES["quick"])
    assert report.verdict == "reproduced", report.evidence
    diff, low, high = _paired_interval(context[favoured], context[other])
    assert (low > 0) == (worse == "higher") and (high < 0) == (worse == "lower")
    bounds = sorted((abs(low), abs(high)))
    assert f"at a cost: {favoured}'s {name} is {worse} by {abs(diff):.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]" in \
        report.caveats
    line = next(e for e in report.evidence if e.startswith("context: "))
    assert line.startswith(f"context: {name}: {favoured} {sum(context[favoured]) / 3:.4f}"), line
    assert f"vs {other} {sum(context[other]) / 3:.4f}" in line and METRICS[name] == (worse == "lower")
    assert f"P({favoured} {'>' if METRICS[name] else '<'} {other})" in line  # the context metric's own direction

    swapped = {favoured: context[other], other: context[favoured]}  # the favoured arm now better on it
    if claim.metric == "test_acc":
        better_on_it = judge_claim(claim, _with_gaps(_runs(claim, acc), swapped), SCALES["quick"])
        noise = {favoured: [0.60, 0.64, 0.61], other: [0.61, 0.60, 0.62]}  # not reproduced, same cost
        undecided = judge_claim(claim, _with_gaps(_runs(claim, noise), gaps), SCALES["quick"])
    else:
        better_on_it = judge_claim(claim, _with_gaps(_runs(claim, swapped), gaps), SCALES["quick"])
        noise = {favoured: [0.040, 0.090, 0.060], other: [0.080, 0.050, 0.070]}
        undecided = judge_claim(claim, _with_gaps(_runs(claim, context), noise), SCALES["quick"])
    assert better_on_it.verdict == "reproduced" and undecided.verdict != "reproduced"
    for r in (better_on_it, undecided):
        assert not [c for c in r.caveats if c.startswith("at a cost")], r.caveats
        assert any(e.startswith(f"context: {name}: ") for e in r.evidence)


def test_a_stated_ratio_is_reported_with_the_measured_one_and_the_factor():
    inside, outside = V.ratio(3.0, 4.0, "FLOPs"), V.ratio(9.0, 4.0, "FLOPs", factor=2)
    assert (inside.outcome, inside.evidence) == ("reproduced", "FLOPs: measured 3x vs stated 4x (within a factor of 2)")
    assert (outside.outcome, outside.evidence) == ("contradicted",
                                                   "FLOPs: measured 9x vs stated 4x (outside a factor of 2)")
    assert inside.stats == {"measured": 3.0, "stated": 4.0}


def test_seed_counts_are_written_exactly_up_to_ten_thousand_and_as_a_bound_beyond():
    assert V._seeds(10_000) == "10,000 seeds" and V._seeds(10_001) == "more than 10,000 seeds"
    assert V._seeds_range(7, 7) == "7 seeds" and V._seeds_range(7, 10_000) == "7–10,000 seeds"
    assert V._seeds_range(7, 10_001) == "7 to more than 10,000 seeds"


def test_no_gain_p_values_are_the_doubled_one_sided_tail_and_a_gain_of_exactly_m_contradicts():
    from ablations.stats.significance import paired

    d = paired([0.60, 0.62, 0.61], [0.60, 0.61, 0.60])  # gain 0.0067 +- 0.0029 (sd of the differences)
    diffs = [0.0, 0.01, 0.01]
    for m, word, alternative in ((0.02, "reproduced", "less"), (0.001, "contradicted", "greater")):
        p, got = V.decide_no_gain(d, m)
        assert got == word and p == pytest.approx(min(1.0, 2 * stats_t_p(diffs, m, alternative)))
    assert V.decide_no_gain(d, d.diff)[1] == "contradicted"  # not below m: no gain of less than m shown
    lower = V.decide_no_gain(paired([0.60, 0.61, 0.60], [0.60, 0.62, 0.61]), 0.02, higher_is_better=False)
    assert lower == V.decide_no_gain(d, 0.02)  # lower is better: the sign flips, the same decision
    no_gain = V.compare_no_gain([0.60, 0.62, 0.61], [0.60, 0.61, 0.60], 0.02, names=("x", "y"))
    assert no_gain.evidence.startswith("value: x ")


def stats_t_p(diffs, m, alternative):
    from scipy import stats

    return stats.ttest_1samp(diffs, m, alternative=alternative).pvalue


def test_the_size_claim_is_judged_from_the_built_models_parameters_and_flops():
    """AlexNet-224 over LeNet: the parameter ratio (recounted here from the modules' tensors) and
    the FLOP ratio, each against the lecture's stated ratio within a factor of 2."""
    from ablations.claims import BY_ID, SCALES, STATED_RATIOS
    from ablations.verdicts.judge import judge_claim
    from alexnet.config import Config
    from alexnet.model import build_alexnet, build_lenet, flops_per_image

    alex, lenet = build_alexnet(Config()), build_lenet()
    params = [sum(p.numel() for p in m.parameters()) for m in (alex, lenet)]
    flops = [flops_per_image(alex, 224), flops_per_image(lenet, 28)]
    report = judge_claim(BY_ID["size"], [], SCALES["quick"])
    assert report.stats["params_ratio"] == pytest.approx(params[0] / params[1])
    assert report.stats["flops_ratio"] == pytest.approx(flops[0] / flops[1])
    holds = {k: STATED_RATIOS[k] / 2 <= r <= STATED_RATIOS[k] * 2
             for k, r in (("params", params[0] / params[1]), ("flops", flops[0] / flops[1]))}
    assert report.verdict == ("reproduced" if all(holds.values()) else "contradicted")
    assert report.evidence[:3] == [
        f"parameters: measured {params[0] / params[1]:,.0f}x vs stated {STATED_RATIOS['params']:,.0f}x "
        f"({'within' if holds['params'] else 'outside'} a factor of 2)",
        f"FLOPs/image: measured {flops[0] / flops[1]:,.0f}x vs stated {STATED_RATIOS['flops']:,.0f}x "
        f"({'within' if holds['flops'] else 'outside'} a factor of 2)",
        f"AlexNet-224 {params[0]:,} parameters, {flops[0]:,} FLOPs/image; LeNet {params[1]:,} parameters, "
        f"{flops[1]:,} FLOPs/image"]


def test_a_comparison_reports_every_figure_it_decides_with_under_its_own_name():
    """Each figure of a paired comparison, recomputed here with numpy, and each line of its evidence:
    the test, the Holm step and the look's alpha, the noise floor, the seed left out of the pairs."""
    a, b = {0: 0.80, 1: 0.84, 2: 0.83, 3: 0.81}, {0: 0.70, 1: 0.71, 2: 0.74, 3: 0.70, 5: 0.9}
    v = V.compare_better(a, b, 0.02, names=("relu", "sigmoid"), metric="test_acc", images=1000, accuracy=(0.82, 0.71),
                 p_adjusted=0.004, family=3, alpha=0.0253)
    xa, xb = np.array([a[s] for s in range(4)]), np.array([b[s] for s in range(4)])
    d, s = xa - xb, v.stats
    sd_a, sd_b, sd_d = xa.std(ddof=1), xb.std(ddof=1), d.std(ddof=1)
    assert (s["mean_a"], s["mean_b"], s["sd_a"], s["sd_b"], s["sd_diff"]) == pytest.approx(
        (xa.mean(), xb.mean(), sd_a, sd_b, sd_d))
    assert s["diff"] == s["gain"] == pytest.approx(d.mean()) and (s["n_a"], s["n_b"]) == (4, 4)
    assert s["cohens_d"] == pytest.approx(d.mean() / np.sqrt((sd_a**2 + sd_b**2) / 2))
    assert (s["paired"], s["method"], s["flat"], s["min_effect"], s["family"]) == (1, "paired t", 0, 0.02, 3)
    assert (s["p_holm"], s["alpha"], s["power_alpha"]) == (0.004, 0.0253, pytest.approx(0.0253 / 3))
    assert s["images"] == 1000 and v.outcome == "reproduced" and s["p_improvement"] == 1.0  # relu above every time
    first, floor, note = v.evidence.split("\n")
    assert first.startswith(f"test_acc: relu {xa.mean():.4f} ± {sd_a:.4f} vs sigmoid {xb.mean():.4f} ± {sd_b:.4f} "
                            f"(4 seeds, paired by seed); difference {d.mean():+.4f} [unadjusted 95% CI ")
    assert first.endswith(f", paired t], P(relu > sigmoid) 1.00, p {s['p']:.3g}, Holm-adjusted 0.004 over 3 "
                          "comparisons, decided at α = 0.0253; expected relu higher by more than 0.02 (the gain's "
                          "interval above 0.02; below 0.02: contradicted)")
    assert floor.startswith("noise floor: test-set binomial SE ±") and floor.endswith(
        f"on 1,000 images; seed-to-seed sd relu {sd_a:.4f}, sigmoid {sd_b:.4f}, of the paired differences {sd_d:.4f}")
    assert note == "seeds 5 finished in one arm only: left out of the pairs"


def test_a_lower_is_better_comparison_of_unpaired_arms_says_so_and_a_lone_look_adds_nothing():
    xa, xb = [0.02, 0.03, 0.025], [0.08, 0.10]
    v = V.compare_better(xa, xb, 0.01, names=("p=0.5", "p=0"), metric="gap", higher_is_better=False)
    sd = np.sqrt(np.var(xa, ddof=1) + np.var(xb, ddof=1))
    assert v.stats["gain"] == -v.stats["diff"] == pytest.approx(np.mean(xb) - np.mean(xa))
    assert (v.stats["paired"], v.stats["method"], v.stats["sd_diff"]) == (0, "Welch t", pytest.approx(sd))
    assert "(n=3 and 2, unpaired)" in v.evidence and "P(p=0.5 < p=0) 1.00" in v.evidence
    assert "expected p=0.5 lower by more than 0.01" in v.evidence and "Holm" not in v.evidence
    assert "decided at" not in v.evidence and "binomial" not in v.evidence  # no images given
    assert v.evidence.split("\n")[1] == (f"noise floor: seed-to-seed sd p=0.5 {np.std(xa, ddof=1):.4f}, p=0 "
                                         f"{np.std(xb, ddof=1):.4f}, of the difference of two runs {sd:.4f}")
    assert v.evidence.split("\n")[0].endswith(f", p {v.stats['p']:.3g}; expected p=0.5 lower by more than 0.01 (the "
                                              "gain's interval above 0.01; below 0.01: contradicted)")
    from ablations.stats.significance import prob_improvement

    assert v.stats["p_improvement"] == prob_improvement(xb, xa) == 1.0  # lower is better: p=0.5 below p=0 each time
    two = V.compare_better(xa, xb, 0.01, higher_is_better=False, family=2, p_adjusted=0.5)
    assert f", p {two.stats['p']:.3g}, Holm-adjusted 0.5 over 2 comparisons; expected" in two.evidence


def test_too_few_seeds_say_how_many_each_arm_has_and_what_was_left_out():
    v = V.compare_better({0: 0.9, 2: 0.8}, {0: 0.1, 1: 0.2}, 0.01, metric="test_acc")
    assert (v.outcome, v.evidence) == ("inconclusive", "test_acc: needs at least 2 seeds per arm (have 1 and 1); "
                                                       "seeds 1, 2 finished in one arm only: left out of the pairs")
    assert V.compare_better([0.9], [0.1, 0.2], 0.01).evidence == "value: needs at least 2 seeds per arm (have 1 and 2)"
    assert V.compare_better([0.9, 0.8], [0.1], 0.01).evidence.endswith("(have 2 and 1)")


@pytest.mark.parametrize("a, b, expected", [([0.9, 0.9], [0.5, 0.5], np.inf), ([0.5, 0.5], [0.9, 0.9], -np.inf),
                                            ([0.5, 0.5], [0.5, 0.5], 0.0)])
def test_an_effect_size_without_spread_is_infinite_in_its_direction_or_zero(a, b, expected):
    assert V.compare_better(a, b, 0.01).stats["cohens_d"] == expected


def test_a_comparison_paired_by_image_is_described_so_and_needs_every_seed_s_outcomes():
    a = {0: 0.75, 1: 0.5}
    outcomes = ({0: [True, True, True, False], 1: [True, False, True, False]}, [True, False, False, False])
    d, xa, xb, note = V.difference(a, {0: 0.25, 1: 0.25}, outcomes)
    assert d.method.startswith("paired by seed and image") and d.diff == pytest.approx(0.375) and note == ""
    assert (xa, xb) == ([0.75, 0.5], [0.25, 0.25])
    assert "(2 seeds, paired by seed and image)" in V.describe(d, xa, xb, ("a", "b"), "test_acc")
    by_seed, *_ = V.difference(a, {0: 0.25, 1: 0.25}, ({0: outcomes[0][0]}, outcomes[1]))  # seed 1's not kept
    assert by_seed.method == "paired t" and "(2 seeds, paired by seed)" in V.describe(by_seed, xa, xb, ("a", "b"), "x")
    assert V.difference([0.1, 0.2], {0: 0.1, 1: 0.3})[0].method == "Welch t"  # a list and a dict: unpaired
    assert V.difference([0.1, 0.2], [0.3])[0] is None and V.difference([0.1], [0.3, 0.2])[0] is None


def test_matches_says_which_printed_number_it_lacks_or_cannot_judge():
    assert V.matches({}, {"test_acc": 0.883}, {"test_acc": 0.02}).evidence == (
        "no finished runs to compare with test_acc 0.883")
    flat = V.matches({"test_acc": [0.88, 0.88]}, {"test_acc": 0.883}, {"test_acc": 0.02})
    assert (flat.outcome, flat.evidence) == ("inconclusive", "test_acc: the 2 seeds all gave 0.8800; a sample without "
                                                             "spread decides nothing")
    one = V.matches({"test_acc": [0.88]}, {"test_acc": 0.883}, {"test_acc": 0.02})  # one seed: no interval
    assert one.outcome == "inconclusive" and "(tolerance ±0.02: neither)" in one.evidence


def test_judging_a_claim_lists_the_runs_left_out_and_passes_on_the_family_and_its_alpha():
    from ablations.claims import BY_ID, SCALES
    from ablations.verdicts.judge import ArmRun, judge_claim
    from alexnet.config import Config
    from conftest import arm_run

    relu = BY_ID["relu"]
    runs = [arm_run(relu, "relu", s, a) for s, a in enumerate((0.70, 0.74, 0.72))]
    runs += [arm_run(relu, "sigmoid", s, a) for s, a in enumerate((0.60, 0.62, 0.61))]
    lost = [arm_run(relu, "relu", 3, 0.9, status="diverged"), ArmRun("sigmoid", 4, Config(), None, "", False, relu)]
    report = judge_claim(relu, runs + lost, SCALES["quick"], adjusted={("relu", "sigmoid"): 0.04}, family=2,
                         alpha=0.03)
    assert report.evidence[0] == "diverged (left out of the statistics): relu seed 3, sigmoid seed 4"
    v = report.comparisons[("relu", "sigmoid")]
    assert (v.stats["p_holm"], v.stats["family"], v.stats["alpha"]) == (0.04, 2, 0.03) and v.stats["p"] < 0.03
    assert report.verdict == "inconclusive" and report.reason.startswith("relu vs sigmoid lacks seeds: ")
    assert report.reason.endswith(f"; significance after the multiple-comparison correction (p {v.stats['p']:.3g}, "
                                  "Holm-adjusted 0.04)")  # 0.04 is not below the look's 0.03
    assert report.runs == runs + lost and report.values.runs == runs + lost and report.proxy == "quick"
    alone = judge_claim(relu, runs, SCALES["full"])
    assert (alone.verdict, alone.reason, alone.proxy) == ("reproduced", "", "")
    assert alone.evidence[0].startswith("test_acc: relu 0.7200") and alone.comparisons[("relu", "sigmoid")].stats[
        "family"] == 1
    with pytest.raises(ValueError, match="claim 'x' has unknown rule 'nope': expected one of better, no_gain, same, "):
        judge_claim(Claim("x", "s", "nope"), [], SCALES["quick"])


def test_an_undecided_claim_says_why_even_with_one_seed_and_a_scale_that_cannot_test_it_says_that_first():
    from ablations.claims import BY_ID, SCALES
    from ablations.verdicts.judge import judge_claim
    from conftest import arm_run

    relu = BY_ID["relu"]
    one = judge_claim(relu, [arm_run(relu, "relu", 0, 0.7), arm_run(relu, "sigmoid", 0, 0.6)], SCALES["quick"])
    assert (one.verdict, one.reason) == ("inconclusive", "relu vs sigmoid: test_acc: needs at least 2 seeds per arm "
                                                         "(have 1 and 1)")
    d2l = BY_ID["d2l"]
    runs = [arm_run(d2l, list(d2l.arms)[0], s, 0.88, train=0.878) for s in range(2)]
    report = judge_claim(d2l, runs, SCALES["quick"])
    assert report.verdict == "inconclusive" and report.reason == (
        f"not testable at the quick scale: {SCALES['quick'].cannot_test['d2l']}")
    assert report.evidence[0] == report.reason and report.proxy == "quick"
    static = judge_claim(BY_ID["shapes"], [], SCALES["quick"])
    assert (static.verdict, static.proxy) == ("reproduced", "")  # no runs: nothing of the scale's in it


def _interval_text(d) -> str:
    low, high = d.interval()
    return f"{d.diff:+.4f} [{low:+.4f}, {high:+.4f}]"


def test_the_ladder_s_lines_give_each_change_both_orders_its_share_and_the_interactions_found():
    from ablations.stats.ladder import attribute, describe, interactions
    from conftest import ladder_arms

    effects = {"ReLU": 0.25, "max pooling": 0.03, "depth and width": 0.10, "dropout": 0.01}
    att = attribute(_ladder_values(effects, interaction=0.08), ladder_arms(LADDER))
    first, loo, found = describe(att, "gap")
    total = att.total.diff
    assert first == ("attribution of gap (95% CI, paired by seed), LeNet → + dropout: total "
                     f"{_interval_text(att.total)}; " + "; ".join(
                         f"{s.change} {_interval_text(s.forward)} ({s.forward.diff / total:.0%} of the total)"
                         for s in att.steps))
    assert loo == "leave-one-out (+ dropout minus it without the change): " + "; ".join(
        f"{s.change} {_interval_text(s.without)}" for s in att.steps)
    relu, adjusted = att.steps[0], interactions(att)
    assert adjusted["ReLU"] < 0.05 and found == (
        "interactions (the two orders disagree: forward − leave-one-out differs from 0 at Holm-adjusted p < 0.05 over "
        f"the 4 testable changes): ReLU forward {relu.forward.diff:+.4f} vs leave-one-out {relu.without.diff:+.4f} "
        f"(difference {_interval_text(relu.interaction)}, p {relu.interaction.p_differs():.3g}, Holm-adjusted "
        f"{adjusted['ReLU']:.3g})")
    additive = attribute(_ladder_values(effects), ladder_arms(LADDER))
    assert describe(additive, "gap")[-1].endswith("changes): none detected (Holm-adjusted p: " + ", ".join(
        f"{c} {p:.3g}" for c, p in interactions(additive).items()) + ")")


def test_a_ladder_without_leave_one_out_arms_or_pairs_says_what_it_cannot_attribute():
    from ablations.stats.ladder import attribute, describe
    from conftest import ladder_arms

    rungs = LADDER[:3]
    values = {arm: per_seed for arm, per_seed in _ladder_values({"ReLU": 0.25, "max pooling": 0.03}).items()
              if arm in rungs}
    values["+ max pooling"] = {0: values["+ max pooling"][0]}  # one seed: nothing to pair
    lines = describe(attribute(values, ladder_arms(rungs)), "test_acc")
    assert len(lines) == 1 and lines[0].startswith("attribution of test_acc (95% CI, paired by seed), LeNet → + max "
                                                   "pooling: total n/a (fewer than 2 paired seeds); ReLU +0.2")
    assert lines[0].endswith("; max pooling n/a (fewer than 2 paired seeds)") and "of the total" not in lines[0]


def test_what_an_undecided_comparison_lacks_is_each_missing_thing_at_its_boundary():
    s = dict(min_effect=0.01, seeds_needed_low=5, seeds_needed_high=12, p=0.01, alpha=0.05, p_holm=0.05, diff=0.02)
    assert V.lacks(s, 3) == ("seeds: 5–12 seeds for 80% power of this rule (have 3); significance after the "
                             "multiple-comparison correction (p 0.01, Holm-adjusted 0.05)")  # p_holm at alpha: fails
    assert V.lacks(s | {"p": 0.05}, 12) == ("precision: the interval still straddles the bound (more seeds would "
                                            "narrow it)")  # 12 seeds needed, 12 had; p at alpha: not significant
    assert V.lacks(s | {"min_effect": 0.0}, 3).startswith("significance")  # no effect size: no seed count
    assert V.lacks({k: v for k, v in s.items() if k != "seeds_needed_high"}, 3).startswith("significance")
    flat = s | {"flat": 1}
    assert V.lacks(flat, 3) == ("spread: the 3 paired differences leave no variance (+0.0200 every time), and a "
                                "sample without it decides nothing (more seeds, or a larger test set, would show "
                                "the noise it hides)")
    assert V.lacks(flat | {"paired": 0}, 2).startswith("spread: the 2 runs of each arm leave no variance")


def test_an_undecided_claim_s_reason_is_its_failed_precondition_first_then_each_undecided_comparison():
    from ablations.verdicts.judge import _reason

    overfits = V.Verdict("inconclusive", "gap: the arm without dropout does not overfit\nits interval", {},
                         precondition=True)
    seeds = V.Verdict("inconclusive", "x", {"lacks": "seeds: 5 seeds"})
    decided = V.Verdict("reproduced", "y", {"lacks": "never shown"})
    one = V.Verdict("inconclusive", "test_acc: needs at least 2 seeds per arm (have 1 and 1)\nseeds 1 left out")
    comparisons = {("a", "b"): seeds, ("a", "c"): decided, ("a", "d"): one}
    assert _reason([seeds, decided, one, overfits], comparisons) == "gap: the arm without dropout does not overfit"
    assert _reason([seeds, decided, one], comparisons) == ("a vs b lacks seeds: 5 seeds; a vs d: test_acc: needs at "
                                                           "least 2 seeds per arm (have 1 and 1)")
    assert _reason([decided], {("a", "c"): decided}) == "its parts disagree"


def test_judge_all_decides_at_the_alpha_it_is_given_and_more_seeds_are_for_undecided_comparisons_only():
    from ablations.claims import BY_ID, SCALES
    from ablations.verdicts.judge import judge_all, undecided

    maxpool, relu = BY_ID["maxpool"], BY_ID["relu"]
    items = [(maxpool, _runs(maxpool, {"max": [0.61, 0.605, 0.635], "avg": [0.57, 0.575, 0.585]})),  # p ~ 0.035
             (relu, _runs(relu, {"relu": [0.60, 0.61, 0.62], "sigmoid": [0.60, 0.62, 0.60]})),  # noise
             (BY_ID["shapes"], [])]  # static: no comparison
    at_05 = {r.claim.id: r for r in judge_all(items[::2], SCALES["quick"])}
    assert at_05["maxpool"].verdict == "reproduced" and at_05["maxpool"].stats["p"] > 0.01
    at_01 = {r.claim.id: r for r in judge_all(items[::2], SCALES["quick"], alpha=0.01)}
    assert at_01["maxpool"].verdict == "inconclusive" and at_01["maxpool"].stats["alpha"] == 0.01
    reports = judge_all(items, SCALES["quick"])
    assert [r.verdict for r in reports] == ["inconclusive", "inconclusive", "reproduced"]  # Holm over 2
    assert undecided(reports) == [maxpool, relu] and undecided(judge_all(items[::2], SCALES["quick"])) == []


def test_power_figures_print_as_percentages_and_ranges_and_alpha_as_it_came():
    assert (V._pct(0.01), V._pct(0.0099), V._pct(0.5), V._pct(1.0)) == ("1%", "<1%", "50%", "100%")
    assert V._range("5%", "5%") == "5%" and V._range("5%", "9%") == "5%–9%"
    assert V._sd([0.5]) == 0.0 and V._sd([]) == 0.0 and V._sd([1.0, 3.0]) == pytest.approx(2**0.5)
    assert V._alpha_text(0.05) == "0.05" and V._alpha_text(0.0125) == "0.0125 (0.05 over the looks of --seeds auto)"


def test_an_undecided_comparison_prints_what_it_lacks_and_the_power_range_that_would_decide_it():
    noisy = V.compare_better({0: 0.80, 1: 0.86, 2: 0.83}, {0: 0.82, 1: 0.84, 2: 0.81}, 0.01, metric="test_acc",
                             images=1000)
    s, lines = noisy.stats, noisy.evidence.split("\n")
    assert "binomial" not in noisy.evidence  # a test-set size without the arms' accuracy: no binomial floor
    assert lines[-2] == "inconclusive — it lacks " + s["lacks"]
    assert s["power_low"] < s["power_high"] and lines[-1] == (
        "what would decide it: power of this rule at 3 seeds (a true gain of 0 or of 2 x 0.01, 0.01 from the bound "
        f"either way, α 0.05 = 0.05 / 1 comparisons) {V._pct(s['power_low'])}–{V._pct(s['power_high'])}; 80% needs "
        f"{s['seeds_needed_low']:,}–{s['seeds_needed_high']:,} seeds (the range: the 95% interval of the true spread, "
        "from 3 seeds)")
    from ablations.stats.significance import seeds_needed, tost_power

    same = V.compare_same({0: 0.80, 1: 0.86, 2: 0.83}, {0: 0.82, 1: 0.84, 2: 0.81}, 0.01, alpha=0.02)
    assert same.stats["seeds_needed_high"] == seeds_needed(0.01, V.significance.sd_interval(
        same.stats["sd_diff"], 3)[1], alpha=0.02, test=tost_power)  # the rule's own power at the look's alpha
    assert same.stats["alpha"] == 0.02
    sd_low, sd_high = V.significance.sd_interval(same.stats["sd_diff"], 3)
    assert same.stats["power_low"] == tost_power(3, 0.01, sd_high, 0.02)
    assert same.stats["seeds_needed_low"] == seeds_needed(0.01, sd_low, alpha=0.02, test=tost_power)


def test_a_flat_difference_decides_nothing_and_a_p_at_alpha_is_not_below_it():
    from ablations.stats.significance import FLAT_SE, Difference

    flat = Difference(0.1, FLAT_SE, 2, "paired t", True)
    assert V.decide(V.BETTER_TEST, flat, 0.01) == ("inconclusive", 1.0, 1.0)
    assert V.decide(V.BETTER_TEST, flat, 0.01, p_adjusted=0.3) == ("inconclusive", 1.0, 0.3)
    clear = Difference(0.3, 0.01, 4, "paired t", True)
    assert V.decide(V.BETTER_TEST, clear, 0.01)[0] == "reproduced"
    assert V.decide(V.BETTER_TEST, clear, 0.01, p_adjusted=0.05)[0] == "inconclusive"  # not below 0.05
    assert V.decide(V.BETTER_TEST, clear, 0.01, p_adjusted=0.05, alpha=0.0501)[0] == "reproduced"


def test_matches_reports_each_printed_number_s_intervals_under_its_name():
    from scipy import stats as st

    xs, ys = [0.87, 0.89, 0.88], [0.30, 0.34, 0.32]
    v = V.matches({"test_acc": xs, "loss": ys}, {"test_acc": 0.883, "loss": 0.45}, {"test_acc": 0.05, "loss": 0.02})
    t = st.t.ppf(0.975, 2)
    expected, parts = {}, []
    for name, values, target, tol, where in (
            ("test_acc", xs, 0.883, 0.05, "the mean's interval lies inside the tolerance"),
            ("loss", ys, 0.45, 0.02, "the printed run lies outside the prediction interval, widened by it")):
        m, sd = np.mean(values), np.std(values, ddof=1)
        half, predict = t * sd / np.sqrt(3), t * sd * np.sqrt(1 + 1 / 3)
        expected |= {name: m, f"{name}.ci_low": m - half, f"{name}.ci_high": m + half, f"{name}.pi_low": m - predict,
                     f"{name}.pi_high": m + predict}
        parts.append(f"{name} {m:.3f} [95% CI {m - half:.3f}, {m + half:.3f}; 95% prediction interval of one run "
                     f"{m - predict:.3f}, {m + predict:.3f}] over 3 seeds vs the printout's single run {target} "
                     f"(tolerance ±{tol}: {where})")
    assert v.outcome == "contradicted" and v.stats == pytest.approx(expected) and v.evidence == "; ".join(parts)
    assert V.matches({}, {"test_acc": 0.883}, {"test_acc": 0.02}).outcome == "inconclusive"


def test_the_ladder_claim_compares_its_top_rung_with_its_bottom_one():
    from ablations.claims import CLAIMS, SCALES
    from ablations.stats.ladder import roles
    from ablations.verdicts.judge import judge_claim

    claim = next(c for c in CLAIMS if c.rule == "ladder")
    rungs, _ = roles(claim.arms)
    per_seed = {arm: [0.3 + 0.05 * rungs.index(arm) + 0.01 * s if arm in rungs else 0.4 + 0.01 * s for s in range(3)]
                for arm in claim.arms}
    per_seed[rungs[-1]][1] += 0.004  # some spread in the top rung's gain
    report = judge_claim(claim, _runs(claim, per_seed), SCALES["quick"])
    (pair, v), = report.comparisons.items()
    assert pair == (rungs[-1], rungs[0]) and len(rungs) > 2 and v.outcome == "reproduced"
    assert v.stats["diff"] == pytest.approx(0.05 * (len(rungs) - 1) + 0.004 / 3)


def test_an_arm_at_chance_against_several_is_named_once_with_each_and_every_comparison_keeps_its_lines():
    from ablations.claims import BY_ID, SCALES
    from ablations.verdicts.judge import judge_claim
    from alexnet.config import Config
    from conftest import arm_run

    features = BY_ID["features"]
    svm = Config(arch="svm", input_size=28, epochs=1)
    runs = [arm_run(features, "AlexNet", s, 0.1) for s in range(3)]  # never trained
    for arm in list(features.arms)[1:]:
        runs += [arm_run(features, arm, s, 0.80 + 0.01 * s, config=svm) for s in range(3)]
    report = judge_claim(features, runs, SCALES["quick"])
    others = ", ".join(list(features.arms)[1:])
    assert report.caveats[0] == f"AlexNet did not train (at chance on every seed): {others} measured against chance"
    assert len(report.comparisons) == 3 and all(
        any(line.startswith(f"test_acc: AlexNet 0.1000 ± 0.0000 vs {b} ") for line in report.evidence)
        for _, b in report.comparisons)


def test_a_claim_whose_arm_never_finished_is_undecided_not_an_error_and_an_undecided_proxy_carries_no_scale_note():
    from ablations.claims import BY_ID, SCALES
    from ablations.verdicts.judge import judge_claim
    from conftest import arm_run

    relu = BY_ID["relu"]
    runs = [arm_run(relu, "relu", s, 0.7 + 0.01 * s) for s in range(3)]
    runs += [arm_run(relu, "sigmoid", s, 0.5, status="diverged") for s in range(3)]
    report = judge_claim(relu, runs, SCALES["quick"])
    assert report.verdict == "inconclusive" and report.reason.startswith(
        "relu vs sigmoid: test_acc: needs at least 2 seeds per arm (have 0 and 0)")
    features = BY_ID["features"]
    noisy = [arm_run(features, "AlexNet", s, a) for s, a in enumerate((0.80, 0.86, 0.83))]
    noisy += [arm_run(features, arm, s, a) for arm in list(features.arms)[1:] for s, a in
              enumerate((0.82, 0.84, 0.81))]
    undecided = judge_claim(features, noisy, SCALES["quick"])
    assert undecided.verdict == "inconclusive" and SCALES["quick"].at_lecture.get("features")
    assert not any("at the lecture's scale" in c for c in undecided.caveats)


def test_the_binomial_floor_at_one_accuracy_is_written_once():
    floor = ["seed-to-seed sd"]
    se = V.binomial_floor(floor, 0.83, 1000, ("a", "b"))
    assert se == pytest.approx((0.83 * 0.17 / 1000) ** 0.5)
    assert floor == [f"test-set binomial SE ±{se:.4f} at accuracy 0.830 on 1,000 images", "seed-to-seed sd"]


def test_a_ladder_rung_with_two_paired_seeds_is_attributed():
    from ablations.stats.ladder import attribute, describe
    from conftest import ladder_arms

    values = {"LeNet": {0: 0.30, 1: 0.31}, "+ ReLU": {0: 0.55, 1: 0.57}}
    line = describe(attribute(values, ladder_arms(["LeNet", "+ ReLU"])), "test_acc")[0]
    assert "n/a" not in line and "ReLU +0.2550 [" in line and "(100% of the total)" in line
