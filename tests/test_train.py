import math

import pytest
import torch

from alexnet.config import Config
from alexnet.train import train

# the quick scale's network (1/4 width) with momentum: SGD keeps a state, so a resume that lost it would show
SMALL = Config(input_size=28, width=0.25, train_size=200, test_size=100, batch_size=32, epochs=2, momentum=0.9)


def _numbers(result):
    """Everything measured except wall-clock timings."""
    return [{k: v for k, v in e.items() if k not in ("examples_per_s", "epoch_time_s")} for e in result.epochs]


def test_same_config_and_seed_give_identical_numbers(fmnist):
    a, b = train(SMALL, seed=3, data=fmnist), train(SMALL, seed=3, data=fmnist)
    assert _numbers(a) == _numbers(b) and a.grad_norms == b.grad_norms
    assert _numbers(train(SMALL, seed=4, data=fmnist)) != _numbers(a)
    assert a.status == "finished" and len(a.epochs) == 2
    assert a.seed == 3 and a.config["lr"] == 0.01 and a.env["torch"]
    assert set(a.grad_norms) == {"0.Conv2d", "3.Conv2d", "6.Conv2d", "8.Conv2d", "10.Conv2d",
                                    "14.Linear", "17.Linear", "20.Linear"}


def test_resume_after_interruption_gives_the_same_numbers(fmnist, tmp_path):
    """At momentum 0.9 with weight decay (SGD keeps a state a lost optimizer would show), and the
    first epoch's gradient norms (measured once, carried by the checkpoint) as well."""
    config = Config(**{**SMALL.to_dict(), "epochs": 3, "augment": True, "weight_decay": 5e-4})
    uninterrupted = train(config, seed=1, data=fmnist)

    def crash(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(config, seed=1, data=fmnist, checkpoint=ckpt, on_epoch=crash)
    seen = []
    resumed = train(config, seed=1, data=fmnist, checkpoint=ckpt, on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [3]  # epochs 1 and 2 came from the checkpoint
    assert _numbers(resumed) == _numbers(uninterrupted)
    assert resumed.grad_norms == uninterrupted.grad_norms and len(resumed.grad_norms) == 8


def test_checkpoint_of_another_run_is_refused(fmnist, tmp_path):
    ckpt = tmp_path / "run.pt"
    train(Config(**{**SMALL.to_dict(), "epochs": 1}), seed=0, data=fmnist, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"belongs to another run \(checkpoint → this run: lr 0.01 → 0.02\)"):
        train(Config(**{**SMALL.to_dict(), "epochs": 1, "lr": 0.02}), seed=0, data=fmnist, checkpoint=ckpt)


def test_diverging_run_stops_and_is_reported(fmnist):
    config = Config(**{**SMALL.to_dict(), "lr": 1e6, "epochs": 5})
    result = train(config, seed=0, data=fmnist)
    assert result.status == "diverged"
    assert result.diverged_at_epoch < 5 and len(result.epochs) < 5
    # the caller carries on: a sane run right after is unaffected
    assert math.isfinite(train(SMALL, seed=0, data=fmnist).final("train_loss"))


def test_bf16_and_nchw_layout_are_recorded_and_train(fmnist):
    # 2 steps of 20 images: bf16 autocast on a CPU without native bf16 is emulated, about 10x slower than fp32
    config = Config(**{**SMALL.to_dict(), "train_size": 40, "test_size": 20, "batch_size": 20, "epochs": 1,
                       "precision": "bf16", "channels_last": False})
    seen = set()  # what the layers computed in: the effect of autocast, not the config it echoes
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.add(out.dtype) if isinstance(module, torch.nn.Linear) and module.training
        else None)  # the training step's forward passes
    try:
        result = train(config, seed=0, data=fmnist, progress=True)
        assert seen == {torch.bfloat16}
        seen.clear()
        train(Config(**{**config.to_dict(), "precision": "fp32"}), seed=0, data=fmnist)
        assert seen == {torch.float32}
    finally:
        hook.remove()
    assert result.status == "finished"
    assert result.config["precision"] == "bf16" and result.config["channels_last"] is False


def test_tf32_on_cpu_is_rejected(fmnist):
    with pytest.raises(ValueError, match="precision='tf32'"):
        train(Config(**{**SMALL.to_dict(), "precision": "tf32", "device": "cpu"}), data=fmnist)


@pytest.mark.slow  # 6-10 s
def test_three_epochs_on_2000_images_are_clearly_above_chance(fmnist):
    """The quick scale's network (the 28-px AlexNet at 1/4 width), 3 epochs of batch 32 over a
    2,000-image stratified subset (189 SGD steps, momentum 0.9); chance is 0.10 (std 0.01 on
    1,000 test images). Seeds 0-5 reached 0.53-0.64 on an AVX-512 CPU. (The full-width net after
    one epoch, 63 steps, sat at 0.16-0.22 there: too close to the bar to decide on every CPU.)"""
    config = Config(input_size=28, width=0.25, train_size=2000, test_size=1000, epochs=3, batch_size=32, lr=0.01,
                    momentum=0.9)
    result = train(config, seed=0, data=fmnist)
    assert result.final("test_acc") > 0.3


def _tf32_views() -> tuple:
    """Both of torch's views of the CUDA TF32 flags (settable and readable without a GPU): the
    fp32_precision strings and the legacy values; a reader of the legacy ones raises when the
    two disagree (torch >= 2.9), as Inductor's does inside torch.compile."""
    import torch

    b = torch.backends
    return (b.cuda.matmul.fp32_precision == "tf32", b.cudnn.conv.fp32_precision == "tf32",
            b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, torch.get_float32_matmul_precision())


@pytest.mark.parametrize("prec", ["fp32", "tf32", "bf16"])
def test_the_precision_flags_hold_through_the_backward_pass_with_both_views_agreeing(fmnist, prec):
    """Kernels read the TF32 flags when they launch, and the backward's launch after the forward.
    A hook on the first convolution's and the last dense layer's weight gradients reads the flags
    while ``loss.backward()`` runs: the run's precision must hold there, not torch's defaults
    (cuDNN convolutions default to TF32, which an fp32 run's convolution gradients then used).
    Afterwards the process's flags are as they were."""
    import torch

    from alexnet.train import build, train_step

    before = _tf32_views()
    config = Config(input_size=28, width=0.25, batch_size=4, precision=prec, device="cpu")
    step = build(config, torch.device("cpu"), seed=0)
    during = []
    for layer in (step.net[0], step.net[-1]):  # a convolution's gradient and a matmul's
        layer.weight.register_hook(lambda grad: during.append(_tf32_views()))
    train_step(step, fmnist.train_images[:4].unsqueeze(1).float() / 255, fmnist.train_labels[:4])
    tf32 = prec == "tf32"
    assert during == [(tf32, tf32, tf32, tf32, "high" if tf32 else "highest")] * 2
    assert _tf32_views() == before


def test_a_checkpoint_reads_back_to_the_cpu_where_its_rng_states_can_be_restored(fmnist, tmp_path):
    """torch.set_rng_state and torch.cuda.set_rng_state take only CPU ByteTensors; a load mapped
    to the training device (CUDA) moved the saved states there, and every resume on a GPU failed.
    The load maps to the CPU, whatever device the run trains on."""
    import torch

    from alexnet import checkpoint as ckpt

    path = tmp_path / "run.pt"
    train(Config(**{**SMALL.to_dict(), "epochs": 1}), seed=0, data=fmnist, checkpoint=path)
    saved = ckpt.load(path)
    state = saved["rng"]["cpu"]
    assert state.device.type == "cpu" and state.dtype == torch.uint8
    assert all(t.device.type == "cpu" for t in saved["model"].values())
    torch.set_rng_state(state)  # accepted
    with pytest.raises(TypeError, match="RNG state must be a torch.ByteTensor"):
        torch.set_rng_state(state.to("meta"))  # what a state mapped off the CPU meets
