"""Build an offline wheelhouse: every package the project needs except torch and torchvision,
for a chosen Python version and platform, leaving out what the target already has.

    python scripts/wheelhouse.py wheelhouse --python-version 3.12 --have scripts/h200-packages.txt

Then, on the node (no network): ``scripts/gpu-run`` installs it when packages are missing, or
by hand ``python -m pip install --no-index --no-deps --target SITE wheelhouse/*.whl`` and
``PYTHONPATH=SITE:REPO``. The wheelhouse is the resolved closure minus the target's packages,
so it installs with ``--no-deps`` and needs nothing from an index. MLflow comes as
``mlflow-skinny`` plus SQLAlchemy and Alembic (the tracking client and its SQLite store; the UI
server, which a node does not need, is left out): about 37 MiB in all, 20 MiB for the H200 node
(scripts/h200-packages.txt: what it has already)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT_MIB = 60
SKIP = {"torch", "torchvision"}  # the node's own CUDA build
NODE_SWAP = {"mlflow": ["mlflow-skinny", "sqlalchemy", "alembic"]}  # the client and its SQL store only


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(constraints: Path) -> list[str]:
    """The project's runtime dependencies for a node, at the versions ``constraints`` pins."""
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
        if name in SKIP:
            continue
        for n in NODE_SWAP.get(name, [name]):
            version = pins.get(n) or (pins.get(name) if n.startswith(name) else None)
            out.append(f"{n}=={version}" if version else (dep if n == name else n))
    return out


def wheel_name(path: Path) -> str:
    return norm(path.name.split("-")[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="folder for the wheels (built beside it, then replacing it whole)")
    p.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                   help="the target's Python, e.g. 3.12 (default: this one)")
    p.add_argument("--platform", action="append",
                   help="pip platform tags of the target (default: manylinux x86_64, glibc 2.17 to 2.28)")
    p.add_argument("--have", type=Path,
                   help="the target's installed packages, one name per line (or `pip freeze` output): left out")
    p.add_argument("--constraints", type=Path, default=REPO / "constraints.txt", help="versions to pin")
    args = p.parse_args(argv)
    if not re.fullmatch(r"3\.\d{1,2}", args.python_version):
        p.error(f"invalid --python-version {args.python_version!r}: expected e.g. 3.12")
    platforms = args.platform or ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                                  "manylinux2014_x86_64", "manylinux1_x86_64"]
    for path, flag in ((args.have, "--have"), (args.constraints, "--constraints")):
        if path is not None and not path.is_file():
            p.error(f"invalid {flag} {str(path)!r}: no such file")
    have = set()
    if args.have:
        have = {norm(re.split(r"[<>=@ ]", line.strip(), maxsplit=1)[0]) for line in args.have.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{args.out.name}-", dir=args.out.parent))
    except OSError as exc:
        p.error(f"invalid out {str(args.out)!r}: cannot write beside it ({exc.strerror})")
    try:  # built beside the old wheelhouse, which is replaced only once the new one is complete
        reqs = requirements(args.constraints)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", args.python_version, *[f"--platform={t}" for t in platforms], "-d", str(build),
               *reqs]
        if subprocess.run(cmd).returncode:
            print(f"error: pip could not download the wheels (above); {args.out} is left as it was", file=sys.stderr)
            return 1
        for wheel in build.glob("*.whl"):
            if wheel_name(wheel) in have | SKIP:
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
    print(f"{len(wheels)} wheels, {size:.1f} MiB, for Python {args.python_version} on {platforms[0]}"
          f"{f' (left out: {len(have)} packages the target has)' if have else ''}: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
