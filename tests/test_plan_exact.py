"""``--plan`` is exact and writes nothing (issue 39): it applies every flag the start applies —
the budget included — and lists what the start would do, skips included; it makes no store, no
folder, no lock, no Optuna storage."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from fuzz_cli import listing

from ablations import __main__ as cli

SMOKE = ["--scale", "smoke", "--only", "relu", "--seeds", "1"]


def planned(monkeypatch, argv: list[str]) -> dict[tuple, str]:
    """(claim, arm, seed) -> what the plan says happens to it, as --plan prints it."""
    seen = {}
    real = cli.plan_table

    def table(rows, title, over=()):
        seen.update({(r.claim, r.arm, r.seed): "over" if r.to_do and r.claim in over else r.state for r in rows})
        return real(rows, title, over)
    monkeypatch.setattr(cli, "plan_table", table)
    assert cli.main([*argv, "--plan"]) == 0
    return seen


def trained(db) -> set[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return set(con.execute(
            "SELECT c.value, a.value, CAST(s.value AS INTEGER) FROM runs r JOIN tags k ON k.run_uuid = r.run_uuid "
            "AND k.key = 'kind' AND k.value = 'arm' JOIN tags c ON c.run_uuid = r.run_uuid AND c.key = 'claim' "
            "JOIN tags a ON a.run_uuid = r.run_uuid AND a.key = 'arm' JOIN tags s ON s.run_uuid = r.run_uuid "
            "AND s.key = 'seed' WHERE r.status = 'FINISHED'"))


@pytest.mark.slow
@pytest.mark.parametrize("budget", [None, 0.4])  # none; so small that no claim fits (every run left out)
def test_the_plan_lists_the_runs_the_start_trains_and_writes_nothing(tmp_path, data_dir, monkeypatch, budget):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [*SMOKE, "--data-dir", str(data_dir), "--tracking-uri", f"sqlite:///{work}/store/mlflow.db",
            "--results-dir", "results", "--checkpoint-dir", "ck", "--storage", f"sqlite:///{work}/optuna.db",
            *(["--budget-min", str(budget)] if budget else [])]
    plan = planned(monkeypatch, argv)
    assert listing(work) == {}, "--plan wrote something"
    status = cli.main(argv)
    assert status == 0
    to_train = {k for k, state in plan.items() if state == "train"}
    assert trained(work / "store" / "mlflow.db") == to_train
    if budget:
        assert to_train == set() and set(plan.values()) == {"over"}
    else:
        assert len(to_train) == 2 and planned(monkeypatch, argv) == dict.fromkeys(plan, "reuse")
