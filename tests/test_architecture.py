"""The structure the next contributor relies on: the core stands alone, and a claim is data
from end to end (a new one, with its own evidence and plot, needs no edit to ablations/)."""

import csv
import subprocess
import sys

import pytest
from conftest import REPO

from ablations.claims import SCALES, Claim
from ablations.evidence import EVIDENCE, PLOTS
from ablations.report import write_results
from ablations.suite import Suite, SuiteOptions
from alexnet.plots import plt, save
from alexnet.tracking import Tracker

CHECK = """
import importlib, pkgutil, sys
import {package}
for m in pkgutil.iter_modules({package}.__path__):  # __main__ too: it runs nothing when imported
    if not m.name.startswith(("test_", "conftest")):
        importlib.import_module("{package}." + m.name)
bad = sorted(name for name in sys.modules if name.split(".")[0] in {forbidden})
print(bad)
"""


def test_layers_point_one_way():
    """Importing every module of alexnet loads nothing of ablations or bench; bench loads no ablations."""
    for package, forbidden in (("alexnet", ("ablations", "bench")), ("bench", ("ablations",))):
        out = subprocess.run([sys.executable, "-c", CHECK.format(package=package, forbidden=forbidden)],
                             capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "[]", f"{package} imports {out.stdout.strip()}"


def loss_ratio_evidence(runs, arms, stats):
    """A new kind of evidence: the mean final training loss of each arm, as a context line."""
    by_arm = {arm: [r.result.final("train_loss") for r in runs if r.arm == arm] for arm in arms}
    stats["loss_ratio"] = (sum(by_arm[arms[0]]) / len(by_arm[arms[0]])) / (sum(by_arm[arms[1]]) / len(by_arm[arms[1]]))
    return f"final train loss ratio {arms[0]} / {arms[1]}: {stats['loss_ratio']:.3f}"


def final_loss_plot(report, path):
    fig, ax = plt.subplots()
    for arm in report.claim.arms:
        ax.bar(arm, sum(r.result.final("train_loss") for r in report.runs if r.arm == arm))
    save(fig, path)


@pytest.mark.slow  # 25-45 s: the integration tier keeps the fast one within 10 min
def test_a_claim_declared_in_a_test_file_gets_a_full_report(tmp_path, fmnist, monkeypatch):
    monkeypatch.setitem(EVIDENCE, "loss_ratio", loss_ratio_evidence)
    monkeypatch.setitem(PLOTS, "final_loss", (final_loss_plot, "{claim}_final_loss.png"))
    claim = Claim("weight_decay", "weight decay (5e-4) improves test accuracy", "better",
                  {"wd": {"weight_decay": 5e-4}, "none": {}}, "test_acc", 0.01, measures="final test accuracy",
                  context_metrics=("gap",), evidence=("loss_ratio",), plots=("curves", "final_loss"))
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    suite = Suite(SCALES["smoke"], tracker, fmnist, SuiteOptions(device="cpu", checkpoint_dir=tmp_path / "ck",
                                                                  progress=False))
    reports = suite.run_claims([claim], "test")
    folder = tmp_path / "results"
    write_results(reports, folder, scale=SCALES["smoke"], device="cpu", command="test",
                  env=reports[0].runs[0].result.env, trained=suite.trained)
    (report,) = reports
    assert suite.trained == 4 and report.verdict in ("reproduced", "contradicted", "inconclusive")
    assert any(e.startswith("final train loss ratio wd / none: ") for e in report.evidence)
    assert any(e.startswith("context: gap: wd") for e in report.evidence) and "loss_ratio" in report.stats
    md = (folder / "claims.md").read_text()
    assert "| weight_decay | weight decay (5e-4) improves test accuracy |" in md and "final train loss ratio" in md
    assert (folder / "weight_decay_final_loss.png").stat().st_size > 5000
    assert (folder / "curves_weight_decay.png").stat().st_size > 5000
    rows = list(csv.DictReader((folder / "claims.csv").open()))
    assert {(r["arm"], r["seed"]) for r in rows} == {("wd", "0"), ("wd", "1"), ("none", "0"), ("none", "1")}
    claim_run = tracker.find({"kind": "claim", "claim": "weight_decay"})[0]
    assert claim_run.data.tags["verdict"] == report.verdict and "loss_ratio" in claim_run.data.metrics
