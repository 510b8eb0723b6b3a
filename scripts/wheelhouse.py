"""Build an offline wheelhouse for a GPU node: the whole dependency closure of the project's
packages, pure-Python ones included, for a chosen Python version and platform, minus only the
compiled stack the node must provide (torch, torchvision, triton, nvidia-*, numpy, pandas, scipy,
matplotlib, scikit-learn, scikit-image, and what they need), which ``scripts/gpu-run`` checks on
the node before any work.

    python scripts/wheelhouse.py wheelhouse --python-version 3.12

Then, on the node (no network): ``scripts/gpu-run`` installs it when packages are missing, or
by hand ``python -m pip install --no-index --no-deps --target SITE wheelhouse/*.whl`` and
``PYTHONPATH=SITE:REPO``. It does not depend on the node's versions: every package it needs
besides the compiled stack is in it, and SITE comes first on the import path, so a bundled
typing-extensions wins over an older one on the node. MLflow comes as ``mlflow-skinny`` plus
SQLAlchemy and Alembic (the tracking client and its SQLite store; the UI server, which a node
does not need, is left out). Every package is pinned: the project's pins (constraints.txt), and
the rest at the versions installed where this runs (the versions tested at home), so that a
new release between two builds changes nothing; ``constraints.txt`` in the wheelhouse lists them."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from alexnet.untrusted import Parser  # noqa: E402  one line per bad option, as the project's commands

LIMIT_MIB = 60
# the compiled stack a node provides (its CUDA build of torch, and numpy-ABI packages built with it)
NODE_STACK = ("torch", "torchvision", "triton", "numpy", "pandas", "scipy", "matplotlib", "scikit-learn",
              "scikit-image")
NODE_PREFIXES = ("nvidia-", "cuda-")  # CUDA's libraries as wheels: torch's, from the node
NODE_SWAP = {"mlflow": ["mlflow-skinny", "sqlalchemy", "alembic"]}  # the client and its SQL store only


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def node_provides(name: str) -> bool:
    return norm(name) in NODE_STACK or norm(name).startswith(NODE_PREFIXES)


def pinned(constraints: Path) -> str:
    """``constraints``' lines, then every other package installed here at its installed version
    (the node's compiled stack and local builds left out): the constraints for the download."""
    own = constraints.read_text()
    named = {norm(re.split(r"[<>=!~\[ ;]", line.split("#")[0].strip(), maxsplit=1)[0]) for line in own.splitlines()}
    here = {norm(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}
    extra = [f"{name}=={version}" for name, version in sorted(here.items())
             if name not in named and not node_provides(name) and "+" not in version]
    return own.rstrip("\n") + "\n# installed where the wheelhouse was built\n" + "\n".join(extra) + "\n"


def requirements(constraints: Path) -> list[str]:
    """The project's runtime dependencies a node lacks (the compiled stack left out), at the
    versions ``constraints`` pins."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[norm(name)] = version.strip()
    out = []
    for dep in deps:
        name = norm(re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0])
        if node_provides(name):
            continue
        for n in NODE_SWAP.get(name, [name]):
            version = pins.get(n) or (pins.get(name) if n.startswith(name) else None)
            out.append(f"{n}=={version}" if version else (dep if n == name else n))
    return out


def wheel_name(path: Path) -> str:
    return norm(path.name.split("-")[0])


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="folder for the wheels (built beside it, then replacing it whole)")
    p.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                   help="the target's Python, e.g. 3.12 (default: this one)")
    p.add_argument("--platform", action="append",
                   help="pip platform tags of the target (default: manylinux x86_64, glibc 2.17 to 2.28)")
    p.add_argument("--constraints", type=Path, default=REPO / "constraints.txt", help="versions to pin")
    args = p.parse_args(argv)
    if not re.fullmatch(r"3\.\d{1,2}", args.python_version):
        p.error(f"invalid --python-version {args.python_version!r}: expected e.g. 3.12")
    platforms = args.platform or ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                                  "manylinux2014_x86_64", "manylinux1_x86_64"]
    if not os.path.isfile(args.constraints):
        p.error(f"invalid --constraints {str(args.constraints)!r}: no such file")
    ours = {"requirements.txt", "constraints.txt"}  # an earlier wheelhouse: the only folder replaced whole
    if os.path.lexists(args.out) and not (args.out.is_dir() and not args.out.is_symlink() and all(
            f.name in ours or f.suffix == ".whl" for f in args.out.iterdir())):
        p.error(f"invalid out {str(args.out)!r}: it exists and is not a wheelhouse (only .whl files, requirements.txt "
                "and constraints.txt), and it would be replaced whole: pass a new folder")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{args.out.name}-", dir=args.out.parent))
    except OSError as exc:
        p.error(f"invalid out {str(args.out)!r}: cannot write beside it ({exc.strerror})")
    try:  # built beside the old wheelhouse, which is replaced only once the new one is complete
        reqs = requirements(args.constraints)
        (build / "constraints.txt").write_text(pinned(args.constraints))
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", args.python_version, *[f"--platform={t}" for t in platforms], "-d", str(build),
               "-c", str(build / "constraints.txt"), *reqs]
        if subprocess.run(cmd).returncode:
            print(f"error: pip could not download the wheels (above); {args.out} is left as it was", file=sys.stderr)
            return 1
        left_out = []
        for wheel in build.glob("*.whl"):  # pulled in by a bundled package (optuna needs numpy)
            if node_provides(wheel_name(wheel)):
                left_out.append(wheel_name(wheel))
                wheel.unlink()
        wheels = sorted(build.glob("*.whl"))
        size = sum(w.stat().st_size for w in wheels) / 2**20
        if size > LIMIT_MIB:
            print(f"error: the wheelhouse would be {size:.1f} MiB, over the {LIMIT_MIB} MiB a node transfer allows; "
                  f"{args.out} is left as it was", file=sys.stderr)
            return 1
        (build / "requirements.txt").write_text("\n".join(reqs) + "\n")
        if args.out.exists():
            shutil.rmtree(args.out)
        build.rename(args.out)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    print(f"{len(wheels)} wheels, {size:.1f} MiB, for Python {args.python_version} on {platforms[0]} (left out, "
          f"the node's: {', '.join(sorted(left_out)) or 'none pulled in'}): {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
