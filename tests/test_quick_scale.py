"""The quick scale as a CPU proxy: how it differs from the lecture, said everywhere; claims it
cannot decide say why in one sentence; verdicts compared across runs (threads, CPU models)."""

from pathlib import Path

import pytest
import torch

from ablations.__main__ import main
from ablations.claims import BY_ID, SCALES
from ablations.running.plan import arm_config, select_claims
from ablations.running.speed import speed_key
from ablations.running.suite import Suite, SuiteOptions
from ablations.verdicts.judge import ArmRun, judge_all, judge_claim
from alexnet.config import Config
from alexnet.result import TrainResult
from alexnet.tracking import Tracker

RESULTS = Path(__file__).resolve().parent.parent / "results"


def _runs(claim, per_seed):
    """Finished runs; per_seed: arm -> [(train_acc, test_acc), ...], one pair per seed."""
    return [ArmRun(arm, seed, Config(), TrainResult({}, seed, {}, "test", 1, 1, 100, 1000, status="finished",
                                                    epochs=[{"epoch": 1, "train_loss": 1.0, "train_acc": train,
                                                             "test_acc": test}]), "", True, claim)
            for arm, pairs in per_seed.items() for seed, (train, test) in enumerate(pairs)]


def test_the_quick_scale_is_the_quarter_width_alexnet_past_its_first_plateau():
    quick = SCALES["quick"]
    configs = {(c.id, arm): arm_config(c, arm, quick, "cpu") for c in select_claims(None, quick) for arm in c.arms}
    alexnets = {k: c for k, c in configs.items() if c.arch == "alexnet"}
    assert {c.width for c in alexnets.values()} == {0.25}  # the 224-px arm of input224 too
    assert configs[("input224", "224 px")].input_size == 224
    steps = {k: -(-c.train_size // c.batch_size) * c.epochs for k, c in alexnets.items()}
    assert min(steps.values()) >= 110 and steps[("relu", "relu")] == 375  # hundreds of SGD steps, not 96
    assert "ladder" in {c.id for c in select_claims(None, quick)}  # back in the defaults
    assert SCALES["full"].base == {} and SCALES["full"].versus_lecture() == "the lecture's settings"


@pytest.mark.parametrize("options, expected", [
    ({}, {"relu": 3, "maxpool": 8, "augment": 12, "dropout": 12, "input224": 5}),  # more where effects are small
    ({"seeds": 3}, {"relu": 3, "maxpool": 3, "augment": 3, "dropout": 3, "input224": 3}),  # --seeds N: N for all
    ({"max_seeds": 9}, {"relu": 5, "maxpool": 5, "augment": 5, "dropout": 5, "input224": 5}),  # auto: all start at 5
])
def test_the_quick_scale_gives_each_claim_the_seeds_its_spread_needs(tmp_path, fmnist, options, expected):
    quick = SCALES["quick"]
    suite = Suite(quick, Tracker(f"sqlite:///{tmp_path}/mlflow.db"), fmnist,
                  SuiteOptions(device="cpu", checkpoint_dir=tmp_path / "ck", progress=False, **options))
    claims = select_claims(None, quick)
    rows = suite.plan.rows(claims, suite.plan.configs(claims))
    seeds = {claim: {r.seed for r in rows if r.claim == claim and r.state != "tune"} for claim in expected}
    assert seeds == {claim: set(range(n)) for claim, n in expected.items()}
    # the base arm's extra seeds are trained once, by the first claim that needs them, and shared
    seed7 = [r.state for r in rows if r.arm in ("max", "none") and r.seed == 7]
    assert seed7 == (["train", "shared"] if not options else [])
    assert suite.plan.seeds_text(claims) == ("5 seeds (relu 3, dropout 12, maxpool 8, augment 12)" if not options else
                                        f"{options.get('seeds', 5)} seeds")


def test_how_a_scale_differs_from_the_lecture_is_computed_from_its_config():
    text = SCALES["quick"].versus_lecture()
    for part in ("width 0.25 (lecture: width 1)", "28-px input (lecture: 224-px input)",
                 "4,000 training images (lecture: 60,000 training images)", "3 epochs (lecture: 10 epochs)",
                 "batch 32 (lecture: batch 128)", "momentum 0.9 (lecture: momentum 0)",
                 "375 SGD steps per run (lecture: 4,690)", "input224 arms: train_size 1200, test_size 500"):
        assert part in text
    assert "lr " not in text  # the lecture's lr: not a difference


def test_width_changes_the_probe_key_so_each_width_is_timed():
    assert speed_key(Config(input_size=28, width=0.25)) != speed_key(Config(input_size=28))
    assert speed_key(Config(input_size=28, width=0.25)) == "28px-b128-fp32-w0.25"
    lenet = Config(arch="lenet", input_size=28, width=0.25)
    assert speed_key(lenet) == speed_key(Config(arch="lenet", input_size=28))  # LeNet ignores width


def test_augmentation_changes_the_probe_key_so_augmented_arms_are_timed_as_they_run():
    """An augmented batch draws on the host and copies to the device: priced from a plain probe,
    augmented arms were underestimated on a GPU."""
    assert speed_key(Config(input_size=28, augment=True)) == "28px-b128-fp32-aug"
    assert speed_key(Config(input_size=28, augment=True)) != speed_key(Config(input_size=28))


def test_a_runs_estimate_counts_both_evaluations_of_every_epoch():
    """The trainer scores the evaluation set and an equally large training sample (at most the
    training set) after every epoch: two passes, both priced."""
    from ablations.running.speed import Speed, run_seconds

    speed = Speed(step_s=1.0, eval_batch_s=0.5, first_step_s=1.0, setup_s=0.0, steps=3, batch_size=100)
    # 10 training steps; 3 evaluation batches and 3 of the training sample, per epoch
    assert run_seconds(Config(train_size=1000, test_size=300, batch_size=100, epochs=2), speed, 0.0) == 2 * (10 + 3)
    # a training set smaller than the evaluation set: its sample is all of it (2 batches)
    assert run_seconds(Config(train_size=200, test_size=300, batch_size=100, epochs=1), speed, 0.0) == 2 + 2.5


def test_probe_steps_are_timed_back_to_back():
    from ablations.running.speed import step_times

    calls = []
    times = step_times(lambda: calls.append(sum(range(10_000))), torch.device("cpu"), 4)
    assert len(calls) == 4 and len(times) == 4 and all(t > 0 for t in times)


def test_dropout_is_judged_only_where_the_arm_without_it_overfits():
    claim = BY_ID["dropout"]
    # p=0's gap 0.002: nothing overfits, whatever the difference
    flat = judge_claim(claim, _runs(claim, {"p=0.5": [(0.80, 0.80), (0.81, 0.81), (0.79, 0.79)],
                                      "p=0": [(0.802, 0.80), (0.812, 0.81), (0.792, 0.79)]}), SCALES["quick"])
    assert flat.verdict == "inconclusive"
    assert flat.reason.startswith("nothing overfits at this scale: p=0's train - test gap is +0.0020")
    # p=0 overfits by 0.05 and dropout closes most of it
    over = judge_claim(claim, _runs(claim, {"p=0.5": [(0.82, 0.81), (0.835, 0.82), (0.81, 0.802)],
                                      "p=0": [(0.86, 0.81), (0.87, 0.82), (0.85, 0.80)]}), SCALES["quick"])
    assert over.verdict == "reproduced" and over.reason == ""
    assert "overfitting: p=0's train - test gap is +0.0500" in "\n".join(over.evidence)


def test_an_undecided_claim_says_why_in_one_sentence():
    relu, maxpool, d2l = BY_ID["relu"], BY_ID["maxpool"], BY_ID["d2l"]
    items = [(relu, _runs(relu, {"relu": [(0.7, 0.70), (0.7, 0.74), (0.7, 0.72)],
                                 "sigmoid": [(0.1, 0.10), (0.1, 0.11), (0.1, 0.09)]})),
             (maxpool, _runs(maxpool, {"max": [(0.6, 0.60), (0.6, 0.62), (0.6, 0.61)],
                                       "avg": [(0.6, 0.61), (0.6, 0.60), (0.6, 0.615)]})),
             (d2l, _runs(d2l, {"lecture": [(0.6, 0.6), (0.6, 0.6)]}))]
    reports = {r.claim.id: r for r in judge_all(items, SCALES["quick"])}
    assert reports["relu"].verdict == "reproduced" and reports["relu"].reason == ""
    assert reports["maxpool"].reason.startswith("max vs avg lacks seeds:")
    assert reports["d2l"].reason.startswith("not testable at the quick scale: the printed numbers")
    assert all("\n" not in r.reason for r in reports.values())


def _compare(*args) -> int:
    return main(["compare", *map(str, args)])


def test_compare_reads_the_verdicts_and_exits_1_when_one_differs(tmp_path, capsys):
    committed = RESULTS / "quick" / "cpu" / "claims.md"
    assert _compare(committed, committed) == 0
    capsys.readouterr()
    changed = tmp_path / "claims.md"
    text = committed.read_text()
    line = next(x for x in text.splitlines() if x.startswith("| relu |"))
    changed.write_text(text.replace(line, line.replace("**reproduced (quick", "**contradicted (quick")))
    assert _compare(committed, changed, "--out", tmp_path / "cmp.md") == 1
    out = capsys.readouterr().out
    assert "| relu | reproduced | contradicted | **no** |" in out and "different: relu" in out
    assert (tmp_path / "cmp.md").read_text() == out
    assert _compare(committed, committed, "--out", tmp_path / "cmp.md") == 0  # an earlier comparison is replaced
    assert (tmp_path / "cmp.md").read_text() == capsys.readouterr().out
    assert _compare(committed, committed, "--out", tmp_path) == 2  # a folder is not a file
    assert "it is a folder; pass a file name" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("content", ["# not a report\n", "| claim | the lecture says | measured | verdict |\n"
                                     "|---|---|---|---|\n| relu | x | y | maybe |\n", None])
def test_compare_refuses_a_file_that_is_not_a_claims_md(tmp_path, capsys, content):
    bad = tmp_path / "claims.md"
    if content is not None:
        bad.write_text(content)
    assert _compare(bad, RESULTS / "quick" / "cpu" / "claims.md") == 2
    assert "error:" in capsys.readouterr().err


def test_the_committed_thread_comparison_is_what_compare_reports(capsys):
    """The committed check (docs/findings.md, 'Robust to the CPU'): the quick suite at --threads 1 and at the
    machine's 2 threads, each on a fresh store (another summation order, as on another CPU model),
    under issue 45's rules: 9 of 11 verdicts the same; dropout and input224 at equal epochs sit at
    their bounds and move with the summation order, as docs/findings.md says."""
    two, one = (RESULTS / f"threads-{n}" / "quick" / "cpu" / "claims.md" for n in (2, 1))
    assert "cpu-x86_64-2threads" in two.read_text() and "cpu-x86_64-1threads" in one.read_text()
    for side in (two, one):
        assert (side.parent / "claims.csv").is_file()  # every committed claims.md has its claims.csv
    status = _compare(two, one)
    out = capsys.readouterr().out
    committed = (RESULTS / "quick" / "threads.md").read_text()
    assert committed.splitlines()[1:] == out.splitlines()[1:]  # the header names the files as given
    for claim in ("relu", "maxpool"):
        assert f"| {claim} | reproduced | reproduced | yes |" in out
    for claim in ("augment", "features", "ladder", "notes"):
        assert f"| {claim} | contradicted | contradicted | yes |" in out
    assert status == 1 and "9 of 11 verdicts the same; different: dropout, input224" in out
