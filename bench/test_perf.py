"""The perf gates (``nox -s perf``): instruction counts under callgrind (tight, 5%), then
wall-clock times normalised by a calibration (loose, 2x) as the second signal."""

import itertools
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from alexnet.config import Config
from alexnet.train import build, train_step
from bench import counts, gate
from bench import reference as refs
from bench.conftest import SMALL_TRAIN
from bench.gate import loader

TRAIN = "train_step_28px_b4"
ALEXNET = Path(__file__).parents[1] / "alexnet"
# A real change to the training step, made in a copy of alexnet/: a leftover forward pass of
# half the batch whose output is thrown away (about 15% more work per step).
ORIGINAL = "logits = step.model(x)"  # the forward pass of train_step; the leftover one goes after it, as indented


def with_slowdown(source: str) -> str:
    """train.py's source with the slowdown after the forward pass (the line found whatever its indent)."""
    lines = [line for line in source.splitlines(keepends=True) if line.strip() == ORIGINAL]
    assert len(lines) == 1, "train_step changed: update the injected line"
    indent = lines[0][:len(lines[0]) - len(lines[0].lstrip())]
    return source.replace(lines[0], lines[0] + indent + "step.model(x[: len(x) // 2])  # injected slowdown\n")


@pytest.fixture(scope="session")
def counted(tmp_path_factory, request):
    """Every count in one go, side by side on the two cores: the tree as it is (all benchmarks),
    the reference commit's code from a git worktree (all benchmarks; none when the commit is not
    in the clone, or while --update-baseline makes a new reference) and the training step of a
    copy of alexnet/ with the injected slowdown."""
    copy = tmp_path_factory.mktemp("injected")
    shutil.copytree(ALEXNET, copy / "alexnet", ignore=shutil.ignore_patterns("__pycache__"))
    source = (copy / "alexnet" / "train.py").read_text()
    (copy / "alexnet" / "train.py").write_text(with_slowdown(source))
    baseline = refs.load_baseline()
    commit = None if request.config.getoption("--update-baseline") else baseline["reference_commit"]
    with refs.reference_tree(commit) as ref:
        reference = counts.Counting(list(counts.NUMBER), pythonpath=str(ref)) if ref else None
        injected = counts.Counting([TRAIN], pythonpath=str(copy))
        tree = counts.Counting(list(counts.NUMBER))
        found = {"tree": tree.result(), "injected": injected.result(), "copy": copy, "baseline": baseline,
                 "reference": reference.result() if reference else None, "reference_tree": ref}
    return found


def _reference(counted) -> tuple[dict, str]:
    """{machine: counts} to compare with, and the line naming where they came from."""
    ref, baseline = counted["reference"], counted["baseline"]
    if ref is not None:
        return ({ref["machine"]: ref["benchmarks"]},
                f"reference: commit {baseline['reference_commit'][:12]} counted in the same run (git worktree)")
    return refs.fallback(counted["tree"], baseline)


def test_instruction_counts_within_the_reference(counted, request):
    """The gate itself: every benchmark within 5% of the reference commit's count, measured in the
    same run on this machine, whatever its CPU class (the stored counts when the commit is absent)."""
    measured = counted["tree"]
    if request.config.getoption("--update-baseline"):
        head = refs.store_baseline(measured)
        pytest.skip(f"instruction counts stored for {measured['machine']}; reference commit now {head[:12]}")
    reference, source = _reference(counted)
    lines, failures = refs.compare(measured, reference)
    print(f"machine: {measured['machine']}\n{source}\n" + "\n".join(lines))
    if counted["reference"] is not None:
        assert counted["reference"]["alexnet"].startswith(str(counted["reference_tree"])), "not the reference's code"
    if not reference:
        pytest.skip(source)
    assert not failures, "\n".join(failures)


def test_count_gate_catches_an_injected_slowdown(counted):
    """A 15% slower training step fails the gate and names the functions that grew, against the
    unchanged tree measured in the same run and against the reference commit's count."""
    tree, injected = counted["tree"], counted["injected"]
    assert injected["alexnet"].startswith(str(counted["copy"])), "the copy with the slowdown was not the one imported"
    assert tree["alexnet"].startswith(str(ALEXNET)), tree["alexnet"]
    reference, _ = _reference(counted)
    if reference:
        assert len(refs.compare(injected, reference)[1]) == 1  # caught against the reference as well
    lines, failures = refs.compare(injected, {tree["machine"]: tree["benchmarks"]})
    ratio = injected["benchmarks"][TRAIN]["per_call"] / tree["benchmarks"][TRAIN]["per_call"]
    print(f"injected slowdown: {ratio:.4f}x the unchanged training step (threshold {1 + refs.THRESHOLD:.2f}x); "
          f"the gate's message:\n{failures[0] if failures else '(none)'}")
    assert 1.10 < ratio < 1.25, ratio
    assert len(failures) == 1 and failures[0].startswith(TRAIN) and "functions that grew most" in failures[0]
    assert "+" in failures[0].splitlines()[2]  # a grown function, with its count
    if os.environ.get("ALEXNET_PERF_OUT"):
        out = Path(os.environ["ALEXNET_PERF_OUT"])
        out.mkdir(parents=True, exist_ok=True)
        ref = counted["reference"]
        (out / "count_gate.json").write_text(json.dumps({
            "machine": tree["machine"], "threshold": refs.THRESHOLD, "injected_ratio": round(ratio, 4),
            "reference_commit": counted["baseline"]["reference_commit"] if ref else None,
            "unchanged": {n: b["per_call"] for n, b in tree["benchmarks"].items()},
            "reference": {n: b["per_call"] for n, b in ref["benchmarks"].items()} if ref else None,
            "unchanged_over_reference": {n: round(b["per_call"] / ref["benchmarks"][n]["per_call"], 6)
                                         for n, b in tree["benchmarks"].items()} if ref else None,
            "injected_failure": failures[0],
            "wall_s": {"tree": tree["wall_s"], "injected": injected["wall_s"], "reference": ref and ref["wall_s"]}},
            indent=1) + "\n")


def _train_step_fn(tiny_data, repeat: int = 1):
    device = torch.device("cpu")
    sgd = build(SMALL_TRAIN, device, seed=0)
    batches = itertools.cycle(list(loader(*tiny_data, SMALL_TRAIN.batch_size, 28).epoch(0)))

    def step():
        x, y = next(batches)
        for _ in range(repeat):  # repeat > 1: a deliberately slowed step
            train_step(sgd, x, y)

    return step


def test_train_step(gated, tiny_data):
    gated("train_step_28px_b16", _train_step_fn(tiny_data))


def test_inference_batch(gated, tiny_data):
    config = Config(input_size=224, device="cpu")
    model = build(config, torch.device("cpu"), seed=0).model
    model.eval()
    x, _ = next(loader(*tiny_data, 8, 224).epoch(0))

    def infer():
        with torch.no_grad():
            model(x)

    gated("inference_224px_b8", infer)


def test_pipeline_batch(gated, tiny_data):
    batches = loader(*tiny_data, 128, 224, augment=True)
    epochs = itertools.count()
    stream = itertools.chain.from_iterable(batches.epoch(e) for e in epochs)
    gated("pipeline_224px_b128_augment", lambda: next(stream))


def test_gate_fails_on_a_slowed_training_step(gated, tiny_data, request):
    """The gate works: a training step doing its work four times is caught."""
    if request.config.getoption("--update-baseline"):
        pytest.skip("no baseline to compare with while it is being written")
    ratio = gated("slowed", _train_step_fn(tiny_data, repeat=4), check=False)
    failure = gate.verdict("train_step_28px_b16", ratio, gate.load_baseline())
    assert failure is not None and "x its baseline" in failure
