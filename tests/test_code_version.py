"""The code version a stored run is reused under survives a refactor and nothing that changes numbers."""

import ast
import shutil

import pytest

from alexnet.env import NUMERIC_SOURCES, REPO, code_version

version = code_version.__wrapped__  # uncached: the tests edit the files between calls


@pytest.fixture
def sources(tmp_path):
    shutil.copytree(REPO / "alexnet", tmp_path / "alexnet", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "alexnet"


def _edit(folder, name, old, new):
    text = (folder / name).read_text()
    assert text.count(old) == 1, (name, old)
    (folder / name).write_text(text.replace(old, new))


def test_moving_a_definition_or_editing_docs_comments_and_layout_keeps_it(sources):
    before = version(sources)
    assert before == code_version() and len(before) == 12
    data = (sources / "data.py").read_text()
    moved = next(n for n in ast.parse(data).body if getattr(n, "name", "") == "training_sample")
    block = "\n".join(data.splitlines()[moved.lineno - 1:moved.end_lineno])
    (sources / "data.py").write_text(data.replace(block, ""))  # cut from data.py ...
    (sources / "train.py").write_text((sources / "train.py").read_text() + "\n\n" + block + "\n")  # ... pasted
    _edit(sources, "classical.py", "from .data import FashionMNIST, stratified_subset, subsets, training_sample",
          "from .data import FashionMNIST, stratified_subset, subsets\nfrom .train import training_sample")
    _edit(sources, "train.py", '"""Train one network', '"""Train one network (reworded)')  # a docstring
    _edit(sources, "model.py", "def init_weights(", "# a new comment\n\n\ndef init_weights(")  # comment, layout
    _edit(sources, "config.py", "ARCHS = KINDS ", "ARCHS = (KINDS) ")  # redundant parentheses
    assert version(sources) == before


@pytest.mark.parametrize("name, old, new", [
    ("train.py", "DIVERGENCE_CHECK_EVERY = 20", "DIVERGENCE_CHECK_EVERY = 21"),  # a constant
    ("config.py", 'lr: float = _opt(0.01,', 'lr: float = _opt(0.02,'),  # a default
    ("model.py", "nn.init.xavier_uniform_(m.weight)", "nn.init.xavier_normal_(m.weight)"),  # a call
    ("data.py", "def training_sample(", "def training_sample_(")])  # a name
def test_a_change_that_can_change_numbers_changes_it(sources, name, old, new):
    before = version(sources)
    _edit(sources, name, old, new)
    assert version(sources) != before


def test_an_operator_changes_it_in_every_numeric_source(sources):
    """One '+' turned into '-' anywhere in the numeric sources retrains (the first '+' of each file)."""
    before = version(sources)
    for name in NUMERIC_SOURCES:
        text = (sources / name).read_text()
        tree = ast.parse(text)
        node = next((n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add)), None)
        if node is None:
            continue
        node.op = ast.Sub()
        (sources / name).write_text(ast.unparse(tree))
        assert version(sources) != before, name
        (sources / name).write_text(text)
    assert version(sources) == before
