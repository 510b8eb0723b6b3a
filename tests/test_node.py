"""A GPU node's path, rehearsed on the CPU at the node's own versions: the offline wheelhouse,
scripts/gpu-run's one archive (written on every exit), and ``python -m ablations import``
bringing it home (idempotently, refusing hostile archives).

The node is an environment like the H200's: Python 3.12, torch 2.11.0 + torchvision 0.26.0,
the scientific stack at its newest, an older typing-extensions than the wheelhouse's packages
need, and none of mlflow and optuna. Home stays this interpreter (3.11, the constrained torch)."""

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import mlflow
import pytest

from conftest import REPO, data_path, run_suite

pytestmark = pytest.mark.xdist_group("node")  # its module-scoped fixtures are built once

NODE_TORCH = ("torch==2.11.0", "torchvision==0.26.0")  # the H200 node's builds
# its other packages: torch's and torchvision's own needs, the scientific stack at its newest, and
# a typing-extensions older than the 4.16 the wheelhouse's pydantic needs
NODE_HAS = ("filelock", "typing-extensions==4.12.2", "setuptools<82", "sympy", "networkx", "jinja2", "fsspec",
            "numpy", "pillow", "pandas", "scipy", "matplotlib", "scikit-learn", "scikit-image", "rich",
            "pytest-benchmark")


def python312() -> str:
    """The machine's Python 3.12 (pyenv's on these machines), as the node has."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(root.glob("versions/3.12*/bin/python3.12"))
    exe = str(found[-1]) if found else shutil.which("python3.12")
    if not exe or subprocess.run([exe, "--version"], capture_output=True).returncode:
        pytest.fail("the node rehearsal needs Python 3.12 (the H200 node's): none found under pyenv or on PATH")
    return exe


@pytest.fixture(scope="module")
def node_python(tmp_path_factory) -> Path:
    """A fresh Python 3.12 environment with the node's packages from the registry. torch 2.11's
    CUDA 13 libraries (3 GB of wheels, loaded at import, unused on a CPU) are linked from this
    interpreter's environment, whose torch uses the same CUDA major, instead of downloaded again."""
    tmp = tmp_path_factory.mktemp("node")
    subprocess.run([python312(), "-m", "venv", str(tmp / "node")], check=True)
    py = tmp / "node" / "bin" / "python"
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for args in (["--no-deps", *NODE_TORCH], list(NODE_HAS)):
        done = subprocess.run([*pip, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    site = next((tmp / "node" / "lib").glob("python3.12/site-packages"))
    (site / "nvidia").symlink_to(Path(md.distribution("nvidia-cuda-runtime").locate_file("nvidia")))
    versions = subprocess.run([py, "-c", "import sys, torch, torchvision, typing_extensions, importlib.metadata as m; "
                               "print(sys.version_info[:2], torch.__version__, torchvision.__version__, "
                               "m.version('typing-extensions'))"], capture_output=True, text=True)
    found = versions.stdout.split()
    assert found[:2] == ["(3,", "12)"] and found[4] == "4.12.2", versions.stderr[-2000:]
    assert found[2].split("+")[0] == "2.11.0" and found[3].split("+")[0] == "0.26.0", found
    return py


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """The wheelhouse for a Python 3.12 node, built from the registry as docs/gpu-node.md says."""
    wheels = tmp_path_factory.mktemp("wheels") / "wheelhouse"
    built = subprocess.run([sys.executable, REPO / "scripts" / "wheelhouse.py", wheels, "--python-version", "3.12"],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    size = float(re.search(r"wheels, ([\d.]+) MiB", built.stdout).group(1))
    names = {w.name.split("-")[0].lower() for w in wheels.glob("*.whl")}
    assert 0 < size <= 60, built.stdout
    assert not names & {"torch", "torchvision", "triton", "numpy", "pandas", "scipy", "matplotlib", "scikit_learn",
                        "scikit_image"}
    assert not [n for n in names if n.startswith(("nvidia", "cuda"))]
    # the whole closure, pure-Python packages included: nothing is assumed of the node's versions
    assert {"mlflow_skinny", "optuna", "sqlalchemy", "alembic", "typing_extensions", "pydantic", "pydantic_core",
            "certifi", "rich", "pytest_benchmark", "packaging"} <= names, names
    assert "left out, the node's: numpy" in built.stdout  # optuna pulls it in; the node provides it
    # pinned: transitive packages at the versions tested here, not whatever is newest that day
    home = {name: md.version(name) for name in ("typing-extensions", "pydantic", "certifi")}
    pins = (wheels / "constraints.txt").read_text()
    assert all(f"{name}=={version}" in pins for name, version in home.items()), pins
    for name, version in home.items():
        assert list(wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl")), (name, version, sorted(names))
    return wheels


def gpu_run(tmp: Path, py: Path, wheels: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": str(py), "ALEXNET_DATA_DIR": str(data_path()), "PYTHONPATH": "",
           "PIP_NO_INDEX": "1", "COLUMNS": "200"}
    return subprocess.run(["bash", REPO / "scripts" / "gpu-run", "out", "--budget-min", "6", "--scale", "smoke",
                           "--device", "cpu", "--wheelhouse", wheels, *args], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=600)  # a relative OUTDIR, as docs/gpu-node.md


def _runs(uri: str) -> dict:
    client = mlflow.MlflowClient(uri)
    return {r.info.run_id: r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}


def _archive(tmp: Path, run: subprocess.CompletedProcess) -> tuple[Path, set[str], dict, str]:
    """The one archive in tmp/out (beside the work folder): (path, member names, manifest, log)."""
    (archive,) = (tmp / "out").glob("*.tar.gz")
    assert run.stdout.strip() == str(archive) and archive.name.startswith("alexnet-node-cpu-")
    with tarfile.open(archive) as tar:
        names = {n.removeprefix("./") for n in tar.getnames()}
        return archive, names, json.load(tar.extractfile("manifest.json")), tar.extractfile("log.txt").read().decode()


@pytest.mark.venv
def test_gpu_run_offline_at_the_nodes_versions_makes_one_archive_that_imports_once(tmp_path, node_python,
                                                                                    wheelhouse):
    py = node_python
    missing = subprocess.run([py, "-c", "import torch, torchvision; import mlflow"], capture_output=True, text=True)
    assert "No module named 'mlflow'" in missing.stderr  # the node lacks our packages, as the H200 does
    run = gpu_run(tmp_path, py, wheelhouse, "--", "--only", "relu", "maxpool", "shapes")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(no index) into" in run.stderr and "created OUTDIR out" in run.stderr
    assert re.search(r"typing_extensions from \S*/site/typing_extensions\.py", run.stderr)  # the bundled one wins
    # pip check ran after the install; it finds no version conflict (what it lists as not installed
    # are the CUDA wheels this rehearsal links instead of installing, and mlflow, which comes as
    # mlflow-skinny)
    assert re.search(r"pip check(: clean| found)", run.stderr) and "but you have" not in run.stderr
    for path in ("fp32 (TF32 off), NCHW", "fp32 (TF32 off) + channels_last", "bf16 autocast + channels_last"):
        assert f"preflight: {path}: ok" in run.stderr  # under torch 2.11
    assert "preflight: tf32: skipped" in run.stderr
    archive, names, manifest, log = _archive(tmp_path, run)
    assert {"mlflow.db", "log.txt", "results/smoke/cpu/claims.md", "results/bench/cpu/bench.csv",
            "node/pip-freeze.txt", "node/nvidia-smi.txt", "node/python-torch.txt", "node/resources.txt"} <= names
    assert manifest["stage"] == "done" and manifest["exit"] == 0 and manifest["preflight_exit"] == 0
    assert manifest["suite_exit"] == 0 and manifest["bench_exit"] == 0 and manifest["wall_s"] <= 300
    assert manifest["env"]["torch"].startswith("2.11.0") and manifest["env"]["python"].startswith("3.12")
    with tarfile.open(archive) as tar:
        assert "torch==2.11.0" in tar.extractfile("node/pip-freeze.txt").read().decode()
        assert not [n for n in tar.getnames() if n.endswith(".pt") or "/site/" in n]  # checkpoints and wheels stay
    assert (tmp_path / "out" / "work" / "mlflow.db").is_file()  # the node's work stays in OUTDIR, to resume

    home = tmp_path / "home"
    home.mkdir()
    uri = f"sqlite:///{home}/mlflow.db"
    cmd = [sys.executable, "-m", "ablations", "import", str(archive), "--tracking-uri", uri,
           "--results-dir", str(home / "results")]
    env_home = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=home, capture_output=True, text=True, env=env_home)
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(archive) as tar:
        tar.extract("mlflow.db", tmp_path / "node-store", filter="data")
    node = _runs(f"sqlite:///{tmp_path}/node-store/mlflow.db")
    local = _runs(uri)
    assert set(local) == set(node) and len(node) == 11  # suite, 3 claims, 6 arm x seed runs, bench
    for run_id, theirs in node.items():
        ours = local[run_id]
        assert ours.data.params == theirs.data.params and ours.data.metrics == theirs.data.metrics
        imported = {k for k in ours.data.tags if k.startswith("import.")}  # the import's own tags, and no other
        assert imported == {"import.time", "import.time.archive"} and ours.info.status == theirs.info.status
        assert {k: v for k, v in ours.data.tags.items() if k not in imported} == theirs.data.tags
    assert f"imported {len(node)} runs" in done.stdout
    assert (home / "results" / "smoke" / "cpu" / "claims.md").is_file()
    assert (home / "results" / "bench" / "cpu" / "bench.csv").is_file()
    # the suite finds the node's runs (artifacts included) and trains nothing
    plan = run_suite(home, "--scale", "smoke", "--only", "relu", "maxpool", "--plan")
    assert "0 runs to train (0 of them resumed from a checkpoint), 6 reused" in plan.stdout, plan.stderr[-2000:]
    again = subprocess.run(cmd, cwd=home, capture_output=True, text=True, env=env_home)
    assert again.returncode == 0 and f"imported 0 runs ({len(node)} already here)" in again.stdout
    assert len(_runs(uri)) == len(node)


@pytest.mark.venv
def test_a_failed_node_run_still_writes_its_archive_with_the_traceback(tmp_path, node_python, wheelhouse):
    """The failure the old wheelhouse met on a node with typing-extensions 4.12.2: without the
    bundled typing-extensions, ``import mlflow`` fails. gpu-run stops before the budget, prints
    the traceback to the console and the log, and still writes the archive: the node's record,
    the log and a manifest naming the stage."""
    partial = tmp_path / "partial"
    shutil.copytree(wheelhouse, partial)
    (typing_wheel,) = partial.glob("typing_extensions-*.whl")
    typing_wheel.unlink()
    run = gpu_run(tmp_path, node_python, partial)
    assert run.returncode == 3
    assert "Traceback" in run.stderr and "typing_extensions" in run.stderr  # on the console
    assert re.search(r"has requirement typing.extensions\S*, but you have typing.extensions 4\.12\.2", run.stderr,
                     re.IGNORECASE)  # pip check names the conflict before the import fails
    archive, names, manifest, log = _archive(tmp_path, run)
    assert "Traceback" in log and "cannot import name" in log  # and in the log that travels home
    assert {"log.txt", "manifest.json", "node/pip-freeze.txt", "node/python-torch.txt"} <= names
    assert manifest["stage"] == "packages" and manifest["exit"] == 3 and manifest["suite_exit"] == -1
    assert "results/smoke/cpu/claims.md" not in names  # nothing ran on a broken install
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.rmtree(tmp_path / "out")
    run = gpu_run(tmp_path, node_python, empty)  # no wheels at all: the earliest failure
    archive, names, manifest, log = _archive(tmp_path, run)
    assert run.returncode == 3 and manifest["stage"] == "packages" and "no wheels in" in log
    assert manifest["env"]["torch"].startswith("2.11.0")  # the environment is recorded all the same


@pytest.mark.venv
def test_gpu_run_dry_run_at_the_nodes_versions_checks_every_stage_and_trains_nothing(tmp_path, node_python,
                                                                                   wheelhouse):
    """The first minute on a lent GPU: every stage's check (device, packages for the chosen
    claims, data, disk, compiler: a real compile) listed, exit 0, nothing trained."""
    run = gpu_run(tmp_path, node_python, wheelhouse, "--dry-run", "--", "--only", "relu")
    assert run.returncode == 0, run.stderr[-3000:]
    listed = run.stderr[run.stderr.index("gpu-run checks:"):]
    for check in ("device: ok (cpu)", "packages: ok (packages: torch 2.11.0", "data: ok (", "disk: ok (",
                  "compiler: ok ("):
        assert check in listed, listed
    assert "no chosen claim fits an SVM" in run.stderr and "preflight:" not in run.stderr
    archive, names, manifest, log = _archive(tmp_path, run)
    assert manifest["stage"] == "dry-run" and manifest["exit"] == 0 and not [n for n in names if "results" in n]


@pytest.mark.slow  # 20-30 s: torch imported by each check
def test_gpu_run_dry_run_names_the_first_check_that_fails_before_any_work(tmp_path):
    """On this machine with its own packages (no wheelhouse): a suite option the suite refuses
    fails the packages check by name; a data folder without the files fails the data check, and
    the checks after it are not run (exit 3 both times)."""
    env = {**os.environ, "PYTHON": sys.executable, "ALEXNET_DATA_DIR": str(data_path()), "PYTHONPATH": ""}
    script = ["bash", str(REPO / "scripts" / "gpu-run"), str(tmp_path / "out"), "--device", "cpu", "--scale", "smoke",
              "--wheelhouse", str(tmp_path / "none"), "--dry-run"]
    run = subprocess.run([*script, "--", "--only", "no-such-claim"], capture_output=True, text=True, env=env)
    assert run.returncode == 3 and "unknown claim 'no-such-claim'" in run.stderr
    assert "check packages: FAILED" in run.stderr and "Traceback" not in run.stderr
    empty = tmp_path / "no-data"
    empty.mkdir()
    run = subprocess.run([*script, "--data-dir", str(empty)], capture_output=True, text=True, env=env)
    assert run.returncode == 3 and "check data: FAILED" in run.stderr and "train-images-idx3-ubyte.gz" in run.stderr
    listed = run.stderr[run.stderr.index("gpu-run checks:"):]
    assert "packages: ok" in listed and "disk:" not in listed and "compiler:" not in listed


def test_gpu_run_help_and_bad_options_before_any_work(tmp_path):
    """--help explains and exits 0; a missing OUTDIR or a bad option is one line, exit 2, nothing made."""
    script = str(REPO / "scripts" / "gpu-run")
    ok = subprocess.run(["bash", script, "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--budget-min" in ok.stdout and "OUTDIR" in ok.stdout
    assert subprocess.run(["bash", script], capture_output=True, text=True).returncode == 2
    for args, expected in ((["--scale", "huge"], "invalid --scale 'huge'"), (["--budget-min", "soon"],
                           "invalid --budget-min 'soon'"), (["--device", "tpu"], "invalid --device 'tpu'"),
                           (["--data-dir"], "--data-dir needs a value"), (["--scale", "--dry-run"],
                           "--scale needs a value"), (["--data-dir", str(tmp_path / "none")], "invalid --data-dir")):
        out = subprocess.run(["bash", script, str(tmp_path / "out"), *args], capture_output=True, text=True)
        assert out.returncode == 2 and expected in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_run_refuses_an_unwritable_outdir_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    out = subprocess.run(["bash", str(REPO / "scripts" / "gpu-run"), str(tmp_path / "a-file" / "out"), "--device",
                          "cpu"], capture_output=True, text=True)
    assert out.returncode == 2 and "cannot create OUTDIR" in out.stderr and len(out.stderr.splitlines()) == 1


def test_a_node_whose_python_does_not_run_still_gets_an_archive_with_a_manifest(tmp_path):
    """The earliest failure: $PYTHON names no interpreter. The record, the log and a manifest
    written without Python (naming the stage and the exit) still come home."""
    run = gpu_run(tmp_path, tmp_path / "no-python", tmp_path)
    assert run.returncode == 3
    (archive,) = (tmp_path / "out").glob("*.tar.gz")
    assert run.stdout.strip() == str(archive) and archive.name.startswith("alexnet-node-cpu-unknown-")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert "no-python" in tar.extractfile("log.txt").read().decode()
        assert "pip freeze failed" in tar.extractfile("node/pip-freeze.txt").read().decode()
    assert manifest["stage"] == "device" and manifest["exit"] == 3 and manifest["suite_exit"] == -1
    assert "could not write the manifest" in manifest["env"]["error"]


def test_wheelhouse_names_a_missing_file_and_keeps_the_old_wheelhouse(tmp_path):
    old = tmp_path / "wheelhouse"
    old.mkdir()
    (old / "kept-1.0-py3-none-any.whl").write_text("the working wheelhouse")
    script = [sys.executable, str(REPO / "scripts" / "wheelhouse.py"), str(old)]
    out = subprocess.run([*script, "--constraints", str(tmp_path / "missing.txt")], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid --constraints" in out.stderr and "no such file" in out.stderr
    assert "Traceback" not in out.stderr
    pins = tmp_path / "pins.txt"
    pins.write_text("rich==0.0.404\n")  # no such version: the download fails
    out = subprocess.run([*script, "--constraints", str(pins)], capture_output=True, text=True,
                         env={**os.environ, "PIP_NO_INDEX": "1"})  # offline, as on a node
    assert out.returncode == 1 and "left as it was" in out.stderr
    assert [p.name for p in old.iterdir()] == ["kept-1.0-py3-none-any.whl"]
    assert not list(tmp_path.glob(".wheelhouse-*"))
