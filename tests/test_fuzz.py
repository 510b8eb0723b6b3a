"""Every option of every command, fuzzed (issue 39): a bad value is one line and exit 2 with
nothing changed on disk; a good one reaches the start of the work. The fast tier draws a bounded
number of cases with Hypothesis; the integration tier (test_fuzz_every_case) tries them all."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
import traceback

import pytest
import torch
from fuzz_cli import (
    COMMANDS,
    FLOATS,
    GPU_RUN,
    INTS,
    PATHS,
    READ_ONLY,
    STARTS,
    TEXTS,
    Case,
    Started,
    argv_of,
    cases,
    listing,
    options,
    path_value,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CASES = cases()
HANG_S = 60  # a case still running after this long has hung (each should end within seconds)
FAST_CASES = 500  # drawn per fast-tier run: about 20 s on 2 cores


@pytest.fixture
def fuzz_env(tmp_path_factory, monkeypatch):
    """A runner of one case in fresh folders (cwd and $HOME), the work's start replaced by a stop."""
    def started(*args, **kwargs):
        raise Started()
    for module, name in STARTS:
        monkeypatch.setattr(importlib.import_module(module), name, started)
    for var in ("MLFLOW_TRACKING_URI", "ALEXNET_OPTUNA_STORAGE"):
        monkeypatch.delenv(var, raising=False)

    def run(case: Case, capfd) -> str:
        tmp = tmp_path_factory.mktemp("fuzz")
        home, work = tmp / "home", tmp / "work"
        home.mkdir()
        work.mkdir()
        (work / "claims.md").write_text("# not a report\n")
        argv = argv_of(case, work) if case.command != "scripts/gpu-run" else gpu_run_argv(case, work)
        before = listing(home, work)
        cwd = os.getcwd()
        os.chdir(work)
        monkeypatch.setenv("HOME", str(home))
        capfd.readouterr()

        def hung(*args):
            raise TimeoutError(f"{case}: still running after {HANG_S} s")
        signal.signal(signal.SIGALRM, hung)
        signal.alarm(HANG_S)
        threads = torch.get_num_threads()  # a valid --threads N sets this process's torch threads: restored below
        try:
            if case.command == "scripts/gpu-run":
                status = gpu_run(argv)
                if status in (0, 3):  # past its options: the dry run's checks ran (3: no device)
                    return "started"
            else:
                status = importlib.import_module(COMMANDS[case.command][0]).main(argv)
        except Started:
            return "started"
        except SystemExit as exc:
            status = exc.code
        except BaseException:  # noqa: BLE001  the failure this test exists to find
            pytest.fail(f"{case}: a traceback\n{traceback.format_exc()[-3000:]}")
        finally:
            signal.alarm(0)
            os.chdir(cwd)
            torch.set_num_threads(threads)  # else every later test of this worker runs on up to 1,024 threads
        out = capfd.readouterr()
        changed = sorted(set(listing(home, work).items()) ^ set(before.items()))
        if status == 0 and case.command in READ_ONLY:
            assert not changed, f"{case}: a read-only command changed {changed[:3]}"
            return "read-only"
        if status == 0:
            return "finished"  # legitimate work done (a study created with no trials to add)
        lines = [line for line in out.err.splitlines() if line.strip()]
        assert status == 2, f"{case}: exit {status}\n{out.err[-2000:]}{out.out[-2000:]}"
        assert len(lines) == 1, f"{case}: {len(lines)} lines on stderr\n{out.err[-3000:]}"
        assert not changed, f"{case}: refused, yet changed {changed[:3]}"
        return "refused"
    return run


OPTIONS = options()
EDGES = {"int": INTS, "float": FLOATS, "text": TEXTS, "choice": TEXTS, "path": PATHS + TEXTS, "positional": PATHS}
DRAWN = {  # Hypothesis's own values beside the edges: any integer, float or text a shell can pass
    "int": st.integers().map(str), "float": st.floats().map(repr),
    "text": st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=60)}


@st.composite
def a_case(draw) -> Case:
    command, option, kind = draw(st.sampled_from(OPTIONS))
    if kind == "flag":
        return Case(command, option, "", kind)
    value = draw(st.one_of(st.sampled_from(EDGES[kind]), DRAWN.get(kind, DRAWN["text"])))
    if kind != "positional" and draw(st.integers(0, 19)) == 0:
        value = None  # the option without its value
    return Case(command, option, value, kind)


def gpu_run_argv(case: Case, work) -> list[str]:
    """The case as a dry run of scripts/gpu-run (its paths made for real under ``work``)."""
    value = None if case.value is None else path_value(case.value, work)
    outdir = value if case.kind == "positional" else str(work / "out")
    given = [] if case.kind == "positional" else [f"{case.option}={value}"] if case.kind == "flag" else [
        case.option, *([] if value is None else [value])]
    return ["bash", str(GPU_RUN), outdir, *given, "--dry-run"]


def gpu_run(argv: list[str]) -> int:
    """Its exit status; its checks fail fast ($PYTHON false: exit 3 at the device check)."""
    done = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                          env={**os.environ, "PYTHON": "false"}, timeout=HANG_S)
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    return done.returncode


FOUND = [  # what the draw found, kept as cases: a '~user' with no home was pathlib's RuntimeError, a traceback
    Case("python -m ablations", "--checkpoint-dir", "~0", "path"), Case("python -m ablations", "--results-dir",
                                                                        "~nobody-here/x", "path"),
    Case("python -m ablations launch", "--folder", "~0", "text"), Case("python -m alexnet train", "--json", "~0/x",
                                                                       "path")]


@pytest.mark.parametrize("case", FOUND, ids=str)
def test_the_cases_the_draw_found_are_refused_in_one_line(case, fuzz_env, capfd):
    assert fuzz_env(case, capfd) == "refused"


@settings(max_examples=FAST_CASES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=a_case())
def test_fuzz_a_draw_of_the_cases(case, fuzz_env, capfd):
    fuzz_env(case, capfd)


def test_the_cases_cover_every_option_of_every_command():
    per_command = {name: {c.option for c in CASES if c.command == name} for name in [*COMMANDS, "scripts/gpu-run"]}
    print(f"{len(CASES)} cases over {sum(map(len, per_command.values()))} options of {len(COMMANDS)} commands")
    assert all(per_command.values()) and len(CASES) >= 2000
    assert {"--lr", "--tracking-uri", "--budget-min", "--max-gb", "--python-version"} <= set().union(
        *per_command.values())
    assert per_command["scripts/gpu-run"] == {"OUTDIR", "--budget-min", "--scale", "--device", "--wheelhouse",
                                              "--data-dir", "--dry-run"}


@pytest.mark.slow
def test_fuzz_every_case(fuzz_env, capfd, ledger):
    outcomes, failures, slow = {}, [], []
    for case in CASES:
        start = time.perf_counter()
        try:
            outcome = fuzz_env(case, capfd)
        except (AssertionError, pytest.fail.Exception) as exc:
            outcome = ("traceback" if "a traceback" in str(exc) else "side effect" if "changed" in str(exc)
                       else "other failure")
            failures.append(str(exc).splitlines()[0])
        slow.append((time.perf_counter() - start, str(case)))
        counts = outcomes.setdefault(case.command, {})
        counts[outcome] = counts.get(outcome, 0) + 1
    for command, counts in outcomes.items():
        ledger(kind="cli", command=command, options=len({c.option for c in CASES if c.command == command}),
               tried=sum(counts.values()), **counts)
    print(f"{len(CASES)} cases: {outcomes}, {len(failures)} failed; slowest: {sorted(slow)[-3:]}")
    assert not failures, "\n".join(failures[:80])
