"""The environment a number came from: code version, library versions and device."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sysconfig
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


# what a run's numbers depend on
NUMERIC_SOURCES = ("config.py", "kinds.py", "model.py", "data.py", "train.py", "run.py", "numerics.py", "classical.py")


@cache
def code_version(folder: Path = REPO / "alexnet") -> str:
    """Hash of what a training run's numbers depend on: the definitions in NUMERIC_SOURCES (CLI,
    tuning, tracking and docs don't). Each top-level statement but the imports counts as its syntax
    tree without docstrings, comments, layout or line numbers, and the hash takes them in sorted
    order: moving a definition within or between these modules, renaming a module, or editing a
    docstring or a comment keeps every stored run reusable; changing an operator, a constant or a
    default retrains them. The same on every Python from 3.11 (the tree is written without the
    fields later versions added)."""
    parts = sorted(_canonical(node) for name in NUMERIC_SOURCES
                   for node in ast.parse((folder / name).read_text(encoding="utf-8")).body
                   if not isinstance(node, (ast.Import, ast.ImportFrom)) and not _is_doc(node))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _is_doc(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _canonical(node) -> str:
    """``node`` as text: its type and fields, recursively, leaving out docstrings (a string standing
    alone as a statement) and the fields that say nothing about what runs (type_params: Python 3.12+;
    type_comment; a string's 'u' kind; a name's load/store context)."""
    if isinstance(node, list):
        return "[" + ",".join(_canonical(n) for n in node if not _is_doc(n)) + "]"
    if isinstance(node, ast.AST):
        fields = (_canonical(getattr(node, f, None)) for f in node._fields
                  if f not in ("type_params", "type_comment", "kind", "ctx"))
        return type(node).__name__ + "(" + ",".join(fields) + ")"
    return repr(node)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("invalid device='cuda': no CUDA device is visible; use --device cpu or auto")
    return torch.device(name)


def check_runtime(config) -> torch.device:
    """The device ``config`` runs on, after checking that it has what the config asks for
    (a precision the device lacks or an unavailable torch.compile fails here, before any work)."""
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    if config.precision == "tf32" and not (cuda and torch.cuda.get_device_capability(device)[0] >= 8):
        raise ValueError(f"invalid precision='tf32' on {device_name(device)}: TF32 needs a CUDA device of compute "
                         "capability 8.0 or newer (Ampere+); use fp32 or bf16")
    if config.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError(f"invalid precision='bf16' on {device_name(device)}: this GPU lacks bfloat16; use fp32")
    if config.compile:
        problem = compile_problem(device)
        if problem:
            raise ValueError(f"invalid compile=True: {problem}; run without --compile")
    return device


def compile_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` here, or None once it has compiled and run a
    test function there. Named first, what a compile needs beyond torch: triton on CUDA, a
    compiler (triton's launcher stub is built with $CC, else gcc or clang; Inductor's CPU kernels
    with $CXX, else g++) and Python's headers (Python.h, which both include); runtime images
    often lack the last two, and only a compile finds out."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile is not supported on Python {platform.python_version()} with torch {torch.__version__}"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "compiling for CUDA needs the triton package, which is not installed"
    if device.type == "cuda":
        compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang") or "gcc or clang"
        what = "C compiler ($CC, gcc or clang) for triton's launcher"
    else:
        compiler, what = os.environ.get("CXX", "g++"), "C++ compiler"
    if not shutil.which(compiler):
        return f"compiling for {'CUDA' if device.type == 'cuda' else 'the CPU'} needs a {what} ({compiler}) on PATH"
    scheme = sysconfig.get_default_scheme()
    headers = Path(sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"])
    if not (headers / "Python.h").is_file():
        return (f"compiling needs Python's headers ({headers / 'Python.h'} is missing: install the python3-dev "
                "package of this Python)")
    return _compile_test(str(device))


@cache  # one real compile per device and process: seconds on a GPU, more on a CPU
def _compile_test(device: str) -> str | None:
    from .untrusted import first_line

    try:
        doubled = torch.compile(lambda x: torch.relu(x) * 2, fullgraph=True)(torch.arange(-2.0, 2.0, device=device))
        if doubled.tolist() != [0.0, 0.0, 0.0, 2.0]:
            return f"torch.compile computed a test function wrongly ({doubled.tolist()})"
    except Exception as exc:  # noqa: BLE001 - whatever stops a compile is the answer
        return f"torch.compile failed on a test function ({type(exc).__name__}: {first_line(exc, 200)})"
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{platform.machine()}-{torch.get_num_threads()}threads"


def device_slug(device: torch.device) -> str:
    """A folder name for the device: ``cpu``, or the GPU's name (``nvidia-h200``)."""
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-") if device.type == "cuda" else "cpu"


@cache  # the CPU does not change within a process; environment() asks once per run
def cpu_class() -> str:
    """The CPU's vendor, family/model, widest vector ISA and cache sizes, from /proc/cpuinfo and
    sysfs: MKL and oneDNN choose kernels and their blocking by these, so counts are compared only
    within one class."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""

    def field(name: str) -> str:
        m = re.search(rf"^{name}\s*:\s*(.*)$", info, re.M)
        return m.group(1).strip() if m else "?"

    flags = set(field("flags").split())
    isa = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "?")
    caches = sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"))
    sizes = " ".join(p.read_text().strip() for p in caches) or field("cache size")
    return f"{platform.machine()} {field('vendor_id')} family {field('cpu family')} model {field('model')} {isa} " \
           f"caches {sizes}"


@cache
def native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX), which CPU bf16 autocast needs to
    be fast; without them oneDNN emulates bf16 in fp32."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", info) is not None


def environment(device: torch.device) -> dict:
    return {
        "git_commit": git_commit(),
        "code_version": code_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "python": platform.python_version(),
        "device": device_name(device),
        "cpu": cpu_class() + (", native bf16" if native_bf16() else ""),
    }
