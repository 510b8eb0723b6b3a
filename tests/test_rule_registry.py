"""The rules of ``ablations.verdicts.rules`` judged without training: the notes' layer table and the shape
printout against the code's network, what a claim naming a rule lacks, the rules section of
claims.md, and what reaches a comparison from its runs (an arm that did not train, an SVM's
image-by-image outcomes). Unit tests of the rule module, run by ``nox -s mutants``."""

import pytest

from ablations.claims import BY_ID, CLAIMS, LECTURE_TRACE, Claim
from ablations.stats.significance import chance_ceiling
from ablations.verdicts import rules
from ablations.verdicts.rules import RULES, by_image, code_layers, describe_rules, untrained
from alexnet.config import Config
from conftest import arm_run

SVM = Config(arch="svm", input_size=28, epochs=1)
CODE_ROWS = ["input", "Conv1", "MaxPool1", "Conv2", "MaxPool2", "Conv3", "Conv4", "Conv5", "MaxPool3", "Dense1",
             "Dense2", "Dense3"]


def test_the_code_s_layer_rows_are_the_lecture_s_network_in_order():
    rows = code_layers()
    assert list(rows) == CODE_ROWS and rows["input"] == {"shape": (1, 224, 224)}
    traced = [shape[1:] for layer, shape in LECTURE_TRACE if layer in ("Conv2d", "MaxPool2d")]
    assert [tuple(r["shape"]) for name, r in rows.items() if name[:-1] in ("Conv", "MaxPool")] == traced
    # the lecture's code: Conv2d(96, 11, stride 4), (256, 5, pad 2), three 3x3; MaxPool2d(3, stride 2)
    assert [(r["kernel"], r["stride"]) for name, r in rows.items() if name.startswith("Conv")] == [
        (11, 4), (5, 1), (3, 1), (3, 1), (3, 1)]
    assert [(r["kernel"], r["stride"]) for name, r in rows.items() if name.startswith("MaxPool")] == [(3, 2)] * 3
    assert [rows[f"Dense{i}"] for i in (1, 2, 3)] == [{"units": 4096}, {"units": 4096}, {"units": 10}]


def _judge_table(monkeypatch, table):
    monkeypatch.setattr(rules, "NOTES_TABLE", table)
    return RULES["layers"].apply(BY_ID["notes"], [], None)


def test_each_row_of_the_notes_table_is_the_code_s_the_paper_s_or_a_slip_with_its_reason(monkeypatch):
    found = _judge_table(monkeypatch, [
        ("input", {"shape": (1, 224, 224)}, {"shape": (3, 224, 224)}),
        ("Conv1", {"kernel": 11, "stride": 4, "shape": (96, 55, 55)},
         {"kernel": 11, "stride": 4, "shape": (96, 55, 55)}),
        ("MaxPool1", {"kernel": 3, "stride": 2, "shape": (256, 27, 27)}, {"kernel": 3, "shape": (96, 27, 27)}),
        ("Conv2", {"kernel": 5, "stride": 2}, {"kernel": 5, "stride": 3}),
        ("MaxPool2", {"kernel": 3, "shape": (256, 13, 13)}, {"kernel": 3, "shape": (256, 14, 14)}),
        ("Dense3", {"units": 10}, {"units": 1000})])
    summary = ("6 rows: 2 as the code, 1 the 2012 paper's ImageNet network (its RGB input, 55-px maps and 1,000 "
               "classes), 3 slips of the notes")
    assert [v.outcome for v in found.parts] == ["contradicted"] and found.parts[0].evidence == summary
    assert found.stats == {"rows": 6, "slips": 3, "paper_rows": 1}
    assert found.evidence == [
        summary,
        "input: as the code ((1, 224, 224))",
        "Conv1: the notes' 11x11, stride 4, (96, 55, 55) is the 2012 paper's ImageNet network; the code has 11x11, "
        "stride 4, (96, 54, 54)",
        "MaxPool1: a slip of the notes: 3x3, stride 2, (256, 27, 27), neither the code's 3x3, stride 2, (96, 26, 26) "
        "nor the paper's (a pooling layer cannot change its input's 96 channels to 256)",
        "Conv2: a slip of the notes: 5x5, stride 2, neither the code's 5x5, stride 1 nor the paper's (the paper's "
        "row is 5x5, stride 3)",  # a layer that may change channels: the paper's row is the reason
        "MaxPool2: a slip of the notes: 3x3, (256, 13, 13), neither the code's 3x3, (256, 12, 12) nor the paper's "
        "(the paper's row is 3x3, (256, 14, 14))",  # channels kept (256 from MaxPool1's row): the paper's row
        "Dense3: as the code (10 units)"]


def test_a_pooling_row_first_or_without_slips_is_judged_on_the_paper_s_row(monkeypatch):
    first = _judge_table(monkeypatch, [("MaxPool1", {"shape": (8, 26, 26)}, {"shape": (96, 27, 27)})])
    assert first.evidence[1] == ("MaxPool1: a slip of the notes: (8, 26, 26), neither the code's (96, 26, 26) nor "
                                 "the paper's (the paper's row is (96, 27, 27))")  # no input channels to compare
    clean = _judge_table(monkeypatch, [("Conv1", {"shape": (96, 55, 55)}, {"shape": (96, 55, 55)}),
                                       ("Dense1", {"units": 4096}, {"units": 4096})])
    assert [v.outcome for v in clean.parts] == ["reproduced"]
    assert clean.stats == {"rows": 2, "slips": 0, "paper_rows": 1}
    assert clean.evidence[0].startswith("2 rows: 1 as the code, 1 the 2012 paper's")


def test_the_shape_rule_compares_every_layer_and_the_layer_count(monkeypatch):
    found = RULES["shapes"].apply(BY_ID["shapes"], [], None)
    assert [v.outcome for v in found.parts] == ["reproduced"] and found.stats == {"layers": len(LECTURE_TRACE)}
    assert found.evidence == [f"all {len(LECTURE_TRACE)} layers match the printout"]
    wrong = list(LECTURE_TRACE)
    wrong[2] = ("MaxPool2d", (1, 96, 27, 27))
    monkeypatch.setattr(rules, "LECTURE_TRACE", wrong)
    found = RULES["shapes"].apply(BY_ID["shapes"], [], None)
    assert [v.outcome for v in found.parts] == ["contradicted"]
    assert found.evidence == ["layer 2: ('MaxPool2d', (1, 96, 26, 26)) vs lecture ('MaxPool2d', (1, 96, 27, 27))"]
    monkeypatch.setattr(rules, "LECTURE_TRACE", LECTURE_TRACE[:-1])  # every printed layer right, one missing
    found = RULES["shapes"].apply(BY_ID["shapes"], [], None)
    assert [(v.outcome, v.evidence) for v in found.parts] == [("contradicted", "")]
    assert found.evidence == [f"the model has {len(LECTURE_TRACE)} layers, the printout {len(LECTURE_TRACE) - 1}"]
    monkeypatch.setattr(rules, "LECTURE_TRACE", wrong[:-1])  # both
    assert RULES["shapes"].apply(BY_ID["shapes"], [], None).evidence == [
        f"layer 2: ('MaxPool2d', (1, 96, 26, 26)) vs lecture ('MaxPool2d', (1, 96, 27, 27)); the model has "
        f"{len(LECTURE_TRACE)} layers, the printout {len(LECTURE_TRACE) - 1}"]


def test_a_claim_naming_a_rule_is_told_what_it_lacks_before_training():
    one_arm = Claim("x", "s", "better", {"a": {}})
    for name in ("better", "no_gain", "same"):
        assert RULES[name].check(one_arm) == "a comparison needs two arms (has 1)"
        assert RULES[name].check(BY_ID["relu"]) == ""
    assert RULES["ladder"].check(BY_ID["relu"]) == "a ladder needs rung arms (claims.rung) above its first arm"
    assert [RULES["ladder"].check(c) for c in CLAIMS if c.rule == "ladder"] == [""]
    from ablations.claims import rung

    two = Claim("x", "s", "ladder", {"bottom": {}, "+ relu": rung("relu", {})})
    assert RULES["ladder"].check(two) == ""  # one rung above the bottom one: a ladder of two
    printed = {"test_acc": (0.883, 0.02)}
    assert RULES["matches"].check(Claim("x", "s", "matches", {}, printed=printed)) == (
        "matches needs an arm and printed numbers")
    assert RULES["matches"].check(Claim("x", "s", "matches", {"a": {}})) == "matches needs an arm and printed numbers"
    assert RULES["matches"].check(Claim("x", "s", "matches", {"a": {}}, printed=printed)) == ""
    assert RULES["size"].check(one_arm) == "" and RULES["shapes"].check(Claim("x", "s", "shapes")) == ""
    assert {name for name, r in RULES.items() if r.tunable} == {"better", "no_gain", "ladder"}


def test_the_rules_section_describes_every_registered_rule_once_in_order():
    text = describe_rules()
    assert text.startswith("Verdict rules (every comparison is tested against the minimum effect m, one-sided with "
                           "its p doubled, so that p < 0.05 says the unadjusted 95% interval lies beyond the bound, "
                           "and Holm-adjusted p < 0.05 the same of the wider interval the family's correction "
                           "implies): *better* — reproduced when the favoured arm's gain")
    assert text.endswith(f"*{list(RULES)[-1]}* — {list(RULES.values())[-1].describes}.")
    places = [text.index(f"; *{name}* — {r.describes}") for name, r in list(RULES.items())[1:]]
    assert places == sorted(places) and all(text.count(f"*{name}* — ") == 1 for name in RULES)


def test_an_arm_at_chance_is_named_on_every_seed_or_on_the_seeds_it_was(monkeypatch):
    relu, ceiling = BY_ID["relu"], chance_ceiling(1000)
    noise = f"within chance's noise (0.100 + 3 SE = {ceiling:.3f} on 1,000 images)"
    runs = [arm_run(relu, "sigmoid", s, a) for s, a in enumerate((0.1, ceiling, 0.11))]  # at the ceiling: chance
    runs += [arm_run(relu, "sigmoid", 3, 0.9, status="running"), arm_run(relu, "relu", 0, 0.1)]
    runs += [arm_run(relu, "relu", s, 0.8) for s in (1, 2)]
    assert untrained(runs, ["none", "sigmoid", "relu"]) == {  # an arm without runs first: the others still read
        "sigmoid": (f"sigmoid did not train: test accuracy 0.100–0.128 on every one of its 3 seeds, {noise}",
                    "sigmoid did not train (at chance on every seed)"),
        "relu": (f"relu did not train on 1 of its 3 seeds (seed 0: test accuracy 0.100, {noise})",
                 "relu did not train on 1 of 3 seeds (seed 0)")}
    same = [arm_run(relu, "sigmoid", s, 0.1) for s in (4, 2)]
    assert untrained(same, ["sigmoid"])["sigmoid"][0].startswith("sigmoid did not train: test accuracy 0.100 on every "
                                                                 "one of its 2 seeds")
    assert untrained([arm_run(relu, "sigmoid", s, 0.1) for s in (5, 1, 3)] + runs[-2:], ["sigmoid", "relu"]) == {
        "sigmoid": (f"sigmoid did not train: test accuracy 0.100 on every one of its 3 seeds, {noise}",
                    "sigmoid did not train (at chance on every seed)")}
    assert untrained([arm_run(relu, "a", 0, ceiling + 1e-9)], ["a"]) == {}  # just above: it learned
    assert untrained([arm_run(relu, "a", 0, 0.1, split="val")], ["a"]) == {}  # a validation run: tuning, not judged
    two = [arm_run(relu, "a", s, a) for s, a in ((2, 0.1), (0, 0.9), (1, 0.12))]
    assert untrained(two, ["a"])["a"][1] == "a did not train on 2 of 3 seeds (seed 1, 2)"


def test_an_svm_arm_pairs_by_image_only_when_every_finished_run_kept_its_outcomes():
    features = BY_ID["features"]
    right, wrong = [True, False, True, True], [False, True, True, False]
    alex = [arm_run(features, "AlexNet", s, 0.7, correct=right, images=4) for s in (0, 1)]
    svm = [arm_run(features, "SVM", s, 0.8, config=SVM, correct=c, images=4) for s, c in ((0, wrong), (1, right))]
    running = arm_run(features, "AlexNet", 2, 0.7, status="running", images=4)
    assert by_image(alex + svm + [running], "AlexNet", "SVM") == ({0: right, 1: right}, wrong)  # the first fit's
    assert by_image(alex + [arm_run(features, "SVM", 0, 0.8, correct=wrong, images=4)], "AlexNet", "SVM") is None
    assert by_image(alex, "AlexNet", "SVM") is None and by_image(svm, "AlexNet", "SVM") is None
    lost = arm_run(features, "AlexNet", 3, 0.7, images=4)  # finished, its outcomes not kept
    assert by_image(alex + svm + [lost], "AlexNet", "SVM") is None
    assert by_image(alex + svm[:1] + [arm_run(features, "SVM", 1, 0.8, config=SVM, images=4)], "AlexNet",
                    "SVM") is None



def test_the_matches_rule_judges_each_printed_number_on_the_first_arm_s_seeds():
    from ablations.claims import SCALES
    from ablations.verdicts.judge import judge_claim

    d2l = BY_ID["d2l"]
    arm = list(d2l.arms)[0]
    runs = [arm_run(d2l, arm, s, a, train=a - 0.005) for s, a in enumerate((0.88, 0.885, 0.882))]
    for r in runs:
        r.result.epochs[-1]["train_loss"] = 0.33 + 0.01 * r.seed
    report = judge_claim(d2l, runs, SCALES["full"])
    assert set(d2l.printed) <= set(report.stats)
    assert report.stats["test_acc"] == pytest.approx((0.88 + 0.885 + 0.882) / 3)
    assert report.evidence[0].startswith(f"{list(d2l.printed)[0]} ")
