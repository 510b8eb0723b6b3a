"""Checkpoint files: read back safely, written atomically, one writer per path.

A checkpoint is untrusted input (a shared ``--checkpoint-dir`` is writable by every worker):
it is read with ``torch.load(weights_only=True)``, which accepts tensors and plain containers
only, so a crafted file cannot run code. Its content is then checked field by field.

Writers: ``lock(path)`` holds an exclusive ``flock`` on ``<path>.lock`` for as long as a run
trains on that path (a second writer gets an error naming the holder); ``save`` writes to a
temporary file unique to the writer and renames it into place, so a reader never sees a
half-written file; temporaries left by a killed writer are removed when the lock is taken.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pickle
import socket
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch

from .untrusted import first_line

# what a checkpoint must hold, and the type of each field
FIELDS = {"config_key": str, "seed": int, "world_size": int, "model": dict, "optimizer": dict, "epochs": list,
          "grad_norms": dict, "rng": (dict, list)}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""


class DamagedCheckpoint(CheckpointError):
    """Truncated, corrupt, not a checkpoint of this project, or holding more than plain data."""


class ForeignCheckpoint(CheckpointError):
    """A sound checkpoint of another run (other config, seed or number of ranks)."""


class CheckpointBusy(CheckpointError):
    """Another live process trains on this checkpoint path."""


def load(path: Path) -> dict:
    """The checkpoint's content on the CPU, or DamagedCheckpoint naming the file and what is wrong
    with it. Always read to the CPU: its RNG states must stay CPU ByteTensors, the only kind
    ``torch.set_rng_state`` and ``torch.cuda.set_rng_state`` accept (aten's ``check_rng_state``:
    "RNG state must be a torch.ByteTensor"); the model's and the optimiser's ``load_state_dict``
    copy tensors onto their parameters' device themselves."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a truncated one loses its directory
        raise DamagedCheckpoint(f"checkpoint {path} is damaged (truncated or corrupt: not a complete PyTorch "
                                "checkpoint archive); delete it or pass another checkpoint path")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).splitlines()
        why = next((line.strip() for line in lines if "unsupported" in line.lower()), "unsupported content")[:200]
        raise DamagedCheckpoint(f"checkpoint {path} was refused unread: it holds objects other than tensors and "
                                f"plain data ({why}), which a checkpoint of this project never does; delete it or "
                                "pass another checkpoint path") from None
    except Exception as exc:  # noqa: BLE001  torch reports damage as RuntimeError, EOFError, zip or OS errors
        raise DamagedCheckpoint(f"checkpoint {path} is damaged (truncated or corrupt: {first_line(exc, 200)}); "
                                "delete it or pass another checkpoint path") from None
    wrong = [name for name, kind in FIELDS.items() if not isinstance(saved, dict) or
             not isinstance(saved.get(name), kind)]
    if wrong:
        raise DamagedCheckpoint(f"checkpoint {path} is not a checkpoint of this project (missing or malformed: "
                                f"{', '.join(wrong)}); delete it or pass another checkpoint path")
    return saved


def check_owner(saved: dict, path: Path, config: dict, seed: int, world: int) -> None:
    """ForeignCheckpoint, naming each field that differs (``epochs 1 → 2``), unless ``saved``
    was written by this very run."""
    ours = {**config, "seed": seed, "world_size": world}
    theirs = {**saved.get("config", {}), "seed": saved["seed"], "world_size": saved["world_size"]}
    diff = [f"{k} {theirs.get(k, '?')!r} → {v!r}" for k, v in ours.items() if theirs.get(k, v) != v]
    if not diff and saved["config_key"] != _key(config):
        diff = [f"config {saved['config_key']} → {_key(config)}"]  # an older checkpoint without its config
    if diff:
        raise ForeignCheckpoint(f"checkpoint {path} belongs to another run (checkpoint → this run: "
                                f"{', '.join(diff)}); delete it or pass another checkpoint path")


def _key(config: dict) -> str:
    from .config import Config

    return Config(**config).key()


def save(path: Path, payload: dict) -> None:
    """Atomic: written to a temporary file unique to this writer, then renamed over ``path``; a
    crash or a full disk mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch's zip writer reports a failed write as a RuntimeError
        tmp.unlink(missing_ok=True)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else exc.__class__.__name__
        raise OSError(f"could not write checkpoint {path} ({reason}): is the disk full? Free space and "
                      f"re-run; the previous checkpoint{' is kept' if path.exists() else ' (none yet)'}") from exc


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def lock(path: Path):
    """Hold the exclusive writer lock of checkpoint ``path`` (CheckpointBusy if a live process
    holds it), removing temporaries left by writers that died."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = _lock_path(path)
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = _read_holder(lock_file)
            raise CheckpointBusy(f"checkpoint {path} is in use by another process ({holder}); wait for it to "
                                 "finish, or give this run another checkpoint path") from None
        try:  # the file we locked may have been removed by a holder that just finished: lock the new one
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()}, pid {os.getpid()}".encode())
        for stale in path.parent.glob(path.name + ".*tmp"):  # no live writer holds them: we hold the lock
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_holder(lock_file: Path) -> str:
    try:
        return lock_file.read_text()[:200] or "holder unknown"
    except OSError:
        return "holder unknown"


def discard(path: Path) -> None:
    """Remove a finished run's checkpoint and its lock file, under the lock."""
    with lock(path):
        path.unlink(missing_ok=True)
        _lock_path(path).unlink(missing_ok=True)


def quarantine(path: Path) -> Path:
    """Move a damaged or foreign checkpoint aside as ``<path>.corrupt`` (numbered if taken); return
    where it went."""
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt{n}")
    os.replace(path, target)
    return target
