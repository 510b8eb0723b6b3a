"""The structure the next contributor relies on: the core stands alone, and a claim is data
from end to end (a new one, with its own evidence and plot, needs no edit to ablations/)."""

import ast
import csv
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from ablations.claims import BY_ID, CLAIMS, SCALES, Arm, Claim, rung, without
from ablations.looks import look
from ablations.reporting.plots import PLOTS
from ablations.reporting.report import write_results
from ablations.running.plan import select_claims, validate
from ablations.running.suite import Suite, SuiteOptions
from ablations.stats import decision
from ablations.verdicts.evidence import EVIDENCE
from ablations.verdicts.rules import RULES, comparison
from alexnet import KINDS, Config, Kind, build_model, register
from alexnet.data import subsets
from alexnet.env import environment
from alexnet.plots import plt, save
from alexnet.result import TrainResult, pack
from alexnet.tracking import Tracker
from conftest import REPO

MODULE_LINES = 320

SOURCES = sorted(p for package in ("alexnet", "ablations", "bench") for p in (REPO / package).rglob("*.py"))


def _lint_imports(root) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``root`` with the contracts of ``root``/pyproject.toml."""
    return subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--config", "pyproject.toml",
                           "--no-cache"], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})


def test_the_layers_hold_and_an_upward_import_breaks_them(tmp_path):
    """The import contracts (pyproject.toml) hold here; the statistics importing the reports, or
    the core importing the suite, is refused with the contract and the import named."""
    assert _lint_imports(REPO).returncode == 0, _lint_imports(REPO).stdout[-3000:]
    for package in ("alexnet", "ablations", "bench"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    for path, line, contract in (
            ("ablations/stats/ladder.py", "import ablations.reporting.table", "ablations is not allowed to import"),
            ("alexnet/data.py", "import ablations.running.suite", "alexnet is not allowed to import ablations"),
            ("alexnet/config.py", "from alexnet import train", "No cycles are allowed in alexnet")):
        original = (tmp_path / path).read_text()
        (tmp_path / path).write_text(original + f"\n{line}  # noqa\n")
        out = _lint_imports(tmp_path)
        assert out.returncode == 1 and "BROKEN" in out.stdout, (line, out.stdout[-2000:])
        assert contract.split(" is ")[0] in out.stdout, (line, out.stdout[-3000:])
        (tmp_path / path).write_text(original)
    assert _lint_imports(tmp_path).returncode == 0


def _compared(path, names: set[str]):
    """(line, constants) of each comparison in ``path`` with one of ``names``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            found = {n.value for side in (node.left, *node.comparators) for n in ast.walk(side)
                     if isinstance(n, ast.Constant) and n.value in names}
            if found:
                yield node.lineno, found


def test_the_judge_and_the_suite_name_no_rule_or_claim_and_nothing_branches_on_a_kind():
    """No string comparison with a rule or claim id in the judge or the suite: rules are registered.
    No comparison with a kind of arm anywhere but the default's name: kinds are registered too."""
    names = set(RULES) | {c.id for c in CLAIMS}
    for path in (REPO / "ablations" / "verdicts" / "judge.py", REPO / "ablations" / "running" / "suite.py"):
        assert not list(_compared(path, names)), path
    for path in SOURCES:
        assert not list(_compared(path, set(KINDS) - {"alexnet"})), path


def test_functions_are_short_and_modules_say_their_job():
    """Under 60 lines a function; each module's docstring opens with its job. A module over
    MODULE_LINES is a warning, not a failure: split by concern, not by size."""
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        assert path.name == "__init__.py" or ast.get_docstring(tree), f"{path} has no docstring"
        if len(path.read_text().splitlines()) > MODULE_LINES:
            warnings.warn(f"{path.relative_to(REPO)} has over {MODULE_LINES} lines: does it hold two concerns?",
                          stacklevel=1)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno < 60, f"{path.name}:{node.lineno} {node.name}"


def test_a_misnamed_arm_evidence_or_plot_fails_before_training(monkeypatch):
    ok = Claim("toy", "x", "better", {"a": {}, "b": {"dropout": 0.0}}, evidence=("overfits",), plots=("curves",))
    validate([ok], PLOTS)
    bad = [Claim("toy", "x", "beter", {"a": {}, "b": {}}, versus=(("a", "c"),), evidence=("overfit",),
                 plots=("curve",), tuned_arms=("B",)),
           Claim("ladder2", "x", "ladder", {"LeNet": {}, "+ ReLU": rung("ReLU", {}),
                                             "- ReLU": without("relu", {}, dropped_at=("quik",)),
                                             "eq": Arm({}, match_flops="+ relu")})]
    with pytest.raises(ValueError) as e:
        validate(bad, PLOTS)
    for name in ("'beter'", "'c'", "'B'", "'overfit'", "'curve'", "'relu'", "'quik'", "'+ relu'"):
        assert name in str(e.value)
    # the scales drop arms that say so, whatever their names, and with them their comparisons and tuning
    quick = select_claims(["ladder"], SCALES["quick"])[0]
    assert "− ReLU" in BY_ID["ladder"].arms and "− ReLU" not in quick.arms and quick.tuned_arms == ("LeNet",)
    # a typo in a compared or tuned arm is caught before the scale drops anything, not silently left out
    typo = Claim("typo", "x", "better", {"a": {}, "b": {}, "c": Arm({}, dropped_at=("quick",))}, versus=(("a", "cc"),))
    monkeypatch.setitem(BY_ID, "typo", typo)
    with pytest.raises(ValueError, match="unknown arm 'cc'"):
        select_claims(["typo"], SCALES["quick"])
    # what a rule needs: two arms to compare, rungs in a ladder (plain dicts have no role)
    with pytest.raises(ValueError) as e:
        validate([Claim("one", "x", "better", {"a": {}}), Claim("flat", "x", "ladder", {"LeNet": {}, "+ ReLU": {}})])
    assert "'one': a comparison needs two arms (has 1)" in str(e.value)
    assert "'flat': a ladder needs rung arms" in str(e.value)


def worse(d, m, higher_is_better=True):
    """A toy rule: a is worse than b by more than m (``better`` with the arms swapped)."""
    return decision.decide_better(d, m, not higher_is_better)


def loss_ratio_evidence(runs, claim, stats):
    """A new kind of evidence: the mean final training loss of each arm, as a context line."""
    arms = list(claim.arms)
    by_arm = {arm: [r.result.final("train_loss") for r in runs if r.arm == arm] for arm in arms}
    stats["loss_ratio"] = (sum(by_arm[arms[0]]) / len(by_arm[arms[0]])) / (sum(by_arm[arms[1]]) / len(by_arm[arms[1]]))
    return f"final train loss ratio {arms[0]} / {arms[1]}: {stats['loss_ratio']:.3f}"


def final_loss_plot(report, path):
    fig, ax = plt.subplots()
    for arm in report.claim.arms:
        ax.bar(arm, sum(r.result.final("train_loss") for r in report.runs if r.arm == arm))
    save(fig, path)


@pytest.mark.slow  # 40-60 s: the integration tier keeps the fast one within 10 min
def test_a_claim_declared_in_a_test_file_gets_a_full_report(tmp_path, fmnist, monkeypatch):
    """A new claim with its own evidence and plot, and a new rule with its own claim: declared here,
    run at the smoke scale, judged in one Holm family and reported, with no edit to ablations/."""
    monkeypatch.setitem(EVIDENCE, "loss_ratio", loss_ratio_evidence)
    monkeypatch.setitem(PLOTS, "final_loss", (final_loss_plot, "{claim}_final_loss.png"))
    monkeypatch.setitem(RULES, "worse", comparison("worse", decision.Test(
        worse, "expected {a} worse by more than {m}", "a true loss of 2 x {m}"),
        describes="reproduced when the first arm's loss is significantly above m", tunable=True))
    toy = Claim("sigmoid_worse", "sigmoid trains worse than ReLU", "worse",
                {"sigmoid": {"activation": "sigmoid"}, "relu": {}}, "test_acc", 0.01, measures="final test accuracy")
    claim = Claim("weight_decay", "weight decay (5e-4) improves test accuracy", "better",
                  {"wd": {"weight_decay": 5e-4}, "none": {}}, "test_acc", 0.01, measures="final test accuracy",
                  context_metrics=("gap",), evidence=("loss_ratio",), plots=("curves", "final_loss"))
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    suite = Suite(SCALES["smoke"], tracker, fmnist, SuiteOptions(device="cpu", checkpoint_dir=tmp_path / "ck",
                                                                  progress=False))
    validate([claim, toy], PLOTS)
    reports = look(suite, [claim, toy], "test")
    folder = tmp_path / "results"
    write_results(reports, folder, scale=SCALES["smoke"], device="cpu", command="test",
                  env=reports[0].runs[0].result.env, trained=suite.trained)
    report, toy_report = reports
    assert suite.trained == 6 and report.verdict in ("reproduced", "contradicted", "inconclusive")  # relu: shared
    assert suite.plan.fair(toy) is False and toy_report.comparisons[("sigmoid", "relu")].stats["family"] == 2
    assert any(e.endswith("expected sigmoid worse by more than 0.01") for e in toy_report.evidence)
    assert any(e.startswith("final train loss ratio wd / none: ") for e in report.evidence)
    assert any(e.startswith("context: gap: wd") for e in report.evidence) and "loss_ratio" in report.stats
    md = (folder / "claims.md").read_text()
    assert "*worse* — reproduced when the first arm's loss is significantly above m" in md
    assert "| sigmoid_worse | sigmoid trains worse than ReLU |" in md
    assert "| weight_decay | weight decay (5e-4) improves test accuracy |" in md and "final train loss ratio" in md
    assert (folder / "weight_decay_final_loss.png").stat().st_size > 5000
    assert (folder / "curves_weight_decay.png").stat().st_size > 5000
    rows = list(csv.DictReader((folder / "claims.csv").open()))
    assert {(r["claim"], r["arm"], r["seed"]) for r in rows} == {(c, a, s) for c, arms in (
        ("weight_decay", ("wd", "none")), ("sigmoid_worse", ("sigmoid", "relu"))) for a in arms for s in "01"}
    claim_run = tracker.find({"kind": "claim", "claim": "weight_decay"})[0]
    assert claim_run.data.tags["verdict"] == report.verdict and "loss_ratio" in claim_run.data.metrics
    runs = tracker.client.search_runs([e.experiment_id for e in tracker.client.search_experiments()])
    kinds = {r.data.tags.get("kind", "no kind") for r in runs}
    assert sorted(kinds) == ["arm", "claim", "suite"]  # none that MLflow's fluent API started by itself
    suite_run = tracker.find({"kind": "suite"})[0]
    summary = Path(tracker.client.download_artifacts(suite_run.info.run_id, "summary.md", str(tmp_path)))
    assert "| weight_decay | wd vs none |" in summary.read_text()  # on the suite's own run


def nearest_centroid(config, seed, data, on_epoch=None):
    """A toy fitted kind: each image's nearest class mean of the training pixels."""
    train_x, train_y, eval_x, eval_y, split, fit_x, fit_y = subsets(config, data)
    start = time.perf_counter()
    flat = lambda x: x.flatten(1).float() / 255  # noqa: E731
    centroids = torch.stack([flat(train_x)[train_y == c].mean(0) for c in range(10)])
    right = lambda x, y: (torch.cdist(flat(x), centroids).argmin(1) == y).numpy()  # noqa: E731
    result = TrainResult(config.to_dict(), seed, environment(torch.device("cpu")), split, centroids.numel(),
                         3 * centroids.numel(), len(train_y), len(eval_y), status="finished")
    outcomes = right(eval_x, eval_y)
    result.eval_correct = pack([outcomes])
    seconds = time.perf_counter() - start
    record = {"epoch": 1, "train_loss": 0.0, "train_acc": float(right(train_x, train_y).mean()),
              "train_eval_acc": float(right(fit_x, fit_y).mean()), result.eval_key: float(outcomes.mean()),
              "examples_per_s": len(train_y) / seconds, "epoch_time_s": seconds}
    result.epochs.append(record)
    if on_epoch:
        on_epoch(record)
    return result


@pytest.fixture
def centroid_kind():
    """The toy kind, registered for one test (the registry is the only thing it touches)."""
    kind = register(Kind("centroid", "nearest class mean of the pixels", fit=nearest_centroid))
    yield kind
    del KINDS[kind.name]


@pytest.mark.slow  # 15-20 s: a smoke claim
def test_a_kind_declared_in_a_test_file_is_planned_costed_run_and_judged(tmp_path, fmnist, centroid_kind, capsys):
    """A new kind of arm, registered here and nowhere else: Config takes it, the plan costs it by a
    probe fit, the suite runs it beside AlexNet once per config (seed-free), and the claim is judged."""
    with pytest.raises(ValueError, match="invalid arch='centroids': expected one of alexnet, lenet, svm, centroid"):
        Config(arch="centroids")
    with pytest.raises(ValueError, match="invalid kind 'centroid': already registered"):
        register(centroid_kind)
    with pytest.raises(ValueError, match="invalid arch='centroid' for a network: it is fitted"):
        build_model(Config(arch="centroid"))
    claim = Claim("centroid", "AlexNet beats the nearest class mean", "better",
                  {"AlexNet": {}, "centroid": {"arch": "centroid", "input_size": 28}}, "test_acc", 0.01,
                  measures="final test accuracy")
    validate([claim], PLOTS)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    suite = Suite(SCALES["smoke"], tracker, fmnist, SuiteOptions(device="cpu", checkpoint_dir=tmp_path / "ck",
                                                                  progress=False))
    plans = suite.plan.configs([claim])
    centroid, alexnet = plans["centroid"]["centroid"], plans["centroid"]["AlexNet"]
    assert not centroid.sgd and alexnet.sgd and centroid.key() != alexnet.key()
    rows = suite.plan.rows([claim], plans)
    assert suite.plan.estimate(rows) > 0 and "centroid-n100" in suite.budget.speeds
    (report,) = suite.run_claims([claim], "test", plans)
    accuracies = {r.seed: r.result.final("test_acc") for r in report.runs if r.arm == "centroid"}
    assert len(accuracies) == 2 and len(set(accuracies.values())) == 1 and 0.3 < accuracies[0] <= 1
    assert report.verdict in ("reproduced", "contradicted", "inconclusive") and report.comparisons
    assert {r.data.tags["arm"] for r in tracker.find({"kind": "arm"})} >= {"AlexNet", "centroid"}
