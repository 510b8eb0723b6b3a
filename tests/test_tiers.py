"""The test tiers themselves: a test that needs a service is slow (left out of the default run),
and its guard skips it with the reason locally but fails it under CI=true."""

import tomllib
from pathlib import Path

pytest_plugins = ["pytester"]

NEEDS_POSTGRES = """
import pytest

@pytest.mark.postgres
def test_needs_postgres():
    pass

def test_fast():
    pass
"""


def _run(pytester, monkeypatch, *args: str, ci: bool):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_sample=NEEDS_POSTGRES)
    ini = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    pytester.makeini("[pytest]\naddopts = --strict-markers -m 'not slow'\nmarkers =\n"  # the project's default tier
                     + "".join(f"    {m}\n" for m in ini["markers"]))
    monkeypatch.delenv("ALEXNET_TEST_POSTGRES", raising=False)
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    return pytester.runpytest_inprocess(*args)


def test_a_service_test_is_slow_and_left_out_of_the_default_run(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, ci=True)
    result.assert_outcomes(passed=1, deselected=1)


def test_a_missing_service_skips_locally_with_its_reason(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, "-m", "slow", "-rs", ci=False)
    result.assert_outcomes(skipped=1, deselected=1)
    result.stdout.fnmatch_lines(["*needs postgres: ALEXNET_TEST_POSTGRES is unset*"])


def test_a_missing_service_fails_under_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, "-m", "slow", ci=True)
    result.assert_outcomes(errors=1, deselected=1)  # failed in its setup, by the guard fixture
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*postgres needed under CI=true: ALEXNET_TEST_POSTGRES is unset*"])


GROUPED = """
import pytest

pytestmark = pytest.mark.xdist_group("shared")


@pytest.mark.parametrize("i", range(6))
def test_in_the_group(i):
    pass
"""


def test_tests_of_one_xdist_group_run_on_one_worker(pytester):
    """nox runs the tiers with ``-n 2 --dist loadgroup`` and builds an expensive fixture once per
    group: a pytest or xdist release that drops the grouping (pytest 9.2 with xdist 3.8 sends every
    test alone) would build it on both workers and double the tier's time."""
    pytester.makepyfile(test_grouped=GROUPED)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    workers = [line.split()[0] for line in result.stdout.lines if "PASSED" in line]
    assert len(workers) == 6 and len(set(workers)) == 1, result.stdout.str()


SKIPS = """
import pytest

def test_skipped():
    pytest.skip("the reference commit is not in this clone")

@pytest.mark.skipif(True, reason="no counts stored")
def test_skipped_by_marker():
    pass
"""


def test_no_test_ends_as_skipped_under_ci(pytester, monkeypatch):
    """A skip under CI=true (the perf gate's missing reference commit, say) fails with its reason."""
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makepyfile(test_skips=SKIPS)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, errors=1)  # a marker skips in setup: an error there
    result.stdout.fnmatch_lines(["*skipped under CI=true, where every test must run: *reference commit*"])
    monkeypatch.delenv("CI")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(skipped=2)
