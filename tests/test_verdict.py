from ablations import verdict as V


def test_clear_win_is_reproduced():
    v = V.better([0.85, 0.86, 0.855], [0.60, 0.62, 0.61], 0.02, names=("relu", "sigmoid"), metric="test_acc")
    assert v.verdict == "reproduced"
    assert v.stats["p"] < 0.001 and v.stats["diff"] > 0.2 and v.stats["cohens_d"] > 10
    assert "relu 0.8550" in v.evidence and "sigmoid 0.6100" in v.evidence


def test_clear_loss_is_contradicted():
    assert V.better([0.60, 0.62, 0.61], [0.85, 0.86, 0.855], 0.02).verdict == "contradicted"


def test_noise_is_inconclusive():
    v = V.better([0.80, 0.86, 0.83], [0.82, 0.84, 0.81], 0.01)
    assert v.verdict == "inconclusive" and v.stats["p"] > 0.05


def test_significant_but_tiny_effect_is_inconclusive():
    v = V.better([0.8010, 0.8011, 0.8012], [0.8000, 0.8001, 0.8002], 0.01)
    assert v.stats["p"] < 0.05 and v.verdict == "inconclusive"


def test_lower_is_better_metric_flips_direction():
    # dropout: a smaller train-test gap is the expected win
    assert V.better([0.01, 0.012, 0.011], [0.08, 0.09, 0.085], 0.005, higher_is_better=False).verdict == "reproduced"
    assert V.better([0.08, 0.09, 0.085], [0.01, 0.012, 0.011], 0.005, higher_is_better=False).verdict == "contradicted"


def test_identical_seeds_give_an_exact_difference():
    assert V.better([0.9, 0.9], [0.5, 0.5], 0.01).verdict == "reproduced"
    assert V.better([0.5, 0.5], [0.5, 0.5], 0.01).verdict == "inconclusive"


def test_one_seed_is_never_enough():
    assert V.better([0.9], [0.1], 0.01).verdict == "inconclusive"


def test_no_gain_rule():
    assert V.no_gain([0.880, 0.882, 0.881], [0.879, 0.883, 0.880], 0.01).verdict == "reproduced"
    assert V.no_gain([0.92, 0.93, 0.925], [0.85, 0.86, 0.855], 0.01).verdict == "contradicted"
    assert V.no_gain([0.80, 0.95, 0.88], [0.85, 0.86, 0.855], 0.01).verdict == "inconclusive"


def test_matches_and_ratio():
    targets, tol = {"test_acc": 0.883}, {"test_acc": 0.02}
    assert V.matches({"test_acc": [0.88, 0.89]}, targets, tol).verdict == "reproduced"
    assert V.matches({"test_acc": [0.80, 0.81]}, targets, tol).verdict == "contradicted"
    assert V.ratio(300, 260, "FLOPs").verdict == "reproduced"
    assert V.ratio(2204, 260, "FLOPs").verdict == "contradicted"
    assert V.combine([V.Verdict("reproduced", ""), V.Verdict("inconclusive", "")]) == "inconclusive"
    assert V.combine([V.Verdict("reproduced", ""), V.Verdict("contradicted", "")]) == "contradicted"


def test_same_rule_is_equivalence_within_the_margin():
    close = V.same([0.881, 0.884, 0.879], [0.882, 0.880, 0.883], 0.01)
    assert close.verdict == "reproduced" and -0.01 < close.stats["ci_low"] < close.stats["ci_high"] < 0.01
    far = V.same([0.85, 0.851, 0.849], [0.88, 0.881, 0.879], 0.01)
    assert far.verdict == "contradicted" and far.stats["ci_high"] <= -0.01
    noisy = V.same([0.80, 0.88, 0.84], [0.86, 0.82, 0.87], 0.01)  # too few, too noisy seeds to tell
    assert noisy.verdict == "inconclusive"
    assert V.same([0.88], [0.88], 0.01).verdict == "inconclusive"
