"""A GPU node's path, run on the CPU: the offline wheelhouse, scripts/gpu-run's one archive, and
``python -m ablations import`` bringing it home (idempotently, refusing hostile archives)."""

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import mlflow
import pytest
from conftest import REPO, data_path, run_suite

# like the H200 node: its own torch build, the scientific stack, none of mlflow and optuna
NODE_HAS = ("torch", "torchvision", "pandas", "scipy", "matplotlib", "rich", "pytest-benchmark")


def _closure(names) -> set[str]:
    """The installed distributions ``names`` need, themselves included."""
    seen, todo = set(), list(names)
    while todo:
        dist = md.distribution(todo.pop())
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        for req in dist.requires or []:
            if "extra ==" not in req:
                name = re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]
                try:
                    md.distribution(name)
                    todo.append(name)
                except md.PackageNotFoundError:
                    pass
    return seen


def node_python(tmp: Path) -> Path:
    """A fresh virtual environment that sees only NODE_HAS and what they need (linked from this
    interpreter's site-packages): what a GPU node offers before the wheelhouse."""
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "node")], check=True)
    linked = tmp / "node-torch"
    linked.mkdir()
    for name in _closure(NODE_HAS):
        dist = md.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []} - {"..", "bin"}:
            src = Path(dist.locate_file(top))
            if src.exists() and not (linked / top).exists():
                (linked / top).symlink_to(src)
    site = next((tmp / "node" / "lib").glob("python3*/site-packages"))
    (site / "node-torch.pth").write_text(str(linked) + "\n")
    return tmp / "node" / "bin" / "python"


def _runs(uri: str) -> dict:
    client = mlflow.MlflowClient(uri)
    return {r.info.run_id: r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}


@pytest.mark.venv
def test_gpu_run_offline_makes_one_archive_that_imports_once(tmp_path):
    py = node_python(tmp_path)
    missing = subprocess.run([py, "-c", "import torch, torchvision; import mlflow"], capture_output=True, text=True)
    assert "No module named 'mlflow'" in missing.stderr  # the node lacks our packages, as the H200 does
    have = subprocess.run([py, "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    (tmp_path / "have.txt").write_text(have)
    wheels = tmp_path / "wheelhouse"
    built = subprocess.run([sys.executable, REPO / "scripts" / "wheelhouse.py", wheels, "--have",
                            tmp_path / "have.txt"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    size = float(re.search(r"wheels, ([\d.]+) MiB", built.stdout).group(1))
    assert 0 < size <= 60 and not list(wheels.glob("torch-*")) and not list(wheels.glob("numpy-*"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(py), "ALEXNET_DATA_DIR": str(data_path()), "PYTHONPATH": "",
           "PIP_NO_INDEX": "1", "COLUMNS": "200"}
    run = subprocess.run(["bash", REPO / "scripts" / "gpu-run", "out", "--budget-min", "3", "--scale", "smoke",
                          "--device", "cpu", "--wheelhouse", wheels, "--", "--only", "relu", "maxpool", "shapes"],
                         capture_output=True, text=True, env=env, cwd=tmp_path,  # a relative OUTDIR, as the README
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(no index) into" in run.stderr and "created OUTDIR out" in run.stderr
    (archive,) = out.iterdir()
    assert run.stdout.strip() == str(archive) and archive.name.startswith("alexnet-node-cpu-")
    with tarfile.open(archive) as tar:
        names = {n.removeprefix("./") for n in tar.getnames()}
        manifest = json.load(tar.extractfile("manifest.json"))
    assert {"mlflow.db", "log.txt", "results/smoke/cpu/claims.md", "results/bench/cpu/bench.csv"} <= names
    assert manifest["suite_exit"] == 0 and manifest["bench_exit"] == 0 and manifest["wall_s"] <= 200

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
        assert ours.data.tags == theirs.data.tags and ours.info.status == theirs.info.status
    assert f"imported {len(node)} runs" in done.stdout
    assert (home / "results" / "smoke" / "cpu" / "claims.md").is_file()
    assert (home / "results" / "bench" / "cpu" / "bench.csv").is_file()
    # the suite finds the node's runs (artifacts included) and trains nothing
    plan = run_suite(home, "--scale", "smoke", "--only", "relu", "maxpool", "--plan")
    assert "0 runs to train (0 of them resumed from a checkpoint), 6 reused" in plan.stdout, plan.stderr[-2000:]
    again = subprocess.run(cmd, cwd=home, capture_output=True, text=True, env=env_home)
    assert again.returncode == 0 and f"imported 0 runs ({len(node)} already here)" in again.stdout
    assert len(_runs(uri)) == len(node)


def test_gpu_run_help_and_bad_options_before_any_work(tmp_path):
    """--help explains and exits 0; a missing OUTDIR or a bad option is one line, exit 2, nothing made."""
    script = str(REPO / "scripts" / "gpu-run")
    ok = subprocess.run(["bash", script, "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--budget-min" in ok.stdout and "OUTDIR" in ok.stdout
    assert subprocess.run(["bash", script], capture_output=True, text=True).returncode == 2
    for args, expected in ((["--scale", "huge"], "invalid --scale 'huge'"), (["--budget-min", "soon"],
                           "invalid --budget-min 'soon'"), (["--device", "tpu"], "invalid --device 'tpu'")):
        out = subprocess.run(["bash", script, str(tmp_path / "out"), *args], capture_output=True, text=True)
        assert out.returncode == 2 and expected in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_run_refuses_an_unwritable_outdir_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    out = subprocess.run(["bash", str(REPO / "scripts" / "gpu-run"), str(tmp_path / "a-file" / "out"), "--device",
                          "cpu"], capture_output=True, text=True)
    assert out.returncode == 2 and "cannot create OUTDIR" in out.stderr and len(out.stderr.splitlines()) == 1


def test_wheelhouse_names_a_missing_file_and_keeps_the_old_wheelhouse(tmp_path):
    old = tmp_path / "wheelhouse"
    old.mkdir()
    (old / "kept-1.0-py3-none-any.whl").write_text("the working wheelhouse")
    script = [sys.executable, str(REPO / "scripts" / "wheelhouse.py"), str(old)]
    out = subprocess.run([*script, "--have", str(tmp_path / "missing.txt")], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid --have" in out.stderr and "no such file" in out.stderr
    assert "Traceback" not in out.stderr
    pins = tmp_path / "pins.txt"
    pins.write_text("rich==0.0.404\n")  # no such version: the download fails
    out = subprocess.run([*script, "--constraints", str(pins)], capture_output=True, text=True,
                         env={**os.environ, "PIP_NO_INDEX": "1"})  # offline, as on a node
    assert out.returncode == 1 and "left as it was" in out.stderr
    assert [p.name for p in old.iterdir()] == ["kept-1.0-py3-none-any.whl"]
    assert not list(tmp_path.glob(".wheelhouse-*"))
