"""Untrusted input: checkpoints that would run code or are damaged, two writers on one
checkpoint, names that would climb out of their folder, store URIs and output paths that cannot
work, numbers at their extremes, and redaction of credentials in URLs."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from ablations.claims import BY_ID, SCALES
from ablations.running.plan import arm_config
from alexnet import checkpoint as ckpt
from alexnet.config import Config
from alexnet.env import code_version
from alexnet.train import train
from alexnet.untrusted import redact, safe_name
from conftest import REPO, data_path, run_suite, store_state

SMALL = Config(input_size=28, train_size=100, test_size=100, batch_size=50, epochs=1, device="cpu")


class PlantedCode:
    """Pickled as a call to os.system: unpickling it the unsafe way would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant_malicious(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config_key": PlantedCode(marker), "seed": 0}, path)


def cli(*args, env=None, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "ALEXNET_DATA_DIR": str(data_path()), "PYTHONPATH": str(REPO),
                               "COLUMNS": "400", **(env or {})})


def test_malicious_checkpoint_is_refused_unexecuted(tmp_path, fmnist, ledger):
    marker, path = tmp_path / "pwned", tmp_path / "run.pt"
    plant_malicious(path, marker)
    with pytest.raises(ckpt.DamagedCheckpoint, match=f"checkpoint {path} was refused unread"):
        train(SMALL, data=fmnist, checkpoint=path)
    out = cli("alexnet", "train", *"--input-size 28 --train-size 100 --test-size 100 --batch-size 50 --epochs 1"
              .split(), "--checkpoint", str(path))
    assert out.returncode == 2 and f"error: checkpoint {path} was refused unread" in out.stderr
    assert "Traceback" not in out.stderr
    assert not marker.exists(), "the planted code ran"
    ledger(kind="bad input", input="checkpoint that runs code when unpickled (--checkpoint)", tried=2,
           error=out.stderr.strip())


def test_damaged_and_foreign_checkpoints_name_the_file_and_the_problem(tmp_path, fmnist, ledger):
    path = tmp_path / "run.pt"
    train(SMALL, seed=0, data=fmnist, checkpoint=path)
    good = path.read_bytes()
    errors = []
    for content in {"truncated": good[: len(good) // 2], "garbage": b"\x00not a checkpoint" * 50,
                          "empty": b"", "plain data, wrong shape": None}.values():
        if content is None:
            torch.save({"model": [1, 2, 3]}, path)
        else:
            path.write_bytes(content)
        with pytest.raises(ckpt.DamagedCheckpoint, match=f"checkpoint {path} (is damaged|is not a checkpoint)") as e:
            train(SMALL, seed=0, data=fmnist, checkpoint=path)
        errors.append(str(e.value))
    ledger(kind="bad input", input="damaged checkpoint (truncated, garbage, empty, wrong fields)", tried=4,
           error=errors[0])
    path.write_bytes(good)
    with pytest.raises(ckpt.ForeignCheckpoint, match=r"belongs to another run \(checkpoint → this run: lr 0.01 → 0.02, "
                                                     r"epochs 1 → 2, seed 0 → 3\)"):
        train(Config(**{**SMALL.to_dict(), "epochs": 2, "lr": 0.02}), seed=3, data=fmnist, checkpoint=path)


@pytest.mark.slow
def test_suite_moves_planted_checkpoints_aside_and_retrains(tmp_path, fmnist, ledger):
    """A malicious file and a truncated checkpoint planted under the names the suite expects: each
    run restarts from epoch 1, the files are kept as *.corrupt, the run says so, no code runs."""
    marker = tmp_path / "pwned"
    config = arm_config(BY_ID["relu"], "relu", SCALES["smoke"], "cpu")
    names = [tmp_path / "checkpoints" / f"{config.key()}-seed{seed}-{code_version()}.pt" for seed in (0, 1)]
    plant_malicious(names[0], marker)
    train(config, seed=1, data=fmnist, checkpoint=names[1])
    names[1].write_bytes(names[1].read_bytes()[:1000])

    out = run_suite(tmp_path, "--scale", "smoke", "--only", "relu")
    assert out.returncode == 0, out.stderr[-3000:]
    assert not marker.exists(), "the planted code ran"
    for name in names:
        assert f"checkpoint {name}" in out.stderr and f"moved it aside to {name}.corrupt" in out.stderr
        assert (name.parent / (name.name + ".corrupt")).exists() and not name.exists()
    state = store_state(f"sqlite:///{tmp_path}/mlflow.db", 4)
    moved = {r.data.tags["seed"]: r.data.tags for r in state["finished"] if "checkpoint.moved_aside" in r.data.tags}
    assert sorted(moved) == ["0", "1"] and all(t["resumed"] == "False" for t in moved.values())
    assert "refused unread" in moved["0"]["checkpoint.problem"] and "damaged" in moved["1"]["checkpoint.problem"]
    ledger(kind="fault", fault="malicious and truncated checkpoints planted in --checkpoint-dir",
           injected="files under the names the suite resumes from", first_exit=out.returncode, runs=4,
           lost=state["lost"], duplicated=state["duplicated"], stuck_running=state["stuck_running"])
    assert state["lost"] == state["duplicated"] == state["stuck_running"] == 0


def test_second_writer_on_a_checkpoint_is_refused_naming_the_holder(tmp_path, fmnist, ledger):
    """While a writer holds a checkpoint path, another run on it (here: another seed, in another
    process) stops with an error naming the holder; temporaries of dead writers are removed."""
    path = tmp_path / "shared.pt"
    stale = [tmp_path / "shared.pt.tmp", tmp_path / "shared.pt.otherhost.123.deadbeef.tmp"]
    for f in stale:
        f.write_bytes(b"left by a killed writer")
    args = ("alexnet", "train", *"--input-size 28 --train-size 100 --test-size 100 --batch-size 50 --epochs 1"
            .split(), "--checkpoint", str(path))
    with ckpt.lock(path):
        assert not any(f.exists() for f in stale), "stale temporaries are removed by the lock holder"
        second = cli(*args, "--seed", "1")
        with pytest.raises(ckpt.CheckpointBusy, match=f"pid {os.getpid()}"):
            train(SMALL, seed=0, data=fmnist, checkpoint=path)
    assert second.returncode == 2, second.stderr
    assert f"checkpoint {path} is in use by another process (host " in second.stderr
    assert f"pid {os.getpid()}" in second.stderr and "Traceback" not in second.stderr
    assert not path.exists(), "the refused writer wrote nothing"
    assert train(SMALL, seed=0, data=fmnist, checkpoint=path).status == "finished"  # free again once released
    assert ckpt.load(path)["seed"] == 0
    ledger(kind="bad input", input="a second writer on a checkpoint in use", tried=2, error=second.stderr.strip())


def test_concurrent_saves_never_expose_a_partial_file(tmp_path):
    """Two writers saving to one path while a reader loads it: each writer has its own temporary
    file, so every load sees one complete checkpoint (a shared temporary name fails here)."""
    path = tmp_path / "run.pt"
    payload = {"config_key": "k", "seed": 0, "world_size": 1, "optimizer": {}, "epochs": [], "grad_norms": {},
               "rng": {"cpu": torch.get_rng_state()}}
    errors = []

    def writer(i):
        try:
            for _ in range(15):
                ckpt.save(path, {**payload, "model": {"w": torch.full((256, 1024), float(i))}})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for w in writers:
        w.start()
    loads = 0
    while any(w.is_alive() for w in writers) or not loads:
        if path.exists():
            saved = ckpt.load(path)
            assert saved["model"]["w"].unique().numel() == 1
            loads += 1
    assert not errors and loads > 0
    assert not list(tmp_path.glob("*.tmp"))


def test_names_that_become_paths_cannot_leave_their_folder(tmp_path, ledger):
    for bad in ("../../../x", "/tmp/absolute", "a/b", "..", ".hidden", "quote'd", ""):
        with pytest.raises(ValueError, match="invalid --study"):
            safe_name(bad, "--study")
    assert safe_name("lr-study_1.2", "--study") == "lr-study_1.2"
    outside = tmp_path / "escaped"
    out = cli("alexnet", "tune", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage",
              f"sqlite:///{tmp_path}/optuna.db", "--results-dir", str(tmp_path / "tune"), "--study",
              f"../{outside.name}", cwd=tmp_path)
    assert out.returncode == 2 and "invalid --study '../escaped'" in out.stderr
    assert not outside.exists() and not (tmp_path / "mlflow.db").exists()
    ledger(kind="bad input", input="study names with '..', '/', quotes (7 forms)", tried=8, error=out.stderr.strip())


def main_of(argv, capsys, monkeypatch):
    """(exit status, stderr) of ``python -m alexnet|ablations ARGV``, run in this process."""
    import ablations.__main__ as ablations_main
    import alexnet.cli as alexnet_cli

    monkeypatch.setattr(ablations_main.console, "width", 400)  # one line per message
    module = alexnet_cli if argv[0] == "alexnet" else ablations_main
    try:
        status = module.main(argv[1:])
    except SystemExit as exc:  # argparse's errors
        status = exc.code
    return status, " ".join(capsys.readouterr().err.split())


STORE_CASES = {  # --tracking-uri -> what the one-line error says
    "ftp://example.org/store": "unsupported MLflow tracking URI 'ftp://example.org/store'",
    "mlruns": "unsupported MLflow tracking URI 'mlruns'",
    "sqlite:///{tmp}/not-a-db/mlflow.db": "is not an SQLite database",
    "sqlite:///{tmp}/a-file/sub/mlflow.db": "invalid MLflow store folder",
    "postgresql://user:hunter2@127.0.0.1:9/none": "cannot open the MLflow store postgresql://user:***@127.0.0.1:9/none",
}


def test_unusable_store_is_a_one_line_error_before_any_work(tmp_path, capsys, monkeypatch, ledger):
    (tmp_path / "a-file").write_text("a file, not a folder")
    (tmp_path / "not-a-db").mkdir()
    (tmp_path / "not-a-db" / "mlflow.db").write_text("this is not a database")
    monkeypatch.chdir(tmp_path)
    for uri, expected in STORE_CASES.items():
        status, err = main_of(["ablations", "--scale", "smoke", "--only", "relu", "--tracking-uri",
                               uri.format(tmp=tmp_path), "--checkpoint-dir", str(tmp_path / "ck")], capsys, monkeypatch)
        assert status == 2 and expected in err and err.count("error:") == 1, (uri, err)
        assert "Traceback" not in err and "hunter2" not in err
        assert not list((tmp_path / "ck").glob("*"))
    ledger(kind="bad input", input="tracking URIs: unsupported scheme, bare path, not a database, unwritable "
                                   "folder, unreachable database", tried=len(STORE_CASES), error=err)


BAD_OPTIONS = [  # (argv, what the error names)
    (["alexnet", "tune", "--trials", "-1"], "invalid --trials -1"),
    (["alexnet", "tune", "--timeout", "inf"], "invalid --timeout inf"),
    (["alexnet", "tune", "--timeout", "nan"], "invalid --timeout nan"),
    (["alexnet", "tune", "--range", "lr=0.001:inf"], "invalid --range 'lr=0.001:inf'"),
    (["alexnet", "tune", "--worker", "-2"], "invalid --worker -2"),
    (["ablations", "tune", "relu:relu", "--scale", "bogus"], "argument --scale: invalid choice: 'bogus'"),
    (["ablations", "tune", "relu:relu", "--study", "../up"], "invalid --study '../up'"),
    (["alexnet", "train", "--lr", "inf"], "invalid lr=inf"),
    (["alexnet", "train", "--weight-decay", "1e400"], "invalid weight_decay=inf"),
    (["alexnet", "train", "--seed", "-1"], "invalid --seed -1"),
    (["alexnet", "train", "--seed", str(2**64)], f"invalid --seed {2**64}"),
    (["alexnet", "train", "--json", "{tmp}/a-file/r.json"], "invalid --json folder"),
    (["alexnet", "train", "--json", "{tmp}"], "invalid --json '{tmp}': it is a folder"),
    (["ablations", "--results-dir", "{tmp}/a-file/results"], "invalid --results-dir '{tmp}/a-file/results'"),
    (["ablations", "--checkpoint-dir", "{tmp}/a-file/ck"], "invalid --checkpoint-dir '{tmp}/a-file/ck'"),
    (["ablations", "--seeds", "1000000"], "invalid --seeds 1000000"),
    (["ablations", "--seeds", "sometimes"], "invalid --seeds sometimes: expected an integer from 1 to 1000, auto"),
    (["ablations", "--scale", "smoke", "--seeds", "auto:1"], "invalid --seeds auto:1: expected an integer from 1 to "
                                                             "1000, auto, or auto:MAX with MAX from 2 to 1000"),
    (["ablations", "--budget-min", "0"], "invalid --budget-min 0.0"),
    (["ablations", "--budget-min", "nan"], "invalid --budget-min nan"),
    (["ablations", "--max-hours", "-1"], "invalid --max-hours -1.0"),
    (["ablations", "--epochs", str(2**63)], f"invalid --epochs {2**63}: expected an integer from 1 to 100,000"),
    (["ablations", "--tune-lr", "10000000"], "invalid --tune-lr 10000000"),
    (["ablations", "import", "x.tar.gz", "--max-gb", "inf"], "invalid --max-gb inf"),
    (["ablations", "--scale", "smoke", "--only", "relu", "--tune-lr", "1", "--storage", "nosuch://x"],
     "cannot open Optuna storage 'nosuch://x'"),
]
BAD_ENV = [("ALEXNET_LEASE_S", "soon"), ("ALEXNET_POLL_S", "-1"), ("ALEXNET_LEASE_S", "inf")]


def test_bad_options_paths_and_environment_fail_before_any_work(tmp_path, capsys, monkeypatch, ledger):
    (tmp_path / "a-file").write_text("a file, not a folder")
    monkeypatch.chdir(tmp_path)
    store = ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--checkpoint-dir", str(tmp_path / "ck")]
    for argv, expected in BAD_OPTIONS:
        argv = [a.format(tmp=tmp_path) for a in argv]
        if argv[0] == "ablations" and argv[1] not in ("tune", "import"):
            argv = [argv[0], *store, *argv[1:]]  # the case's options come last, so they win
        status, err = main_of(argv, capsys, monkeypatch)
        assert status == 2 and expected.format(tmp=tmp_path) in err and "Traceback" not in err, (argv, err)
    for name, value in BAD_ENV:
        monkeypatch.setenv(name, value)
        status, err = main_of(["ablations", "--scale", "smoke", "--only", "relu", *store], capsys, monkeypatch)
        assert status == 2 and f"invalid ${name}='{value}'" in err, err
        monkeypatch.delenv(name)
    assert not list((tmp_path / "ck").glob("*")), "no run started"
    new = ["--results-dir", str(tmp_path / "new" / "results")]
    status, err = main_of(["ablations", "--scale", "smoke", "--only", "relu", *store, *new, "--plan"], capsys,
                          monkeypatch)
    assert status == 0 and not (tmp_path / "new").exists()  # --plan creates nothing
    status, err = main_of(["ablations", "--scale", "smoke", "--only", "relu", *store, *new, "--budget-min", "0.3"],
                          capsys, monkeypatch)  # a budget no claim fits: the start trains nothing
    assert status == 0 and f"created --results-dir {tmp_path}/new/results" in err  # never created silently
    ledger(kind="bad input", input="options at their extremes, unwritable output paths, bad environment variables",
           tried=len(BAD_OPTIONS) + len(BAD_ENV), error=err)


def test_redact_hides_passwords_in_urls_and_command_lines():
    cases = {
        "postgresql://user:s3cret@db.example:5432/mlflow": "postgresql://user:***@db.example:5432/mlflow",
        "postgresql+psycopg://u:p%40ss@h/db?sslmode=require": "postgresql+psycopg://u:***@h/db?sslmode=require",
        "python -m ablations --storage mysql://root:pw@h/db --tracking-uri http://a:b@h:5000":
            "python -m ablations --storage mysql://root:***@h/db --tracking-uri http://a:***@h:5000",
        "redis://:onlypass@h:6379/0": "redis://:***@h:6379/0",
        "postgresql://h/db?user=u&password=s3cret&x=1": "postgresql://h/db?user=u&password=***&x=1",
        "sqlite:////tmp/a:b/mlflow.db": "sqlite:////tmp/a:b/mlflow.db",
        "http://127.0.0.1:5000": "http://127.0.0.1:5000",
        "postgresql://user@h/db": "postgresql://user@h/db",
    }
    for given, shown in cases.items():
        assert redact(given) == shown


def test_malformed_lease_tags_in_the_store_count_as_dead_owners(tmp_path):
    """Tags are read back from a shared store: any shape of owner or heartbeat is handled."""
    from alexnet.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    bad = [{"lease.owner": "no-colons"}, {"lease.owner": "h:99999999999999:t"}, {"lease.owner": "h:1:t:x"},
           {"lease.owner": f"{os.uname().nodename}:notapid:t", "lease.heartbeat": "soon"}]
    for tags in bad:
        run_id = tracker.client.create_run(tracker.experiment_id, tags={"kind": "probe", **tags}).info.run_id
        assert tracker.dead(tracker.client.get_run(run_id)), tags
    assert tracker.reap({"kind": "probe"}) == []
    assert {r.info.status for r in tracker.find({"kind": "probe"}, statuses=("KILLED",))} == {"KILLED"}


def test_tag_values_with_quotes_are_found_not_injected(tmp_path):
    from alexnet.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    for value in ("it's", 'say "hi"', "x' or tags.kind = 'y"):
        run_id = tracker.client.create_run(tracker.experiment_id, tags={"kind": "quoted", "name": value}).info.run_id
        tracker.terminate(run_id, "FINISHED")
        assert [r.info.run_id for r in tracker.find({"kind": "quoted", "name": value})] == [run_id]
    with pytest.raises(ValueError, match="holds both"):
        tracker.find({"name": "both ' and \""})


def test_find_reads_every_page_and_no_filler_pushes_a_local_run_out(tmp_path, monkeypatch):
    """A store may hold more runs of a key than one query returns (MLflow caps a search): find pages
    through all of them, and runs of other statuses or imported ones, however many and however new,
    never hide the store's own finished run."""
    from alexnet import tracking
    from alexnet.tracking import IMPORTED, Tracker

    monkeypatch.setattr(tracking, "FIND_PAGE", 2)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")

    def made(status, **tags):
        run_id = tracker.client.create_run(tracker.experiment_id, tags={"kind": "arm", **tags}).info.run_id
        tracker.terminate(run_id, status)
        return run_id
    local = made("FINISHED")
    failed = [made("FAILED") for _ in range(5)]
    imported = [made("FINISHED", **{IMPORTED: str(i)}) for i in range(5)]
    found = [r.info.run_id for r in tracker.find({"kind": "arm"})]
    assert found == [local, *reversed(imported)]
    both = [r.info.run_id for r in tracker.find({"kind": "arm"}, statuses=("FAILED", "FINISHED"))]
    assert set(both) == {local, *failed, *imported} and len(both) == 11
