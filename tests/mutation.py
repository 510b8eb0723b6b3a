"""Mutation testing of the core (``nox -s mutants``): mutmut (configured in pyproject.toml) makes
one-line mutants of the modules below and runs, for each, the fast tests that call the mutated
function; this script then writes ``results/mutation/report.md`` and ``report.json``: per group,
the mutants, those killed, the score over the non-equivalent ones against its target, and every
survivor with its diff and its reason (``tests/mutants_reasons.toml``). It exits 1 when a group
misses its target, a mutant went unchecked or a survivor has no reason.

    python tests/mutation.py             # run the mutants not yet checked, then report
    python tests/mutation.py --report    # the report of the results already in mutants/
    python tests/mutation.py --rerun-survivors   # after new tests: the survivors checked again"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "mutation"
REASONS = Path(__file__).with_name("mutants_reasons.toml")
# group: (mutmut's mutant-name patterns, the share of its non-equivalent mutants to kill). Each group's
# unit tests run in seconds: tests/test_archive_checks.py checks the import's rules without importing
# (the end-to-end imports of test_import.py take 179 s), and tests/test_checkpoint.py the resume path
# on a LeNet without training.
GROUPS = {
    "statistics and verdicts": (["ablations.stats.significance.*", "ablations.stats.decision.*",
                                 "ablations.verdicts.rules.*", "ablations.verdicts.judge.*",
                                 "ablations.stats.ladder.*"], 0.90),
    "count gate thresholds": (["bench.reference.x_compare__*", "bench.reference.x_fallback__*",
                               "bench.gate.x_verdict__*"], 0.90),
    "archive import checks": (["ablations.node.archive.*", "ablations.node.meaning.*",
                               "ablations.verdicts.verdict_file.*"], 0.90),
    "trainer resume and checkpoint": (["alexnet.checkpoint.*", "alexnet.train.x_resume__*", "alexnet.train.x_save__*",
                                       "alexnet.train.x__rng_state__*", "alexnet.train.x__set_rng_state__*"], 0.80),
}
# of mutmut's statuses; "segfault" is mutmut's name for exit -9, the SIGKILL that follows its CPU-time limit's
# SIGXCPU: a mutant that makes the tests loop forever (a bisection that never ends) is caught as a timeout is
KILLED, SURVIVED = {"killed", "timeout", "segfault"}, {"survived", "no tests"}


def status(code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[code]


def group_of(name: str) -> str | None:
    return next((g for g, (patterns, _) in GROUPS.items() if any(fnmatch(name, p) for p in patterns)), None)


def outcomes() -> dict[str, int | None]:
    """{mutant name: mutmut's exit code} for every mutant in a group, from mutants/*.meta."""
    found = {}
    for meta in (REPO / "mutants").rglob("*.py.meta"):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if group_of(name):
                found[name] = code
    return found


def reason(table: dict, name: str) -> str | None:
    return next((why for pattern, why in table.items() if fnmatch(name, pattern)), None)


def diff(name: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    lines = get_diff_for_mutant(name).splitlines()
    return "\n".join(line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---"))


def report(commit: str, command: str) -> int:
    codes = outcomes()
    if not codes:
        print("no mutation results in mutants/: run `nox -s mutants` first", file=sys.stderr)
        return 2
    reasons = tomllib.loads(REASONS.read_text())
    same, known = reasons.get("equivalent", {}), reasons.get("known", {})
    groups, survivors, problems = {}, [], []
    for group, (_, target) in GROUPS.items():
        names = sorted(n for n in codes if group_of(n) == group)
        killed = [n for n in names if status(codes[n]) in KILLED]
        alive = [n for n in names if status(codes[n]) in SURVIVED]
        unchecked = [n for n in names if n not in killed and n not in alive]
        equivalent = [n for n in alive if reason(same, n)]
        score = len(killed) / max(1, len(names) - len(equivalent) - len(unchecked))
        groups[group] = {"mutants": len(names), "killed": len(killed), "survived": len(alive),
                         "equivalent": len(equivalent), "unchecked": len(unchecked), "score": round(score, 4),
                         "target": target}
        if score < target:
            problems.append(f"{group}: {score:.1%} of its non-equivalent mutants killed, below its {target:.0%}")
        if unchecked:
            problems.append(f"{group}: {len(unchecked)} mutants not checked (mutmut ended early?), e.g. {unchecked[0]}")
        for n in alive:
            survivors.append({"group": group, "mutant": n, "no_tests": status(codes[n]) == "no tests",
                              "equivalent": reason(same, n),
                              "known": reason(known, n), "diff": diff(n)})
    stale = sorted(p for p in {**same, **known} if any(fnmatch(n, p) for n in codes)
                   and not any(fnmatch(s["mutant"], p) for s in survivors))
    unexplained = [s for s in survivors if not (s["equivalent"] or s["known"])]
    data = {"commit": commit, "command": command, "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "groups": groups, "survivors": survivors, "stale_reasons": stale}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(data, indent=1) + "\n")
    (OUT / "report.md").write_text(markdown(data))
    for line in problems + [f"{len(unexplained)} survivors without a reason in {REASONS.name}"] * bool(unexplained):
        print(line, file=sys.stderr)
    print(f"wrote {OUT / 'report.md'}: " + "; ".join(f"{g} {v['score']:.1%} (target {v['target']:.0%})"
                                                   for g, v in groups.items()))
    return 1 if problems or unexplained else 0


def markdown(data: dict) -> str:
    rows = [f"| {g} | {v['mutants']} | {v['killed']} | {v['survived']} | {v['equivalent']} | {v['unchecked']} | "
            f"**{v['score']:.1%}** | {v['target']:.0%} |" for g, v in data["groups"].items()]
    out = [f"# Mutation report\n\n`{data['command']}` at commit {data['commit'][:12]} ({data['date']}): mutmut's "
           "one-line mutants of the core, each run against the fast tests that call the mutated function. The score "
           "is killed / (mutants - equivalent survivors - unchecked); unchecked: the run stopped before them.\n",
           "| group | mutants | killed | survived | equivalent | unchecked | score | target |",
           "|---|---|---|---|---|---|---|---|",
           *rows, "\n## Survivors\n"]
    for s in data["survivors"]:
        why = (f"equivalent: {s['equivalent']}" if s["equivalent"] else f"known: {s['known']}" if s["known"] else
               "no selected test calls it" if s["no_tests"] else "**not killed, no reason given yet**")
        out.append(f"- `{s['mutant']}` ({s['group']}): {why}\n\n  ```diff\n"
                   + "\n".join("  " + line for line in s["diff"].splitlines()) + "\n  ```")
    if data["stale_reasons"]:
        out.append("\nReasons for mutants that no longer survive: " + ", ".join(data["stale_reasons"]))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true", help="only write the report of the results in mutants/")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="check the survivors again (after new tests), with the tests' coverage measured afresh")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="mutants run at once")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    # the data folder tests/conftest.py finds beside the checkout: mutmut runs the tests one folder deeper, in
    # mutants/, where it would look in vain
    shared = REPO.parent / "shared" / "data" / "fashion-mnist"
    if "ALEXNET_DATA_DIR" not in os.environ and shared.is_dir():
        os.environ["ALEXNET_DATA_DIR"] = str(shared)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    if args.rerun_survivors:
        names = [n for n, code in outcomes().items() if status(code) in SURVIVED]
        (REPO / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)  # new tests: which test calls what, again
    elif not args.report:
        names = [p for patterns, _ in GROUPS.values() for p in patterns]
    if args.rerun_survivors or not args.report:
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children), *names],
                       check=True)
    return report(commit, "nox -s mutants")


if __name__ == "__main__":
    sys.exit(main())
