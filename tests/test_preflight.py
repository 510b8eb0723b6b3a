"""The preflight: every numerics path for two SGD steps, an evaluation and a checkpoint read
back, before a budgeted GPU run spends its slice (scripts/gpu-run stops on a failure)."""

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


@pytest.mark.parametrize("args, expected", [(["--input-size", "64"], "invalid choice: 64"),
                                            (["--device", "tpu"], "invalid choice: 'tpu'")])
def test_bad_preflight_options_are_refused_before_any_work(args, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["preflight", *args])
    assert exit_.value.code == 2 and expected in capsys.readouterr().err
