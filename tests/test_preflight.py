"""The preflight: every numerics path for two SGD steps, an evaluation and a run interrupted
after its first step and resumed from its checkpoint, before a budgeted GPU run spends its
slice (scripts/gpu-run stops on a failure)."""

import pytest

from alexnet import preflight
from alexnet.cli import main


def test_every_cpu_path_trains_two_steps_and_reads_its_checkpoint_back(fmnist):
    checks = preflight.run(fmnist, "cpu", input_size=28, width=0.25)
    status = {c.path: c.status for c in checks}
    assert status == {"fp32 (TF32 off), NCHW": "ok", "fp32 (TF32 off) + channels_last": "ok", "tf32": "skipped",
                      "bf16 autocast + channels_last": "ok"}  # compile: on CUDA only unless asked
    ran = [c for c in checks if c.status == "ok"]
    assert all(0 < c.loss < 10 and c.seconds > 0 for c in ran)
    assert {c.config.precision for c in ran} == {"fp32", "bf16"} and {c.config.channels_last for c in ran} == {
        False, True}
    assert "capability 8.0" in next(c.detail for c in checks if c.path == "tf32")


def test_a_failing_path_is_reported_with_its_traceback_and_the_cli_exits_1(fmnist, data_dir, monkeypatch, capsys):
    """Fault injected: bf16 autocast raising inside the trainer (as a torch version's broken path
    would); the other paths still run, and the CLI names the one that failed."""
    real = preflight.train

    def broken(config, *args, **kwargs):
        if config.precision == "bf16":
            raise RuntimeError("bf16 autocast is broken here")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(preflight, "train", broken)
    assert main(["preflight", "--device", "cpu", "--input-size", "28", "--width", "0.25",
                 "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err
    assert "preflight: bf16 autocast + channels_last: failed (RuntimeError: bf16 autocast is broken here)" in err
    assert "Traceback (most recent call last)" in err and "preflight: fp32 (TF32 off) + channels_last: ok" in err
    assert "preflight failed: bf16 autocast + channels_last" in err


def test_a_resume_that_loses_state_fails_the_preflight(fmnist, monkeypatch):
    """Fault injected: a resume that restores the epochs but not quite the weights (as a torch
    version's changed state-dict format might). The run resumed after its first step no longer
    matches the uninterrupted one, and the preflight names the number that differs."""
    import importlib

    import torch

    trainer = importlib.import_module("alexnet.train")  # the module (the package exports the function)

    real = trainer.resume

    def lossy(path, step, result, rank):
        real(path, step, result, rank)
        with torch.no_grad():
            for p in step.net.parameters():
                p.mul_(0.5)

    monkeypatch.setattr(trainer, "resume", lossy)
    checks = preflight.run(fmnist, "cpu", input_size=28, width=0.25)
    failed = [c for c in checks if c.status == "failed"]
    assert len(failed) == 3 and all("differs from the uninterrupted run: epoch 2 train_loss" in c.detail
                                    for c in failed)


def test_resume_difference_is_exact_on_a_cpu_and_within_the_tolerance_on_cuda():
    from types import SimpleNamespace

    def run(loss):
        return SimpleNamespace(epochs=[{"epoch": 1, "train_loss": 2.0, "train_acc": 0.5},
                                       {"epoch": 2, "train_loss": loss, "train_acc": 0.5}])

    close, far = 2.0 * (1 + preflight.RESUME_TOLERANCE / 10), 2.0 * (1 + preflight.RESUME_TOLERANCE * 10)
    assert preflight.resume_difference(run(2.0), run(2.0), exact=True) == ""
    assert preflight.resume_difference(run(2.0), run(close), exact=True) == f"epoch 2 train_loss {close} against 2.0"
    assert preflight.resume_difference(run(2.0), run(close), exact=False) == ""
    assert preflight.resume_difference(run(2.0), run(far), exact=False).startswith("epoch 2 train_loss")
    assert preflight.resume_difference(run(2.0), SimpleNamespace(epochs=[]), exact=False) == "0 epochs, expected 2"


@pytest.mark.parametrize("args, expected", [(["--input-size", "64"], "invalid choice: 64"),
                                            (["--device", "tpu"], "invalid choice: 'tpu'")])
def test_bad_preflight_options_are_refused_before_any_work(args, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["preflight", *args])
    assert exit_.value.code == 2 and expected in capsys.readouterr().err
