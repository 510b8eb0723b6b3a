"""The README's verdict table (the docs include it from there), generated from a suite's committed
report, never typed: the verdicts from its claims.md, each arm's mean test accuracy over seeds
from its claims.csv, the commit from the runs. ``python -m ablations.reporting.frontpage`` rewrites
the block between the README's markers; ``--check`` exits 1 when they differ (a test runs it)."""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path
from statistics import mean

from ablations.reporting.report import MAX_REPORT_BYTES

START, END = "<!-- --8<-- [start:verdicts] -->", "<!-- --8<-- [end:verdicts] -->"
REPO = Path(__file__).resolve().parents[2]
SOURCE = Path("results/quick/cpu")  # the committed suite: no GPU has run the full scale yet
ROW = re.compile(r"^\| (?P<claim>[a-z0-9_]+) \| .* \| \*\*(?P<verdict>(?:reproduced|contradicted|inconclusive)"
                 r"(?: \([a-z]+ proxy\))?)\*\*")


def verdicts(report: Path) -> dict[str, str]:
    """claim -> its verdict as claims.md shows it (``contradicted (quick proxy)``), from its first table."""
    text = report.read_bytes()[:MAX_REPORT_BYTES].decode("utf-8", errors="replace")
    found = {}
    for line in text[text.index("| claim | the lecture says | measured | verdict |"):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        row = ROW.match(line)
        if row:
            found[row["claim"]] = row["verdict"]
    return found


def accuracies(runs: Path) -> tuple[dict[str, dict[str, list[float]]], str]:
    """claim -> arm -> the final test accuracy of each seed (arms in the report's order), and the
    commit the runs were made at."""
    found: dict[str, dict[str, list[float]]] = {}
    commits = set()
    with runs.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["metric"] == "test_acc":
                arm = r["arm"][1:] if r["arm"][:2] in ("'+", "'-", "'=", "'@") else r["arm"]  # csv_cell's quote
                found.setdefault(r["claim"], {}).setdefault(arm, []).append(float(r["value"]))
                commits.add(r["git_commit"][:7])
    return found, ", ".join(sorted(commits))


def table(folder: Path = SOURCE) -> list[str]:
    """The block: where it comes from, then a row per claim: verdict, each arm's mean test accuracy."""
    shown, (acc, commit) = verdicts(folder / "claims.md"), accuracies(folder / "claims.csv")
    where = folder.resolve().relative_to(REPO) if folder.resolve().is_relative_to(REPO) else folder
    lines = [f"Generated from [{where}/claims.md]({where}/claims.md) and its claims.csv (runs at commit "
             f"{commit}) by `python -m ablations.reporting.frontpage`; a test fails if it is edited by hand.", "",
             "| claim | verdict | mean test accuracy per arm (seeds) |", "|---|---|---|"]
    for claim, verdict in shown.items():
        arms = acc.get(claim, {})
        seeds = sorted({len(xs) for xs in arms.values()})
        cell = ", ".join(f"{arm} {mean(xs):.3f}" for arm, xs in arms.items())
        cell += f" ({'/'.join(map(str, seeds))} seeds)" if arms else "—"
        lines.append(f"| {claim} | **{verdict}** | {cell} |")
    return lines


def block(readme: str) -> list[str]:
    """The lines between the markers."""
    lines = readme.splitlines()
    return lines[lines.index(START) + 1:lines.index(END)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ablations.reporting.frontpage", description=__doc__)
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--results", type=Path, default=SOURCE, help="the suite's results folder (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="exit 1 when the README's table differs; write nothing")
    args = p.parse_args(argv)
    text, new = args.readme.read_text(), table(args.results)
    if block(text) == new:
        print(f"{args.readme}: the verdict table matches {args.results}")
        return 0
    if args.check:
        print(f"{args.readme}: the verdict table differs from {args.results}; run python -m "
              "ablations.reporting.frontpage to regenerate it", file=sys.stderr)
        return 1
    lines = text.splitlines()
    lines[lines.index(START) + 1:lines.index(END)] = new
    args.readme.write_text("\n".join(lines) + "\n")
    print(f"{args.readme}: the verdict table rewritten from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
