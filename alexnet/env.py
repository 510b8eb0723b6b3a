"""The environment a number came from: code version, library versions and device."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import cache
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


@cache
def git_commit() -> str:
    """HEAD's commit, with '+dirty' when tracked files differ from it; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


NUMERIC_SOURCES = ("config.py", "model.py", "data.py", "train.py")  # what a training run's numbers depend on


@cache
def code_version() -> str:
    """Hash of the sources a training run's numbers depend on (CLI, tuning, tracking and docs don't)."""
    digest = hashlib.sha256()
    for path in (REPO / "alexnet" / name for name in NUMERIC_SOURCES):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("invalid device='cuda': no CUDA device is visible; use --device cpu or auto")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{platform.machine()}-{torch.get_num_threads()}threads"


def environment(device: torch.device) -> dict:
    return {
        "git_commit": git_commit(),
        "code_version": code_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "python": platform.python_version(),
        "device": device_name(device),
    }
