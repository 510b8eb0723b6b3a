"""Checkpoints without training: what ``alexnet.checkpoint`` refuses and why, its atomic write, its
writer lock and quarantine, and the trainer's ``save``/``resume`` round trip on a LeNet (weights,
SGD momentum, epochs, gradient norms and the RNG all back). Unit tests of the resume path, run by
``nox -s mutants``; the integration tier kills real runs and resumes them."""

import os
import resource
import signal
import zipfile

import pytest
import torch

from alexnet import checkpoint as ckpt
from alexnet.config import Config
from alexnet.result import TrainResult
from alexnet.train import build, resume, train_step
from alexnet.train import save as save_checkpoint

LENET = Config(arch="lenet", input_size=28, epochs=2, momentum=0.9, weight_decay=5e-4)


def _payload(**changes) -> dict:
    good = {"config_key": LENET.key(), "config": LENET.to_dict(), "seed": 3, "world_size": 1,
            "model": {"w": torch.ones(2)}, "optimizer": {"state": {}}, "epochs": [{"epoch": 1}],
            "grad_norms": {"0.weight": 1.5}, "rng": {"cpu": torch.get_rng_state()}}
    return {k: v for k, v in (good | changes).items() if v is not None}


def test_a_saved_checkpoint_loads_back_as_written_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "er" / "run.pt"  # folders made as needed
    ckpt.save(path, _payload())
    saved = ckpt.load(path)
    assert saved["seed"] == 3 and saved["epochs"] == [{"epoch": 1}] and torch.equal(saved["model"]["w"], torch.ones(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.pt"]


@pytest.mark.parametrize("changes, named", [({"epochs": None, "rng": None}, "epochs, rng"),
                                            ({"seed": "3"}, "seed"), ({"rng": [1]}, None),
                                            ({"model": []}, "model")])
def test_a_checkpoint_missing_or_mistyping_a_field_is_refused_naming_each(tmp_path, changes, named):
    path = tmp_path / "run.pt"
    torch.save(_payload(**changes), path)
    if named is None:  # a list of RNG states (one per rank) is a checkpoint's too
        assert ckpt.load(path)["rng"] == [1]
        return
    with pytest.raises(ckpt.DamagedCheckpoint) as err:
        ckpt.load(path)
    assert str(err.value) == (f"checkpoint {path} is not a checkpoint of this project (missing or malformed: "
                              f"{named}); delete it or pass another checkpoint path")


def test_a_checkpoint_that_is_not_a_dict_truncated_or_corrupt_is_damaged(tmp_path):
    path = tmp_path / "run.pt"
    torch.save([1, 2], path)
    with pytest.raises(ckpt.DamagedCheckpoint, match=r"\(missing or malformed: config_key, seed, world_size, model, "
                                                     r"optimizer, epochs, grad_norms, rng\)"):
        ckpt.load(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ckpt.DamagedCheckpoint, match="is damaged \\(truncated or corrupt: not a complete PyTorch "
                                                     "checkpoint archive\\); delete it or pass another"):
        ckpt.load(path)
    with zipfile.ZipFile(path, "w") as z:  # a zip archive, but not torch's
        z.writestr("data.txt", "hello")
    torch_says = "file in archive is not in a subdirectory: data.txt"
    with pytest.raises(ckpt.DamagedCheckpoint, match=f"checkpoint {path} is damaged \\(truncated or corrupt: .+"
                                                     f"{torch_says}\\); delete it"):
        ckpt.load(path)  # torch's own first line


def test_a_checkpoint_holding_an_object_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # overrides torch's default, not an explicit True
    path = tmp_path / "run.pt"
    torch.save({**_payload(), "extra": zipfile.ZipInfo("x")}, path)
    with pytest.raises(ckpt.DamagedCheckpoint) as err:
        ckpt.load(path)
    assert str(err.value).startswith(f"checkpoint {path} was refused unread: it holds objects other than tensors and "
                                     "plain data (")
    assert "Unsupported global: GLOBAL zipfile.ZipInfo" in str(err.value) and str(err.value).endswith(
        "which a checkpoint of this project never does; delete it or pass another checkpoint path")


def test_a_checkpoint_of_another_run_names_each_field_that_differs(tmp_path):
    path = tmp_path / "run.pt"
    saved = _payload()
    ckpt.check_owner(saved, path, LENET.to_dict(), 3, 1)  # this very run: no error
    other = Config(arch="lenet", input_size=28, epochs=3, momentum=0.9, weight_decay=5e-4).to_dict()
    with pytest.raises(ckpt.ForeignCheckpoint) as err:
        ckpt.check_owner(saved, path, other, 4, 2)
    assert str(err.value) == (f"checkpoint {path} belongs to another run (checkpoint → this run: epochs 2 → 3, seed 3 "
                              "→ 4, world_size 1 → 2); delete it or pass another checkpoint path")
    fewer = {**saved, "config": {k: v for k, v in LENET.to_dict().items() if k != "momentum"}}
    lower = {**LENET.to_dict(), "momentum": 0.5}
    with pytest.raises(ckpt.ForeignCheckpoint, match=f"\\(checkpoint → this run: config {LENET.key()} → "
                                                     f"{Config(**lower).key()}\\)"):
        ckpt.check_owner(fewer, path, lower, 3, 1)  # a field it did not save: told apart by the config's key
    ckpt.check_owner(fewer, path, LENET.to_dict(), 3, 1)  # missing, and the same by its key
    old = {k: v for k, v in saved.items() if k != "config"}  # written before checkpoints kept their config
    ckpt.check_owner(old, path, LENET.to_dict(), 3, 1)
    with pytest.raises(ckpt.ForeignCheckpoint, match=f"\\(checkpoint → this run: config {LENET.key()} → "
                                                     f"{Config(**other).key()}\\)"):
        ckpt.check_owner(old, path, other, 3, 1)


def test_a_failed_write_keeps_the_previous_checkpoint_and_removes_its_temporary(tmp_path):
    path = tmp_path / "run.pt"
    path.mkdir()  # the rename onto it fails, as a write to a full disk would
    with pytest.raises(OSError) as err:
        ckpt.save(path, _payload())
    assert str(err.value).startswith(f"could not write checkpoint {path} ([Errno 21] Is a directory: ")
    assert str(err.value).endswith(
        "): is the disk full? Free space and re-run; the previous checkpoint is kept")
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
    path.rmdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, hard))  # a file-size limit: the write fails part-way
    try:
        with pytest.raises(OSError, match="the previous checkpoint \\(none yet\\)"):
            ckpt.save(path, _payload())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert list(tmp_path.iterdir()) == []


def test_the_writer_lock_is_exclusive_names_its_holder_and_clears_dead_writers_temporaries(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"x")
    stale, other = tmp_path / "run.pt.node.12.abcd.tmp", tmp_path / "run.ptx.tmp"
    stale.write_bytes(b"half"), other.write_bytes(b"another run's")
    with ckpt.lock(path):
        assert not stale.exists() and other.exists() and path.exists()
        holder = (tmp_path / "run.pt.lock").read_text()
        assert holder.startswith("host ") and holder.endswith(f", pid {os.getpid()}")
        with pytest.raises(ckpt.CheckpointBusy) as err:
            with ckpt.lock(path):
                pass
        assert str(err.value) == (f"checkpoint {path} is in use by another process ({holder}); wait for it to "
                                  "finish, or give this run another checkpoint path")
    with ckpt.lock(path):  # released: taken again
        pass
    (tmp_path / "run.pt.lock").write_text("")
    assert ckpt._read_holder(tmp_path / "run.pt.lock") == "holder unknown"
    assert ckpt._read_holder(tmp_path / "missing.lock") == "holder unknown"
    ckpt.discard(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ptx.tmp"]
    ckpt.discard(path)  # nothing left to discard: no error


def test_a_bad_checkpoint_is_moved_aside_under_the_next_free_name(tmp_path):
    path = tmp_path / "run.pt"
    for expected in ("run.pt.corrupt", "run.pt.corrupt2", "run.pt.corrupt3"):
        path.write_text(expected)
        assert ckpt.quarantine(path) == tmp_path / expected and not path.exists()
    assert (tmp_path / "run.pt.corrupt2").read_text() == "run.pt.corrupt2"


def _step_and_result(seed: int = 3, config: Config = LENET):
    step = build(config, torch.device("cpu"), seed)
    return step, TrainResult(config.to_dict(), seed, {}, "test", 0, 0, 0, 0)


def test_resume_restores_weights_momentum_epochs_gradient_norms_and_the_random_stream(tmp_path):
    path = tmp_path / "run.pt"
    step, result = _step_and_result()
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    train_step(step, x, y)  # momentum 0.9: SGD now holds a buffer per parameter
    result.epochs, result.grad_norms = [{"epoch": 1, "train_loss": 2.3}], {"0.weight": 0.7, "3.weight": 0.2}
    torch.manual_seed(11)
    save_checkpoint(path, step, result, 0)
    expected_draw = torch.rand(4)
    expected_weights = {k: v.clone() for k, v in step.net.state_dict().items()}
    train_step(step, x, y)
    expected_next = [p.detach().clone() for p in step.net.parameters()]

    fresh, again = _step_and_result()
    torch.manual_seed(99)
    resume(path, fresh, again, 0)
    assert torch.equal(torch.rand(4), expected_draw)  # the random stream where the checkpoint left it
    assert again.epochs == result.epochs and again.grad_norms == result.grad_norms
    assert all(torch.equal(v, expected_weights[k]) for k, v in fresh.net.state_dict().items())
    momentum = [fresh.optimizer.state[p]["momentum_buffer"] for p in fresh.net.parameters()]
    assert len(momentum) == len(expected_next) and all(m.abs().sum() > 0 for m in momentum)
    train_step(fresh, x, y)  # the same next step as the run that never stopped: momentum came back
    assert all(torch.equal(p, q) for p, q in zip(fresh.net.parameters(), expected_next))


def test_resume_refuses_another_run_s_checkpoint_before_loading_anything(tmp_path):
    path = tmp_path / "run.pt"
    step, result = _step_and_result()
    save_checkpoint(path, step, result, 0)
    other, other_result = _step_and_result(seed=4)
    before = [p.detach().clone() for p in other.net.parameters()]
    with pytest.raises(ckpt.ForeignCheckpoint, match=f"checkpoint {path} belongs to another run \\(.*seed 3 → 4"):
        resume(path, other, other_result, 0)
    assert all(torch.equal(p, q) for p, q in zip(other.net.parameters(), before)) and other_result.epochs == []
    saved = ckpt.load(path)
    assert (saved["config_key"], saved["config"], saved["seed"], saved["world_size"]) == (
        LENET.key(), LENET.to_dict(), 3, 1) and set(saved["rng"]) == {"cpu"}
