"""What a newcomer reads: the README is the front page and fits its purpose; the verdict table it
shows (and the docs site with it) is generated from the committed results, never typed."""

import re
import shutil

import pytest

from ablations.reporting import frontpage
from conftest import REPO

README = (REPO / "README.md").read_text()


def test_the_readme_is_a_front_page_with_the_commands_the_verdicts_and_the_links_first():
    lines = README.splitlines()
    assert len(lines) <= 250
    first_screen = "\n".join(lines[:60])
    assert "python -m nox -s ablations" in first_screen and "python -m nox -s tests" in first_screen
    assert "| relu | **" in first_screen and "](docs/findings.md)" in first_screen  # the verdicts, the links
    assert "-m nox -s tests" in (REPO / ".ci" / "run").read_text()  # CI runs the README's test command
    verdicts = frontpage.verdicts(REPO / frontpage.SOURCE / "claims.md")
    assert set(verdicts) and all(f"| {claim} | **{v}** |" in README for claim, v in verdicts.items())
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", README))
    assert linked == {p.name for p in (REPO / "docs").glob("*.md")} - {"index.md"}  # every page, from the front


def test_the_verdict_table_is_the_results_and_an_edit_by_hand_fails(tmp_path, capsys):
    """The README's block equals the table regenerated from results/quick/cpu (claims.md's verdicts,
    claims.csv's per-seed accuracies); one number changed by hand, or one verdict, is refused."""
    assert frontpage.block(README) == frontpage.table(REPO / frontpage.SOURCE)
    assert frontpage.main(["--readme", str(REPO / "README.md"), "--results", str(REPO / frontpage.SOURCE),
                           "--check"]) == 0
    relu = next(line for line in frontpage.block(README) if line.startswith("| relu |"))
    number = re.search(r"\d\.\d{3}", relu).group()
    for edit in (relu.replace(number, f"{float(number) + 0.001:.3f}", 1), relu.replace("reproduced", "contradicted")):
        edited = tmp_path / "README.md"
        edited.write_text(README.replace(relu, edit))
        assert frontpage.main(["--readme", str(edited), "--results", str(REPO / frontpage.SOURCE), "--check"]) == 1
        assert "differs from" in capsys.readouterr().err
        assert frontpage.main(["--readme", str(edited), "--results", str(REPO / frontpage.SOURCE)]) == 0
        assert edited.read_text() == README  # regenerated: the edit is gone


def test_a_new_result_changes_the_table(tmp_path):
    """The table follows the files: a run's accuracy changed in a copy of claims.csv changes its mean."""
    results = tmp_path / "results"
    shutil.copytree(REPO / frontpage.SOURCE, results)
    text = (results / "claims.csv").read_text()
    first = next(line for line in text.splitlines() if line.startswith("relu,relu,0.01,0,test_acc,"))
    value = float(first.split(",")[5])
    (results / "claims.csv").write_text(text.replace(first, first.replace(f",{first.split(',')[5]},",
                                                                           f",{value + 0.3:.3f},")))
    before = next(r for r in frontpage.table(REPO / frontpage.SOURCE) if r.startswith("| relu |"))
    after = next(r for r in frontpage.table(results) if r.startswith("| relu |"))
    assert before != after and "relu 0.824" in after  # +0.3 on one of 3 seeds: +0.100 on the mean


@pytest.mark.parametrize("page", ["findings.md"])
def test_the_findings_page_quotes_the_verdicts_of_the_committed_run(page):
    """The findings page narrates each claim; every verdict it quotes in its table is claims.md's."""
    verdicts = frontpage.verdicts(REPO / frontpage.SOURCE / "claims.md")
    text = (REPO / "docs" / page).read_text()
    quoted = dict(re.findall(r"^\| (\w+) \| \*\*(\w+(?: \(quick proxy\))?)\*\*", text, re.M))
    assert quoted and all(verdicts[claim] == v for claim, v in quoted.items()), quoted
