"""The archive import's checks one by one, without an import: ``ablations.node.archive.unpack`` on small
tar.gz files made here, ``read_store`` on copies of a real MLflow store edited with SQL, and
``ablations.node.meaning`` on the rows and artifacts a node writes. Each refusal is checked by its
message. Unit tests of the import's checks, run by ``nox -s mutants``; tests/test_import.py imports
real node archives end to end."""

import gzip
import hashlib
import importlib.metadata
import inspect
import io
import json
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from ablations.node import archive as A
from ablations.node import meaning as M
from alexnet.config import Config
from alexnet.result import TrainResult

ARCHIVE = Path("node.tar.gz")
NAME = "invalid archive 'node.tar.gz'"


# ---- the stream and its members ----------------------------------------------------------------

def _tar(path: Path, members: list[tuple[str, bytes | None]], tail: bytes = b"") -> Path:
    """A .tar.gz of regular files (bytes) and folders (None), with ``tail`` appended to the gzip file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue()) + tail)
    return path


def _refusal(archive: Path, check, *args, **kw) -> str:
    """The message of the ArchiveError ``check(*args)`` raises, after the archive's name it begins with."""
    with pytest.raises(A.ArchiveError) as err:
        check(*args, **kw)
    prefix = f"invalid archive {str(archive)!r}: "
    assert str(err.value).startswith(prefix)
    return str(err.value).removeprefix(prefix)


def _unpack_refused(path: Path, tmp_path: Path, **kw) -> str:
    return _refusal(path, A.unpack, path, tmp_path / "out", **kw)


def test_a_genuine_archive_is_extracted_with_its_folders(tmp_path):
    path = _tar(tmp_path / "a.tar.gz", [(".", None), ("results", None), ("results/claims.md", b"# claims"),
                                        ("mlflow.db", b"db"), ("./log.txt", b"log")])
    into = A.unpack(path, tmp_path / "out")
    assert into == tmp_path / "out" and (into / "results" / "claims.md").read_text() == "# claims"
    assert (into / "mlflow.db").read_bytes() == b"db" and (into / "log.txt").read_text() == "log"


def test_an_archive_that_is_missing_not_gzip_or_without_its_store_is_refused(tmp_path):
    assert _unpack_refused(tmp_path / "none.tar.gz", tmp_path) == (
        "no such file (expected the .tar.gz that scripts/gpu-run writes)")
    plain = tmp_path / "plain.tar"
    plain.write_bytes(b"\x1f" + b"\x00" * 600)
    assert _unpack_refused(plain, tmp_path) == "not a gzip-compressed tar archive (scripts/gpu-run writes .tar.gz)"
    assert _unpack_refused(_tar(tmp_path / "a.tar.gz", [("log.txt", b"x")]), tmp_path) == "no mlflow.db file in it"
    text = tmp_path / "text.tar.gz"
    text.write_bytes(gzip.compress(b"plain text, not a tar archive\n" * 40))
    assert _unpack_refused(text, tmp_path) == (
        "not a complete tar archive (invalid header); it is truncated or corrupt: copy it again from the node")
    assert _unpack_refused(_tar(tmp_path / "b.tar.gz", [("mlflow.db", None)]), tmp_path) == "no mlflow.db file in it"


def test_the_size_limit_is_on_the_members_in_total_and_the_count_on_their_number(tmp_path, monkeypatch):
    members = [("mlflow.db", b"x" * 600), ("results/a.csv", b"y" * 600)]  # each under 1,000 bytes, 1,200 in all
    message = _unpack_refused(_tar(tmp_path / "a.tar.gz", members), tmp_path, max_bytes=1000)
    assert message == ("its members declare more than 9.31e-07 GiB (reached at 'results/a.csv'); raise the limit "
                       "with --max-gb if it is genuine")
    assert A.unpack(_tar(tmp_path / "b.tar.gz", members), tmp_path / "b", max_bytes=1200) == tmp_path / "b"
    monkeypatch.setattr(A, "MAX_MEMBERS", 2)
    three = [("mlflow.db", b"x"), ("log.txt", b"y"), ("manifest.json", b"{}")]
    assert _unpack_refused(_tar(tmp_path / "c.tar.gz", three), tmp_path) == (
        "more than 2 members (a node archive holds hundreds)")
    assert A.unpack(_tar(tmp_path / "d.tar.gz", three[:2]), tmp_path / "d").is_dir()


def test_data_after_the_archive_truncation_and_damage_are_refused(tmp_path):
    good = _tar(tmp_path / "a.tar.gz", [("mlflow.db", b"db")])
    second = gzip.compress(b"\x00" * 30_000)  # a second gzip stream after the first
    assert _unpack_refused(_tar(tmp_path / "b.tar.gz", [("mlflow.db", b"db")], tail=second), tmp_path) == (
        "more data than its members declare (data after the archive's end, or a second stream)")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[:40])
    message = _unpack_refused(cut, tmp_path)
    assert message.startswith("not a complete tar archive (Compressed file ended before the end-of-stream marker ")
    assert message.endswith(
        "); it is truncated or corrupt: copy it again from the node")
    assert not (tmp_path / "out" / "mlflow.db").exists()


def test_a_huge_metadata_header_is_refused_before_it_is_read(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("mlflow.db")
        info.pax_headers = {"comment": "x" * (A.MAX_META + 10)}
        tar.addfile(info, io.BytesIO(b""))
    path = tmp_path / "a.tar.gz"
    path.write_bytes(gzip.compress(buffer.getvalue()))
    assert _unpack_refused(path, tmp_path).startswith("a metadata header declares 65,5")
    assert _unpack_refused(path, tmp_path).endswith(" bytes (at most 65,536)")


def _member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.GNUTYPE_SPARSE:
        info.sparse = [(0, 0)]
    return info


@pytest.mark.parametrize("name, kind, expected", [
    ("", tarfile.REGTYPE, "member name '' is empty, not UTF-8 or holds control characters"),
    ("./", tarfile.DIRTYPE, "member name './' is empty, not UTF-8 or holds control characters"),
    ("results/a\x07b", tarfile.REGTYPE, "member name 'results/a\\\\x07b' is empty, not UTF-8 or holds control"),
    ("results/\udcff", tarfile.REGTYPE, "member name 'results/?' is empty, not UTF-8 or holds control characters"),
    ("results/" + "a/" * 32 + "f", tarfile.REGTYPE, "member 'results/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/"
                                                    "a/a/a/a/a/a/a/f' is nested deeper than 32 folders or named longer "
                                                    "than 1024 characters"),
    ("results/" + "a" * 1017, tarfile.REGTYPE, f"member 'results/{'a' * 112}' is nested deeper than 32 folders"),
    ("results/run.db", tarfile.REGTYPE, "report 'results/run.db' has the name of a database or lock file"),
    ("./results/a/mlflow.db-wal", tarfile.REGTYPE, "report 'results/a/mlflow.db-wal' has the name of a database"),
    ("/etc/passwd", tarfile.REGTYPE, "member '/etc/passwd' leads outside it"),
    ("results/../../x", tarfile.REGTYPE, "member 'results/../../x' leads outside it"),
    ("evil/x", tarfile.REGTYPE, "unexpected entry 'evil' (a node archive holds only log.txt, manifest.json, mlflow.db, "
                                "mlruns, node, results)"),
    ("results/link", tarfile.SYMTYPE, "member 'results/link' is a link; a node archive holds only files and folders"),
    ("results/hard", tarfile.LNKTYPE, "member 'results/hard' is a link; a node archive holds only files and folders"),
    ("results/fifo", tarfile.FIFOTYPE, "member 'results/fifo' is not a file or folder; a node archive holds only"),
    ("results/dev", tarfile.CHRTYPE, "member 'results/dev' is not a file or folder"),
    ("results/holes", tarfile.GNUTYPE_SPARSE, "member 'results/holes' is a sparse file; a node archive holds only"),
])
def test_a_member_is_refused_by_its_name_place_and_kind(name, kind, expected):
    assert expected in _refusal(ARCHIVE, A._check_member, _member(name, kind), NAME)


@pytest.mark.parametrize("name, kind", [(".", tarfile.DIRTYPE), ("results/run.db", tarfile.DIRTYPE),
                                        ("results/" + "a/" * 30 + "f", tarfile.REGTYPE), ("node/x", tarfile.REGTYPE),
                                        ("results/" + "a" * 1016, tarfile.REGTYPE), ("mlruns/1/a..b", tarfile.REGTYPE)])
def test_a_member_of_the_node_s_kinds_and_places_passes(name, kind):
    A._check_member(_member(name, kind), NAME)  # a folder named like a database is not read by SQLite


@pytest.mark.parametrize("value, kind, ok", [
    (None, ("str", 5, True), True), (None, ("str", 5, False), False), ("abcde", ("str", 5, False), True),
    ("abcdef", ("str", 5, False), False), (b"ab", ("str", 5, False), False), (3, ("str", 5, False), False),
    (None, ("int", True), True), (None, ("int", False), False), (2**63 - 1, ("int", False), True),
    (-(2**63) + 1, ("int", False), True), (2**63, ("int", False), False), (True, ("int", False), False),
    ("1", ("int", False), False), (1.0, ("int", False), False),
    (0, ("flag",), True), (1, ("flag",), True), (2, ("flag",), False), (True, ("flag",), False),
    (0.5, ("num",), True), (3, ("num",), True), (1000, ("num",), True), (2**63, ("num",), False),
    (False, ("num",), False), ("0.5", ("num",), False), (None, ("num",), False)])
def test_a_value_is_of_its_column_s_kind_only_within_its_type_and_bounds(value, kind, ok):
    assert A.of_kind(value, kind) is ok


def test_an_error_s_first_line_is_printed_printable_and_bounded():
    assert A._first(ValueError("")) == "ValueError" and A._first(OSError("  ")) == "OSError"
    assert A._first(ValueError("bad\x1b[31m\nsecond")) == "bad\\x1b[31m"
    assert A._first(ValueError("x" * 300)) == "x" * 200


# ---- the MLflow database -------------------------------------------------------------------------

def _make_store(folder: Path) -> str:
    """A real MLflow store in ``folder``: experiment 1 with a finished training run (epochs 2,
    test_acc at steps 1 and 2); returns the run's id."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.create_experiment("alexnet-claims", artifact_location=str(folder / "mlruns" / "1"))
    run = client.create_run(experiment).info.run_id
    client.log_param(run, "epochs", "2")
    for step, acc in ((1, 0.7), (2, 0.8)):
        client.log_metric(run, "test_acc", acc, step=step, timestamp=1000 + step)
    client.set_tag(run, "kind", "train")
    client.set_terminated(run)
    (folder / "run_id").write_text(run)
    return run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(path of the store, its run's id). MLflow's migrations take seconds and ``nox -s mutants``
    starts a session per mutant, so the store is made once per MLflow version and this code, in
    pytest's base folder of this user, and copied by every test."""
    version = importlib.metadata.version("mlflow")  # without importing it (a second or more)
    key = hashlib.sha256((inspect.getsource(_make_store) + version).encode()).hexdigest()[:12]
    cached = tmp_path_factory.getbasetemp().parent / f"alexnet-node-store-{key}"
    if not (cached / "run_id").is_file():  # built under a name no other fixture reuses: MLflow caches its
        fresh = Path(tempfile.mkdtemp(prefix=f"{cached.name}-", dir=cached.parent))  # engine by the store's URI
        _make_store(fresh)
        try:
            fresh.rename(cached)  # atomic: another worker's copy, if it came first, is kept
        except OSError:
            pass
    return cached / "mlflow.db", (cached / "run_id").read_text()


def _copy(store, tmp_path: Path, *sql: str) -> Path:
    db = tmp_path / "mlflow.db"
    shutil.copy(store[0], db)
    conn = sqlite3.connect(db)
    for statement in sql:
        conn.executescript(statement.format(run=store[1]))
    conn.close()
    return db


def _loosened(table: str) -> str:
    """SQL that rebuilds ``table`` without its keys and CHECK constraints (a crafted store), so that a row
    can repeat and any status be written."""
    return (f"CREATE TABLE {table}_copy AS SELECT * FROM {table}; DROP TABLE {table}; "
            f"ALTER TABLE {table}_copy RENAME TO {table}")


LOOSE_RUNS = _loosened("runs")


def _store_refused(db: Path) -> str:
    return _refusal(ARCHIVE, A.read_store, db, ARCHIVE)


def test_a_genuine_store_is_read_with_its_runs_rows_and_experiments(store, tmp_path):
    node = A.read_store(_copy(store, tmp_path, "INSERT INTO tags VALUES ('lease.owner', 'x', '{run}')"), ARCHIVE)
    run = store[1]
    assert node.experiments == {0: "Default", 1: "alexnet-claims"} and [r["run_uuid"] for r in node.runs] == [run]
    assert node.runs[0]["status"] == "FINISHED" and node.killed == [] and len(node.schema) == 12
    assert sorted((m["step"], m["value"]) for m in node.rows["metrics"]) == [(1, 0.7), (2, 0.8)]
    assert node.tag(run, "kind") == "train" and node.tag(run, "lease.owner") == "x"  # a finished run keeps its tags
    assert [(p["key"], p["value"]) for p in node.rows["params"]] == [("epochs", "2")]


def test_a_running_run_comes_in_killed_without_its_lease_and_a_deleted_one_not_at_all(store, tmp_path):
    db = _copy(store, tmp_path, "UPDATE runs SET status = 'RUNNING', end_time = NULL",
               "INSERT INTO tags VALUES ('lease.owner', 'node', '{run}')",
               "INSERT INTO tags VALUES ('lease.heartbeat', '9999999999', '{run}')")
    node = A.read_store(db, ARCHIVE)
    run = node.runs[0]
    assert (run["status"], run["end_time"], node.killed) == ("KILLED", run["start_time"], [store[1]])
    assert node.tag(store[1], "lease.owner") is None and node.tag(store[1], "kind") == "train"
    scheduled = A.read_store(_copy(store, tmp_path, "UPDATE runs SET status = 'SCHEDULED', end_time = 5"), ARCHIVE)
    assert (scheduled.runs[0]["status"], scheduled.runs[0]["end_time"]) == ("KILLED", 5)
    gone = A.read_store(_copy(store, tmp_path, "UPDATE runs SET lifecycle_stage = 'deleted'"), ARCHIVE)
    assert gone.runs == [] and all(gone.rows[t] == [] for t in ("tags", "params", "metrics"))


def test_a_file_that_is_not_an_mlflow_store_is_named(store, tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"")
    assert _store_refused(db) == "its mlflow.db is empty"
    db.write_bytes(b"hello, not a database")
    assert _store_refused(db) == "its mlflow.db is not an SQLite database"
    assert _store_refused(_copy(store, tmp_path, "DROP TABLE tags")) == (
        "its mlflow.db is not an MLflow store (tags is not a plain table)")
    assert _store_refused(_copy(store, tmp_path, "DROP TABLE params", "DROP TABLE alembic_version")) == (
        "its mlflow.db is not an MLflow store (params, alembic_version are not plain tables)")
    assert _store_refused(_copy(store, tmp_path, "DROP TABLE tags", "CREATE VIEW tags AS SELECT * FROM params")) == (
        "its mlflow.db is not an MLflow store (tags is not a plain table)")
    assert _store_refused(_copy(store, tmp_path, "ALTER TABLE runs ADD COLUMN g INT GENERATED ALWAYS AS (1)")) == (
        "its mlflow.db is not an MLflow store (runs is not a plain table)")
    assert _store_refused(_copy(store, tmp_path, "UPDATE alembic_version SET version_num = 'x\n'")) == (
        "its mlflow.db has an invalid schema revision 'x\\\\x0a'")
    assert _store_refused(_copy(store, tmp_path, "UPDATE alembic_version SET version_num = '" + "a" * 33 + "'")) == (
        f"its mlflow.db has an invalid schema revision '{'a' * 33}'")


def test_a_table_over_its_row_limit_is_refused_before_it_is_read(store, tmp_path, monkeypatch):
    conn = sqlite3.connect(store[0])
    rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in A.COLUMNS}
    conn.close()
    most = max(rows.values())
    monkeypatch.setattr(A, "MAX_ROWS", most - 1)
    assert _store_refused(_copy(store, tmp_path)) == (
        f"its mlflow.db is not an MLflow store ({', '.join(t for t, n in rows.items() if n == most)} hold more than "
        f"{most - 1} rows)")
    monkeypatch.setattr(A, "MAX_ROWS", most)
    A.read_store(_copy(store, tmp_path), ARCHIVE)  # at the limit


@pytest.mark.parametrize("sql, expected", [
    (LOOSE_RUNS + "; UPDATE runs SET status = 'FINISHEDXY'", "runs of run '{run}': invalid status 'FINISHEDXY'"),
    (LOOSE_RUNS + "; UPDATE runs SET status = 'KILLED'", None),
    ("UPDATE runs SET start_time = 'soon'", "runs of run '{run}': invalid start_time 'soon'"),
    ("UPDATE runs SET end_time = NULL", None),
    ("UPDATE runs SET name = NULL", None),
    ("UPDATE runs SET name = '" + "n" * 251 + "'", "runs of run '{run}': invalid name '" + "n" * 120 + "'"),
    ("UPDATE tags SET value = x'00'", "tags of run '{run}': invalid value \"b'\\\\x00'\""),
    (_loosened("params") + "; INSERT INTO params VALUES ('lr', NULL, '{run}')",
     "params of run '{run}': invalid value 'None'"),
    ("INSERT INTO metrics VALUES ('loss', 'high', 1, '{run}', 1, 0)", "metrics of run '{run}': invalid value 'high'"),
    (_loosened("metrics") + "; UPDATE metrics SET is_nan = 2 WHERE step = 1",
     "metrics of run '{run}': invalid is_nan '2'"),
    ("UPDATE latest_metrics SET timestamp = NULL", None),
    ("UPDATE experiments SET name = x'01' WHERE experiment_id = 1", "experiments of experiment \"b'\\\\x01'\": invalid "
                                                                   "name \"b'\\\\x01'\""),
    ("UPDATE experiments SET name = ' ' WHERE experiment_id = 1", "its experiments have repeated ids or empty names"),
])
def test_each_value_has_its_column_s_type_and_length(store, tmp_path, sql, expected):
    db = _copy(store, tmp_path, sql)
    if expected is None:  # nullable
        A.read_store(db, ARCHIVE)
    else:
        assert _store_refused(db) == expected.format(run=store[1])


@pytest.mark.parametrize("sql, expected", [
    ("UPDATE runs SET run_uuid = 'xyz'", "run id 'xyz' is not MLflow's 32 hex digits, or repeats"),
    ("UPDATE runs SET run_uuid = upper(run_uuid)", "run id '{RUN}' is not MLflow's 32 hex digits, or repeats"),
    ("UPDATE runs SET experiment_id = 7", "run {run} belongs to experiment '7', which the archive does not hold"),
    (LOOSE_RUNS + "; UPDATE runs SET status = 'DONE'", "run {run} has an unknown status or source type 'DONE'"),
    (LOOSE_RUNS + "; UPDATE runs SET source_type = 'CLOUD'", "run {run} has an unknown status or source type "
                                                              "'FINISHED'"),
])
def test_each_run_has_a_run_id_an_experiment_and_a_status_of_mlflow_s(store, tmp_path, sql, expected):
    assert _store_refused(_copy(store, tmp_path, sql)) == expected.format(run=store[1], RUN=store[1].upper())


def test_a_run_dated_more_than_a_day_ahead_is_refused_and_less_is_not(store, tmp_path):
    now = int(time.time() * 1000)
    message = _store_refused(_copy(store, tmp_path, f"UPDATE runs SET end_time = {now + 49 * 3_600_000}"))
    assert message.startswith(f"run {store[1]} is dated 4") and message.endswith(
        " h in the future (clocks may differ by at most 24 h): set the node's clock right and export again")
    assert _store_refused(_copy(store, tmp_path, f"UPDATE runs SET start_time = {now + 25 * 3_600_000}, "
                                                 "end_time = NULL")).startswith(f"run {store[1]} is dated 25.0 h")
    A.read_store(_copy(store, tmp_path, f"UPDATE runs SET end_time = {now + 23 * 3_600_000}"), ARCHIVE)
    assert _store_refused(_copy(store, tmp_path, f"UPDATE runs SET end_time = {now + 24 * 3_600_000 + 60_000}")
                          ).startswith(f"run {store[1]} is dated 24.0 h in the future")  # a minute over a day


def test_a_row_repeating_its_table_s_key_is_refused(store, tmp_path):
    db = _copy(store, tmp_path)
    conn = sqlite3.connect(db)
    conn.executescript(_loosened("tags") + "; INSERT INTO tags SELECT * FROM tags WHERE key = 'kind';")
    conn.close()
    assert _store_refused(db) == f"tags of run '{store[1]}' repeats 'kind'"
    db = _copy(store, tmp_path)
    conn = sqlite3.connect(db)  # the same metric row twice, its value once as an integer and once as a real
    conn.executescript("DELETE FROM params; DELETE FROM latest_metrics; DELETE FROM metrics; "
                       + _loosened("metrics")  # a run without epochs may log a name at a step again
                       + f"; INSERT INTO metrics VALUES ('loss', 1, 5, '{store[1]}', 0, 0); "
                       f"INSERT INTO metrics VALUES ('loss', 1.0, 5, '{store[1]}', 0, 0);")
    conn.close()
    assert _store_refused(db) == f"metrics of run '{store[1]}' repeats 'loss'"
    db = _copy(store, tmp_path)
    conn = sqlite3.connect(db)  # no column types: 2**53 and 2**53 + 1 stay distinct integers in the archive
    conn.executescript("DELETE FROM params; DELETE FROM latest_metrics; DROP TABLE metrics; "
                       "CREATE TABLE metrics (key, value, timestamp, run_uuid, step, is_nan); "
                       f"INSERT INTO metrics VALUES ('loss', {2**53}, 5, '{store[1]}', 0, 0); "
                       f"INSERT INTO metrics VALUES ('loss', {2**53 + 1}, 5, '{store[1]}', 0, 0);")
    conn.close()
    assert _store_refused(db) == f"metrics of run '{store[1]}' repeats 'loss'"  # one value in a REAL column


@pytest.mark.parametrize("sql, expected", [
    ("INSERT INTO metrics VALUES ('loss', 1.0, 1, '{run}', 3, 0)", "metric 'loss' of run '{run}' is logged 1 times at "
     "step 3; a run logs a metric at steps 0 to its epochs (2), once per step in a training run, at most 32 times in a "
     "claim or suite run"),
    ("INSERT INTO metrics VALUES ('loss', 1.0, 1, '{run}', -1, 0)", "metric 'loss' of run '{run}' is logged 1 times "
     "at step -1"),
    ("INSERT INTO metrics VALUES ('test_acc', 0.9, 7, '{run}', 2, 0)", "metric 'test_acc' of run '{run}' is logged 2 "
     "times at step 2"),
    ("INSERT INTO latest_metrics VALUES ('ghost', 1.0, 1, 0, 0, '{run}')", "run '{run}' has a latest value of metric "
     "'ghost', which it never logged"),
    ("UPDATE metrics SET value = 1.7 WHERE step = 2", "metric 'test_acc' of run '{run}' is 1.7, which no run logs "
     "(accuracies lie in [0, 1], every value is finite)"),
    ("UPDATE metrics SET value = -0.1 WHERE step = 2", "metric 'test_acc' of run '{run}' is -0.1, which no run logs"),
    ("INSERT INTO metrics VALUES ('loss', 2e300, 1, '{run}', 1, 0)", "metric 'loss' of run '{run}' is 2e+300"),
    ("INSERT INTO metrics VALUES ('loss', -2e300, 1, '{run}', 1, 0)", "metric 'loss' of run '{run}' is -2e+300"),
    ("UPDATE latest_metrics SET value = 1.5", "metric 'test_acc' of run '{run}' is 1.5, which no run logs"),
    ("INSERT INTO metrics VALUES ('loss', 1e300, 1, '{run}', 0, 0)", None),  # finite, at step 0: a training run's
    ("UPDATE metrics SET value = 1.0 WHERE step = 2", None),  # an accuracy of 1 and of 0 are accuracies
    ("UPDATE metrics SET value = 0.0 WHERE step = 2", None),
])
def test_metric_rows_are_bounded_by_what_a_run_can_log(store, tmp_path, sql, expected):
    db = _copy(store, tmp_path, sql)
    if expected is None:
        A.read_store(db, ARCHIVE)
    else:
        assert _store_refused(db).startswith(expected.format(run=store[1]))


def test_a_run_without_epochs_may_log_again_up_to_its_limit_and_names_are_counted(store, tmp_path, monkeypatch):
    relog = [f"INSERT INTO metrics VALUES ('verdict', 1.0, {t}, '{{run}}', 0, 0)" for t in range(32)]
    A.read_store(_copy(store, tmp_path, "DELETE FROM params", "DELETE FROM metrics", "DELETE FROM latest_metrics",
                       *relog), ARCHIVE)  # a claim run, logged again at each look: 32 times at most
    assert _store_refused(_copy(store, tmp_path, "DELETE FROM params", "DELETE FROM metrics",
                                "DELETE FROM latest_metrics", *relog,
                                relog[0].replace(", 0, '", ", 99, '"))).startswith(
        f"metric 'verdict' of run '{store[1]}' is logged 33 times at step 0; a run logs a metric at steps 0 to its "
        "epochs (0)")
    monkeypatch.setattr(A, "MAX_KEYS", 1)
    names = "INSERT INTO metrics VALUES ('loss', 1.0, 1, '{run}', 1, 0)"
    assert _store_refused(_copy(store, tmp_path, names, names.replace("loss", "lr"))) == (
        f"run '{store[1]}' logs 3 metric names (at most 1 in a training run, 10 in others)")
    eleven = [f"INSERT INTO metrics VALUES ('m{i}', 1.0, 1, '{{run}}', 0, 0)" for i in range(11)]
    assert _store_refused(_copy(store, tmp_path, "DELETE FROM params", "DELETE FROM metrics",
                                "DELETE FROM latest_metrics", *eleven)).startswith(
        f"run '{store[1]}' logs 11 metric names")  # not a training run: 10 at most
    A.read_store(_copy(store, tmp_path, "DELETE FROM params", "DELETE FROM latest_metrics",
                       "UPDATE metrics SET step = 0", "UPDATE metrics SET key = 'a' WHERE timestamp = 1001", names
                       .replace("1, 0)", "0, 0)")), ARCHIVE)  # not a training run: 10 names allowed


@pytest.mark.parametrize("table", ["params", "tags"])
def test_a_run_with_more_params_or_tags_than_any_run_has_is_refused(store, tmp_path, monkeypatch, table):
    monkeypatch.setattr(A, "MAX_KEYS", 1)  # 10 per run
    conn = sqlite3.connect(store[0])
    (has,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    conn.close()
    rows = [f"INSERT INTO {table} VALUES ('k{i}', 'v', '{{run}}')" for i in range(11 - has)]
    assert _store_refused(_copy(store, tmp_path, *rows)) == (
        f"run '{store[1]}' has 11 {table} (a run has at most 10)")
    A.read_store(_copy(store, tmp_path, *rows[:-1]), ARCHIVE)


# ---- what the values mean --------------------------------------------------------------------------

RUN, OTHER = "a" * 32, "b" * 32


def _node(tags=(), params=(), status="FINISHED", runs=(RUN, OTHER)) -> A.NodeStore:
    rows = {"tags": [{"run_uuid": r, "key": k, "value": v} for r, k, v in tags],
            "params": [{"run_uuid": r, "key": k, "value": v} for r, k, v in params], "metrics": [],
            "latest_metrics": []}
    return A.NodeStore("rev", {1: "x"}, [{"run_uuid": r, "experiment_id": 1, "status": status} for r in runs], rows)


def _meaning_refused(root: Path, node: A.NodeStore) -> str:
    return _refusal(ARCHIVE, M.check, root, node, ARCHIVE)


def test_parent_links_stay_inside_the_archive_and_the_import_s_own_tags_are_refused(tmp_path):
    node = _node(tags=[(OTHER, "mlflow.parentRunId", RUN)])
    M.check(tmp_path, node, ARCHIVE)
    assert node.links == {OTHER: {RUN}}
    assert _meaning_refused(tmp_path, _node(tags=[(OTHER, "mlflow.parentRunId", "c" * 32)])) == (
        f"run {OTHER}'s tag 'mlflow.parentRunId' links to '{'c' * 32}', which is not a run of the archive")
    assert _meaning_refused(tmp_path, _node(tags=[(RUN, "import.source", "x")])) == (
        f"run {RUN}'s tag 'import.source' is the import's own (a node writes none)")
    M.check(tmp_path, _node(tags=[(RUN, "imports", "x"), (RUN, "parent", "c" * 32)]), ARCHIVE)  # other names: fine


def _result(**changes) -> dict:
    config = Config(arch="lenet", input_size=28, epochs=1)
    d = TrainResult(config.to_dict(), 3, {"code_version": "v1", "torch": "2.11", "git_commit": "abc", "device": "cpu"},
                    "test", 10, 100, 1000, 100, status="finished",
                    epochs=[{"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "test_acc": 0.8, "examples_per_s": 10.0,
                             "epoch_time_s": 1.0}]).to_dict()
    return d | changes


def _write(root: Path, run: str, file: str, content) -> Path:
    folder = root / "mlruns" / "1" / run / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_text(content if isinstance(content, str) else json.dumps(content))
    return folder / file


def _reused(config: Config = Config(arch="lenet", input_size=28, epochs=1), seed: int = 3, **params) -> A.NodeStore:
    """The archive's RUN as a suite would find and reuse it: its run key in its tags, its config in params."""
    logged = {**{k: str(v) for k, v in config.to_dict().items()}, "seed": str(seed)} | params
    return _node(tags=[(RUN, "config_key", config.key()), (RUN, "seed", str(seed)), (RUN, "code_version", "v1")],
                 params=[(RUN, k, v) for k, v in logged.items()], runs=(RUN,))


def test_a_run_a_suite_would_reuse_needs_its_own_test_result_and_the_params_it_names(tmp_path):
    assert _meaning_refused(tmp_path, _reused()) == (
        f"finished run {RUN}, which a suite would reuse, has no result.json file")
    _write(tmp_path, RUN, "result.json", _result())
    M.check(tmp_path, _reused(), ARCHIVE)
    assert _meaning_refused(tmp_path, _reused(seed=4)) == (
        f"run {RUN}'s result.json is malformed (config and seed: expected those its tags name ("
        f"{Config(arch='lenet', input_size=28, epochs=1).key()}, seed 4))")
    other = Config(arch="lenet", input_size=28, epochs=1, lr=0.1)
    assert "config and seed: expected those its tags name" in _meaning_refused(tmp_path, _reused(other))
    assert _meaning_refused(tmp_path, _reused(lr="999")) == (
        f"run {RUN}'s result.json is malformed (param lr '999': expected '0.01', as its result.json's config says)")
    _write(tmp_path, RUN, "result.json", _result(eval_split="val", epochs=[
        {"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_acc": 0.8, "examples_per_s": 10.0,
         "epoch_time_s": 1.0}]))
    assert _meaning_refused(tmp_path, _reused()) == (
        f"run {RUN}'s result.json is malformed (eval_split: expected 'test' for a run the suite reuses)")
    assert M.check(tmp_path, _node(runs=(RUN,), status="KILLED"), ARCHIVE) is None  # not reused: a val result is fine


def test_an_arm_run_without_its_run_key_is_reused_and_checked_too(tmp_path):
    arm = _node(tags=[(RUN, "kind", "arm")], runs=(RUN,))
    assert _meaning_refused(tmp_path, arm) == f"finished run {RUN}, which a suite would reuse, has no result.json file"
    _write(tmp_path, RUN, "result.json", _result())
    assert _meaning_refused(tmp_path, arm).startswith(f"run {RUN}'s result.json is malformed (param ")
    M.check(tmp_path, _node(tags=[(RUN, "kind", "claim")], runs=(RUN,)), ARCHIVE)  # not an arm: not reused


@pytest.mark.parametrize("content, why", [
    ("{not json", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ({"seed": 3}, "config: expected an object of Config fields"),
    # a config field the Config does not have, or of no comparable type: still one ValueError line
    (_result(config={**Config(input_size=28).to_dict(), "nope": 1}),
     "config: expected an object of Config fields (Config.__init__() got an unexpected keyword argument 'nope')"),
    (_result(config={**Config(input_size=28).to_dict(), "lr": "fast"}), "config: expected an object of Config fields"),
    (_result(env={"code_version": "v1", "torch": "=HYPERLINK(1)", "git_commit": "abc", "device": "cpu"}),
     "env.torch '=HYPERLINK(1)': expected a value that does not start with = + - @, a tab or a carriage return (a "
     "spreadsheet formula)"),
    (_result(env={"code_version": "v1", "torch": "2.11", "git_commit": "@SUM(1)", "device": "cpu"}),
     "env.git_commit '@SUM(1)': expected a value that does not start with"),
])
def test_a_malformed_result_is_refused_naming_why(tmp_path, content, why):
    _write(tmp_path, RUN, "result.json", content)
    assert _meaning_refused(tmp_path, _node(runs=(RUN,), status="KILLED")).startswith(
        f"run {RUN}'s result.json is malformed ({why}")


def test_a_result_that_is_a_folder_or_too_big_is_refused_unread(tmp_path):
    (tmp_path / "mlruns" / "1" / RUN / "artifacts" / "result.json").mkdir(parents=True)
    assert _meaning_refused(tmp_path, _node(runs=(RUN,), status="KILLED")) == (
        f"run {RUN}'s result.json is malformed (not a file of at most 16 MiB)")
    (tmp_path / "mlruns" / "1" / RUN / "artifacts" / "result.json").rmdir()
    path = _write(tmp_path, RUN, "result.json", "")
    with path.open("wb") as f:
        f.truncate(2**24 + 1)
    assert "(not a file of at most 16 MiB)" in _meaning_refused(tmp_path, _node(runs=(RUN,), status="KILLED"))
    with path.open("wb") as f:
        f.truncate(2**24)  # at the limit: read (and refused as JSON)
    assert "(not a file of" not in _meaning_refused(tmp_path, _node(runs=(RUN,), status="KILLED"))


def test_artifacts_that_lead_outside_the_archive_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root" / "mlruns" / "1" / RUN).mkdir(parents=True)
    (tmp_path / "root" / "mlruns" / "1" / RUN / "artifacts").symlink_to(outside)
    assert _meaning_refused(tmp_path / "root", _node(runs=(RUN,), status="KILLED")) == (
        f"run {RUN}'s artifacts lead outside it")


RUNS_SHAPE = "runs: expected a list of {arm (printable, not starting like a formula), seed, lr (finite, > 0), run_id}"


def _verdict(**changes) -> dict:
    return {"verdict": "reproduced", "evidence": ["relu 0.8 vs sigmoid 0.6"], "tuned_lr": {"relu": 0.01},
            "runs": [{"arm": "relu", "seed": 0, "lr": 0.01, "run_id": OTHER}]} | changes


@pytest.mark.parametrize("changes, why", [
    ({"verdict": "maybe"}, "verdict: expected one of contradicted, inconclusive, reproduced, unfinished"),
    ({"evidence": "relu"}, "evidence: expected a list of printable lines"),
    ({"evidence": ["ok", "\x1b]0;title\x07"]}, "evidence: expected a list of printable lines"),
    ({"evidence": ["x" * 8001]}, "evidence: expected a list of printable lines"),
    ({"runs": [{"arm": "relu", "seed": 1.5, "lr": 0.01, "run_id": OTHER}]}, RUNS_SHAPE),
    ({"runs": [{"arm": "relu", "seed": None, "lr": 0.01, "run_id": OTHER}]}, RUNS_SHAPE),
    ({"tuned_lr": {"relu": 0}}, "tuned_lr: expected arm -> a finite learning rate > 0"),
    ({"tuned_lr": {"relu": float("inf")}}, "tuned_lr: expected arm -> a finite learning rate > 0"),
    ({"tuned_lr": {"relu\n": 0.1}}, "tuned_lr: expected arm -> a finite learning rate > 0"),
    ({"tuned_lr": [0.1]}, "tuned_lr: expected arm -> a finite learning rate > 0"),
    ({"runs": {}}, RUNS_SHAPE),
    ({"runs": [{"arm": "=cmd", "seed": 0, "lr": 0.01, "run_id": OTHER}]}, RUNS_SHAPE),
    ({"runs": [{"arm": "relu", "seed": True, "lr": 0.01, "run_id": OTHER}]}, RUNS_SHAPE),
    ({"runs": [{"arm": "relu", "seed": 0, "lr": -1, "run_id": OTHER}]}, RUNS_SHAPE),
    ({"runs": ["relu"]}, RUNS_SHAPE),
    ({"runs": [{"arm": "relu", "seed": 0, "lr": 0.01, "run_id": "c" * 32}]},
     f"runs: run_id '{'c' * 32}' is not a run of this archive"),
    ({"runs": [{"arm": "relu", "seed": 0, "lr": 0.01}]}, "runs: run_id 'None' is not a run of this archive"),
    ({"runs": [{"arm": "relu", "seed": s, "lr": 0.01, "run_id": OTHER} for s in (0, 1)]}, "runs: a run_id repeats"),
    # what a review of the pydantic schema found accepted: no runs at all, integers past what the store keeps
    ({"runs": None}, RUNS_SHAPE),
    ({"runs": [{"arm": "relu", "seed": 0, "lr": 2**64, "run_id": OTHER}]}, RUNS_SHAPE),
    ({"runs": [{"arm": "relu", "seed": 0, "lr": 10**300, "run_id": OTHER}]}, RUNS_SHAPE),
    ({"tuned_lr": {"relu": 2**63}}, "tuned_lr: expected arm -> a finite learning rate > 0"),
])
def test_a_verdict_is_refused_on_each_field_it_gets_wrong(tmp_path, changes, why):
    verdict = _verdict(**changes)
    if "runs" in changes and changes["runs"] is None:
        del verdict["runs"]  # missing, not null
    _write(tmp_path, RUN, "verdict.json", verdict)
    assert _meaning_refused(tmp_path, _node(status="KILLED")) == f"run {RUN}'s verdict.json is malformed ({why})"


def test_a_sound_verdict_links_its_claim_run_to_its_arm_runs(tmp_path):
    _write(tmp_path, RUN, "verdict.json", _verdict(tuned_lr=None, evidence=["x" * 8000]))  # a line at the limit
    node = _node(status="KILLED")
    M.check(tmp_path, node, ARCHIVE)
    assert node.links == {RUN: {OTHER}}
    _write(tmp_path, RUN, "verdict.json", [1])
    assert "verdict: expected one of" in _meaning_refused(tmp_path, _node(status="KILLED"))


def test_the_data_after_the_members_is_bounded_to_the_byte(tmp_path):
    """The bound: the members' data in 512-byte blocks, three blocks of header per member and one more,
    and 20,480 bytes of slack (tar's end blocks and record padding). At the bound the archive is
    read; one byte more is refused."""
    first = _tar(tmp_path / "a.tar.gz", [("mlflow.db", b"d" * 1025), ("log.txt", b"x" * 3)]).read_bytes()
    bound = (3 * 512 + 512) + 3 * 512 * 3 + 20_480
    room = bound - len(gzip.decompress(first))
    for extra, refused in ((room, False), (room + 1, True)):
        path = tmp_path / f"{extra}.tar.gz"
        path.write_bytes(first + gzip.compress(b"\x00" * extra))
        if refused:
            assert _unpack_refused(path, tmp_path).startswith("more data than its members declare")
        else:
            assert A.unpack(path, tmp_path / "ok").is_dir()


def test_a_refused_member_is_named_with_the_archive_and_extracted_files_lose_special_bits(tmp_path):
    assert _unpack_refused(_tar(tmp_path / "a.tar.gz", [("mlflow.db", b"x"), ("evil/x", b"y")]), tmp_path) == (
        "unexpected entry 'evil' (a node archive holds only log.txt, manifest.json, mlflow.db, mlruns, node, results)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in (("mlflow.db", 0o644), ("log.txt", 0o6777)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = 70_000, mode  # a member over 64 KiB: no metadata header, not refused as one
            tar.addfile(info, io.BytesIO(b"z" * 70_000))
    path = tmp_path / "b.tar.gz"
    path.write_bytes(gzip.compress(buffer.getvalue()))
    into = A.unpack(path, tmp_path / "b")
    assert (into / "log.txt").stat().st_mode & 0o7022 == 0  # tarfile's "data" filter: no setuid, no group write


@pytest.fixture
def damaged(store, tmp_path) -> Path:
    db = _copy(store, tmp_path)
    data = bytearray(db.read_bytes())
    data[4096 * 3:4096 * 3 + 200] = b"\xff" * 200  # a page of the file overwritten
    db.write_bytes(bytes(data))
    return db


def test_a_damaged_store_is_named_with_sqlite_s_complaint_and_the_fix(damaged):
    message = _store_refused(damaged)
    assert message.startswith("its mlflow.db ") and message.endswith(
        "Copy the archive from the node again, or pack it again there")


def test_a_repeated_run_id_and_a_missing_schema_revision_are_refused(store, tmp_path):
    assert _store_refused(_copy(store, tmp_path, LOOSE_RUNS + "; INSERT INTO runs SELECT * FROM runs")) == (
        f"run id '{store[1]}' is not MLflow's 32 hex digits, or repeats")
    assert _store_refused(_copy(store, tmp_path, "DROP TABLE alembic_version; CREATE TABLE alembic_version "
                                                 "(version_num); INSERT INTO alembic_version VALUES (NULL)")) == (
        "its mlflow.db has an invalid schema revision 'None'")
