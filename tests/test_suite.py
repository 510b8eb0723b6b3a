import csv

import mlflow
import pandas as pd
import pytest

from ablations.__main__ import main
from ablations.claims import BY_ID, SCALES
from ablations.reporting.table import COLUMNS, from_store, write_csv
from ablations.running.plan import select_claims
from alexnet.tracking import Tracker, key_name
from alexnet.untrusted import csv_cell
from conftest import run_suite

DEFAULT_SMOKE = select_claims(None, SCALES["smoke"])  # with the arms the smoke scale runs


def _runs(workdir, filter_string=""):
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    exp = mlflow.get_experiment_by_name("alexnet-claims")
    return mlflow.search_runs([exp.experiment_id], filter_string, output_format="list")


@pytest.mark.slow
def test_smoke_suite_writes_reports_with_computed_verdicts(smoke_suite):
    workdir, out = smoke_suite
    folder = workdir / "results" / "smoke" / "cpu"
    md = (folder / "claims.md").read_text()
    assert "python -m ablations" in md  # the command that produced it
    for claim in DEFAULT_SMOKE:
        assert f"| {claim.id} |" in md
    assert "all 21 layers match the printout" in md
    assert f"Versus the lecture: {SCALES['smoke'].versus_lecture()}. These verdicts are a CPU proxy" in md
    assert "**inconclusive (smoke proxy)** — not testable at the smoke scale" in md  # d2l: why, in one sentence
    rows = list(csv.DictReader((folder / "claims.csv").open()))  # '+ ReLU' reads "'+ ReLU": not a formula
    seen = {(r["claim"], r["arm"], r["seed"]) for r in rows}
    assert seen == {(c.id, csv_cell(a), str(s)) for c in DEFAULT_SMOKE for a in c.arms
                    for s in range(SCALES["smoke"].seeds)}
    # the ladder runs at the smoke scale on its 28-px rungs only
    assert {r["arm"] for r in rows if r["claim"] == "ladder"} == {
        csv_cell(name) for name, arm in BY_ID["ladder"].arms.items() if "smoke" not in arm.dropped_at} and len(
        BY_ID["ladder"].arms) == 11 and not any("224" in r["arm"] for r in rows if r["claim"] == "ladder")
    assert {r["metric"] for r in rows} >= {"test_acc", "train_acc", "train_loss", "gap", "flops_per_image"}
    for png in ("final_accuracy.png", "input224_flops_vs_accuracy.png", "relu_grad_norms.png", "curves_relu.png",
                "ladder_waterfall.png", "features_accuracy_vs_cost.png"):
        assert (folder / png).stat().st_size > 10_000
    answer = out.stdout[out.stdout.index("verdicts, smoke scale"):].splitlines()  # piped: plain lines
    assert len(answer) <= 40, "\n".join(answer)  # the one-screen answer: one line per claim, then where the rest is
    assert [line.split()[0] for line in answer if line.startswith("  ") and not line.startswith("   ")] == [
        c.id for c in DEFAULT_SMOKE]  # a line per claim, in order; its reason indented below it
    assert f"every claim's evidence: {folder}/claims.md" in out.stdout
    assert "mlflow ui --backend-store-uri" in out.stdout
    assert "| the lecture says |" not in out.stdout and "test_acc: relu" not in out.stdout


@pytest.mark.slow
def test_the_runs_table_loaded_from_the_store_is_claims_csv_row_for_row(smoke_suite, tmp_path, capsys):
    """claims.csv is the tidy table; ``python -m ablations runs`` loads the same table from the store."""
    workdir, _ = smoke_suite
    written = (workdir / "results" / "smoke" / "cpu" / "claims.csv").read_bytes()
    loaded = from_store(Tracker(f"sqlite:///{workdir}/mlflow.db"))
    write_csv(loaded, tmp_path / "loaded.csv")
    assert (tmp_path / "loaded.csv").read_bytes() == written
    assert len(loaded) > 500 and set(loaded.metric) >= {"test_acc", "gap", "params", "wall_s"}
    cmd = ["runs", "--tracking-uri", f"sqlite:///{workdir}/mlflow.db"]
    with pytest.raises(SystemExit) as stop:
        main([*cmd, "--csv", "a.csv", "--parquet", "b.parquet"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err  # one output at a time
    assert main([*cmd, "--suite-run", "0" * 32]) == 2 and "no finished suite run" in capsys.readouterr().err
    for flag, name in (("--csv", "runs.csv"), ("--parquet", "runs.parquet")):
        assert main([*cmd, flag, str(tmp_path / name)]) == 0
    out = capsys.readouterr().out
    assert "final test accuracy per arm" in out and "relu" in out
    parquet = pd.read_parquet(tmp_path / "runs.parquet")
    assert len(parquet) == len(loaded) and parquet.value.dtype == float
    assert list(pd.read_csv(tmp_path / "runs.csv").columns) == COLUMNS


@pytest.mark.slow
def test_store_holds_nested_runs_with_params_metrics_and_verdicts(smoke_suite):
    workdir, _ = smoke_suite
    runs = _runs(workdir)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    suites = [r for r in runs if r.data.tags.get("kind") == "suite"]
    claims = [r for r in runs if r.data.tags.get("kind") == "claim"]
    arms = [r for r in runs if r.data.tags.get("kind") == "arm"]
    assert len(suites) == 1 and {r.data.tags["claim"] for r in claims} == {c.id for c in DEFAULT_SMOKE}
    assert suites[0].data.params["versus_lecture"].startswith("28-px input (lecture: 224-px input)")
    assert {r.data.tags["claim"] for r in claims if "verdict_reason" in r.data.tags} == {
        r.data.tags["claim"] for r in claims if r.data.tags["verdict"] == "inconclusive"}
    assert all(r.data.tags["mlflow.parentRunId"] == suites[0].info.run_id for r in claims)
    assert all(r.data.tags["verdict"] in ("reproduced", "contradicted", "inconclusive") for r in claims)
    claim_ids = {r.info.run_id for r in claims}
    assert all(r.data.tags["mlflow.parentRunId"] in claim_ids for r in arms)
    # each distinct config x seed trained once, shared by the claims that use it
    assert len({(r.data.tags["config_key"], r.data.tags["seed"]) for r in arms}) == len(arms)
    arm = arms[0]
    assert {"lr", "batch_size", "activation", "seed", "width"} <= set(arm.data.params)
    assert {"final_test_acc", "train_loss", "examples_per_s"} <= set(arm.data.metrics)
    assert {"env.torch", "env.device", "env.git_commit", "claim", "arm", "scale", "code_version"} <= set(arm.data.tags)
    history = mlflow.MlflowClient().get_metric_history(arm.info.run_id, "test_acc")
    assert [m.step for m in history] == [1]  # step = epoch


@pytest.mark.slow
def test_ladder_runs_its_sigmoid_rungs_at_the_lr_of_their_own_validation_study(smoke_suite):
    workdir, _ = smoke_suite
    ladder = BY_ID["ladder"]
    claim = _runs(workdir, "tags.kind = 'claim' and tags.claim = 'ladder'")[0]
    tuned = {arm: float(claim.data.params[f"tuned_lr.{key_name(arm)}"]) for arm in ladder.tuned_arms}
    assert set(tuned) == {"LeNet", "− ReLU"} and 0.01 not in tuned.values()
    rows = list(csv.DictReader((workdir / "results" / "smoke" / "cpu" / "claims.csv").open()))
    lrs = {r["arm"].removeprefix("'"): float(r["lr"]) for r in rows if r["claim"] == "ladder"}
    assert {arm: lrs[arm] for arm in tuned} == tuned  # the rungs ran at their study's best lr
    assert {lr for arm, lr in lrs.items() if arm not in tuned} == {0.01}  # the others at the scale's
    trials = _runs(workdir, "tags.kind = 'trial'")
    assert len(trials) == len(tuned) * SCALES["smoke"].tune_trials
    # each study's trials: a grid evenly spaced over the log-scale lr range (2 points at smoke), none pruned
    assert sorted(float(t.data.params["lr"]) for t in trials) == pytest.approx([0.001, 0.001, 0.3, 0.3])
    assert {t.data.tags["state"] for t in trials} == {"COMPLETE"}
    assert {t.data.params["validation_size"] for t in trials} == {str(SCALES["smoke"].validation_size)}
    md = (workdir / "results" / "smoke" / "cpu" / "claims.md").read_text()
    assert f"LeNet {tuned['LeNet']:.3g} (tuned)" in md and "+ ReLU 0.01," in md


@pytest.mark.slow
def test_rerunning_a_finished_suite_trains_nothing(smoke_suite):
    workdir, _ = smoke_suite
    before = len(_runs(workdir, "tags.kind = 'arm'"))
    out = run_suite(workdir, "--scale", "smoke")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(0 runs trained" in out.stdout
    assert len(_runs(workdir, "tags.kind = 'arm'")) == before


def test_unknown_claim_is_rejected(tmp_path, ledger):
    out = run_suite(tmp_path, "--scale", "smoke", "--only", "relu", "swish")
    assert out.returncode == 2 and "unknown claim 'swish'" in out.stderr and "dropout" in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # rejected before any work
    ledger(kind="bad input", input="unknown claim name (suite CLI)", tried=1,
           error=" ".join(out.stderr.split()).removeprefix("error: ")[:120])


@pytest.mark.slow
def test_fair_mode_tunes_each_arm_on_validation_and_reports_both_verdicts(tmp_path):
    args = ("--scale", "smoke", "--only", "relu", "--tune-lr", "2", "--storage", f"sqlite:///{tmp_path}/optuna.db")
    out = run_suite(tmp_path, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    md = (tmp_path / "results" / "smoke" / "cpu" / "claims.md").read_text()
    assert "## At tuned learning rates" in md and "relu lr " in md and "sigmoid lr " in md
    claim = _runs(tmp_path, "tags.kind = 'claim'")[0]
    assert claim.data.tags["verdict_tuned_lr"] in ("reproduced", "contradicted", "inconclusive")
    lrs = {arm: float(claim.data.params[f"tuned_lr.{arm}"]) for arm in ("relu", "sigmoid")}
    studies = _runs(tmp_path, "tags.kind = 'study'")
    assert len(studies) == 2  # one study per arm
    trials = _runs(tmp_path, "tags.kind = 'trial'")
    assert len(trials) == 4 and all(t.data.params["validation_size"] == "100" for t in trials)
    arms = _runs(tmp_path, "tags.kind = 'arm'")
    assert {float(r.data.params["lr"]) for r in arms} == {0.01, *lrs.values()}  # lecture lr and tuned ones
    assert len(arms) == 8  # 2 arms x 2 seeds, at the lecture's lr and at the tuned lr
    again = run_suite(tmp_path, *args)
    assert again.returncode == 0 and "(0 runs trained" in again.stdout
    assert len(_runs(tmp_path, "tags.kind = 'trial'")) == 4  # the studies were complete: no new trial
