"""A GPU node's archive read as untrusted input: every header, path, row and JSON file is
checked before anything reaches the local store.

The node runs code nobody watched and the archive travels, so nothing in it is trusted:

- **the stream and its headers** (before extraction): a gzip stream is read to its end once, so
  its checksum catches corruption; at most ``MAX_MEMBERS`` members and ``max_bytes`` in all (2 GiB
  by default), metadata headers (long names, pax records) at most ``MAX_META`` bytes each; only
  regular files and folders (no links of any kind, devices, fifos or sparse files: the node writes
  none); names that are printable UTF-8, not absolute, without ``..``, under the expected
  top-level names. A truncated or corrupt archive is named, never a traceback.
- **the MLflow database**, read with plain ``sqlite3`` (no column types from the archive): an
  SQLite file with MLflow's tables; each value of each expected column has the type, range and
  length the local store's schema accepts (run ids MLflow's 32 hex digits, a known status and
  source type, integer times, unique keys...); every run belongs to one of the archive's
  experiments. A RUNNING run (its worker died, or a heartbeat set in the future) comes in as
  KILLED, without its lease tags.
- **artifacts and values**: ``ablations.node.meaning`` checks each run's ``result.json`` and
  ``verdict.json`` and what the rows mean (a number no training can produce, a run that would
  shadow a local one).

The whole archive is refused on the first bad value, naming the member or the run.
"""

from __future__ import annotations

import functools
import gzip
import re
import sqlite3
import tarfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ablations.node.run_tables import RUN_TABLES
from alexnet.stores import TrackingError, intact
from alexnet.untrusted import printable, quoted

TOP_LEVEL = {"mlflow.db", "mlruns", "results", "log.txt", "manifest.json", "node"}  # node/: its record, not imported
MAX_BYTES = 2 * 2**30  # extracted size, from the headers (--max-gb raises it)
MAX_MEMBERS = 50_000  # a full-scale node run writes a few hundred
MAX_META = 64 * 2**10  # a long-name or pax header: the node's names are short
MAX_DEPTH, MAX_NAME = 32, 1024  # parts and characters of a member's path
MAX_ROWS = 1_000_000  # rows of one table of the node's store (a full-scale run writes thousands)
MAX_KEYS, MAX_RELOGS = 200, 32  # metric names of a training run (a run logs about 20); logs of a name at a step
STORE_FILES = (".db", "-journal", "-wal", "-shm", ".lock", ".writers")  # never a report's name: SQLite reads them
RUN_ID = re.compile(r"[0-9a-f]{32}")
STATUSES = {"FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED"}
SOURCE_TYPES = {"NOTEBOOK", "JOB", "LOCAL", "UNKNOWN", "PROJECT", None}
LEASE_TAGS = ("lease.owner", "lease.heartbeat")
MAX_SKEW_S = 24 * 3600  # how far in the future a node's clock may date a run
# the columns read from each table, and what each value must be: ("str", max length, nullable) or
# ("int", nullable) or ("num",) or ("flag",) — the local MLflow schema's types and lengths
TEXT = {"key": ("str", 250, False), "tag": ("str", 8000, True), "param": ("str", 8000, False)}
COLUMNS = {
    "experiments": {"experiment_id": ("int", False), "name": ("str", 256, False)},
    "runs": {"run_uuid": ("str", 32, False), "name": ("str", 250, True), "source_type": ("str", 20, True),
             "source_name": ("str", 500, True), "entry_point_name": ("str", 50, True),
             "user_id": ("str", 256, True), "status": ("str", 9, False), "start_time": ("int", False),
             "end_time": ("int", True), "source_version": ("str", 50, True), "experiment_id": ("int", False)},
    "tags": {"key": TEXT["key"], "value": TEXT["tag"], "run_uuid": ("str", 32, False)},
    "params": {"key": TEXT["key"], "value": TEXT["param"], "run_uuid": ("str", 32, False)},
    "metrics": {"key": TEXT["key"], "value": ("num",), "timestamp": ("int", False), "run_uuid": ("str", 32, False),
                "step": ("int", False), "is_nan": ("flag",)},
    "latest_metrics": {"key": TEXT["key"], "value": ("num",), "timestamp": ("int", True), "step": ("int", False),
                       "is_nan": ("flag",), "run_uuid": ("str", 32, False)},
}
UNIQUE = {"tags": ("key", "run_uuid"), "params": ("key", "run_uuid"), "latest_metrics": ("key", "run_uuid"),
          "metrics": ("key", "timestamp", "step", "run_uuid", "value", "is_nan")}


class ArchiveError(ValueError):
    """The archive is refused; the message names the archive and the member or run at fault."""


@dataclass
class NodeStore:
    """The validated content of the archive's MLflow database."""
    schema: str  # alembic revision
    experiments: dict[int, str]  # id -> name
    runs: list[dict]  # rows of ``runs`` (active ones), statuses settled
    rows: dict[str, list[dict]] = field(default_factory=dict)  # table -> rows of the runs
    killed: list[str] = field(default_factory=list)  # runs that came in RUNNING, imported as KILLED
    links: dict[str, set] = field(default_factory=dict)  # run id -> the runs it names (its parent, its verdict's)

    @functools.cached_property
    def tags(self) -> dict[tuple[str, str], str]:
        """(run id, key) -> value, indexed once the rows are final (a full archive holds thousands)."""
        return {(t["run_uuid"], t["key"]): t["value"] for t in self.rows["tags"]}

    def tag(self, run_id: str, key: str) -> str | None:
        return self.tags.get((run_id, key))


class _Headers(tarfile.TarInfo):
    """Refuses a long-name or pax header larger than MAX_META before tarfile reads it into memory."""

    def _proc_member(self, tarfile_):
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                         tarfile.SOLARIS_XHDTYPE) and self.size > MAX_META:
            raise ArchiveError(f"a metadata header declares {self.size:,} bytes (at most {MAX_META:,})")
        return super()._proc_member(tarfile_)


def unpack(archive: Path, into: Path, max_bytes: int = MAX_BYTES) -> Path:
    """The archive extracted under ``into`` once its stream and headers passed (see the module's docstring)."""
    name = f"invalid archive {str(archive)!r}"
    if not archive.is_file():
        raise ArchiveError(f"{name}: no such file (expected the .tar.gz that scripts/gpu-run writes)")
    with archive.open("rb") as f:
        if f.read(2) != b"\x1f\x8b":
            raise ArchiveError(f"{name}: not a gzip-compressed tar archive (scripts/gpu-run writes .tar.gz)")
    try:
        with tarfile.open(archive, "r:gz", tarinfo=_Headers) as tar:
            members, total = [], 0
            for m in tar:  # stops at the first bad header, before reading on
                members.append(m)
                total += m.size
                _check_member(m, name)
                if total > max_bytes:
                    raise ArchiveError(f"{name}: its members declare more than {_gib(max_bytes)} "
                                       f"(reached at {quoted(m.name)}); raise the limit with --max-gb if it is genuine")
                if len(members) > MAX_MEMBERS:
                    raise ArchiveError(f"{name}: more than {MAX_MEMBERS:,} members (a node archive holds hundreds)")
            # read to the end once: gzip's checksum and length catch damage; no more data than the members
            # declare (with their headers and padding) may follow
            bound = sum(-(-m.size // 512) * 512 for m in members) + 3 * 512 * (len(members) + 1) + 20_480
            with gzip.open(archive) as stream:
                read = 0
                while chunk := stream.read(2**22):
                    read += len(chunk)
                    if read > bound:
                        raise ArchiveError(f"{name}: more data than its members declare (data after the archive's "
                                           "end, or a second stream)")
            tar.extractall(into, members=members, filter="data")
    except ArchiveError as exc:
        raise ArchiveError(str(exc) if str(exc).startswith(name) else f"{name}: {exc}") from None
    except (RecursionError, MemoryError):
        raise ArchiveError(f"{name}: its headers nest or chain too deeply to read") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError, UnicodeError) as exc:
        raise ArchiveError(f"{name}: not a complete tar archive ({_first(exc)}); it is truncated or corrupt: "
                           "copy it again from the node") from None
    if not (into / "mlflow.db").is_file():
        raise ArchiveError(f"{name}: no mlflow.db file in it")
    return into


def _check_member(m: tarfile.TarInfo, name: str) -> None:
    path = m.name.removeprefix("./")
    if not path or not m.name.isprintable() or any(0xD800 <= ord(c) < 0xE000 for c in m.name):
        raise ArchiveError(f"{name}: member name {quoted(m.name)} is empty, not UTF-8 or holds control characters")
    if len(m.name) > MAX_NAME or len(Path(path).parts) > MAX_DEPTH:
        raise ArchiveError(f"{name}: member {quoted(m.name)} is nested deeper than {MAX_DEPTH} folders or named "
                           f"longer than {MAX_NAME} characters")
    if path.startswith("results/") and m.isreg() and path.endswith(STORE_FILES):
        raise ArchiveError(f"{name}: report {quoted(path)} has the name of a database or lock file")
    if path.startswith("/") or ".." in Path(path).parts:
        raise ArchiveError(f"{name}: member {quoted(m.name)} leads outside it")
    if path != "." and path.split("/")[0] not in TOP_LEVEL:
        raise ArchiveError(f"{name}: unexpected entry {quoted(path.split('/')[0])} (a node archive holds only "
                           f"{', '.join(sorted(TOP_LEVEL))})")
    if not (m.isreg() or m.isdir()) or m.issparse():
        kind = "a link" if m.issym() or m.islnk() else "a sparse file" if m.issparse() else "not a file or folder"
        raise ArchiveError(f"{name}: member {quoted(m.name)} is {kind}; a node archive holds only files and folders")


def read_store(db: Path, archive: Path) -> NodeStore:
    """The archive's runs, every value checked; ArchiveError naming the first bad one."""
    name = f"invalid archive {str(archive)!r}"
    head = db.read_bytes()[:16]
    if head != b"SQLite format 3\x00":
        raise ArchiveError(f"{name}: its mlflow.db is {'empty' if not head else 'not an SQLite database'}")
    try:
        intact(db, f"{name}: its mlflow.db", "Copy the archive from the node again, or pack it again there")
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            kinds = dict(conn.execute("SELECT name, type FROM sqlite_master"))
            odd = [t for t in (*COLUMNS, "alembic_version") if kinds.get(t) != "table"  # generated columns:
                   or any(c[6] for c in conn.execute(f"PRAGMA table_xinfo({t})"))]  # values made on reading
            if odd:
                plain = "is not a plain table" if len(odd) < 2 else "are not plain tables"
                raise ValueError(f"{', '.join(odd)} {plain}")
            big = [t for t in COLUMNS if conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] > MAX_ROWS]
            if big:
                raise ValueError(f"{', '.join(big)} hold more than {MAX_ROWS:,} rows")
            _metric_rows(conn, name)  # before the rows are read into memory
            (schema,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            tables = {t: _select(conn, t) for t in COLUMNS}
            active = {r[0] for r in conn.execute("SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active'")}
        finally:
            conn.close()
    except ArchiveError:
        raise
    except TrackingError as exc:
        raise ArchiveError(str(exc)) from None
    except (sqlite3.Error, TypeError, ValueError) as exc:
        raise ArchiveError(f"{name}: its mlflow.db is not an MLflow store ({_first(exc)})") from None
    if not (of_kind(schema, ("str", 32, False)) and schema.isprintable()):
        raise ArchiveError(f"{name}: its mlflow.db has an invalid schema revision {quoted(schema)}")
    for table, rows in tables.items():
        for row in rows:
            bad = next((c for c, kind in COLUMNS[table].items() if not of_kind(row[c], kind)), None)
            if bad:
                run = f"run {quoted(row['run_uuid'])}" if "run_uuid" in row else f"experiment {quoted(row['name'])}"
                raise ArchiveError(f"{name}: {table} of {run}: invalid {bad} {quoted(row[bad])}")
    experiments = {r["experiment_id"]: r["name"] for r in tables["experiments"]}
    if len(experiments) != len(tables["experiments"]) or any(not n.strip() for n in experiments.values()):
        raise ArchiveError(f"{name}: its experiments have repeated ids or empty names")
    runs = [r for r in tables["runs"] if r["run_uuid"] in active]
    store = NodeStore(str(schema), experiments, runs)
    ids = Counter(r["run_uuid"] for r in runs)
    for run in runs:
        _check_run(run, store, name, ids)
    store.rows = {t: [r for r in tables[t] if r["run_uuid"] in ids] for t in RUN_TABLES}
    for table, key in UNIQUE.items():  # numbers compared as the store's REAL column holds them
        seen = Counter(tuple(float(r[k]) if k == "value" and table == "metrics" else r[k] for k in key)
                       for r in store.rows[table])
        twice = next((k for k, n in seen.items() if n > 1), None)
        if twice:
            raise ArchiveError(f"{name}: {table} of run {quoted(twice[key.index('run_uuid')])} repeats "
                               f"{quoted(twice[0])}")
    dead = set(store.killed)
    store.rows["tags"] = [t for t in store.rows["tags"] if not (t["run_uuid"] in dead and t["key"] in LEASE_TAGS)]
    return store


def _metric_rows(conn: sqlite3.Connection, name: str) -> None:
    """Metric rows bounded by what a run can log, counted by SQLite (nothing read into memory):
    steps 0 to the run's epochs (0 for a run without epochs); each (name, step) once in a
    training run (one with epochs), at most MAX_RELOGS times in others (a claim run is logged again
    at each look of --seeds auto and at each rerun); at most MAX_KEYS names per training run,
    MAX_KEYS * 10 per other run."""
    epochs = "coalesce((SELECT CAST(value AS INTEGER) FROM params p WHERE p.run_uuid = m.run_uuid AND p.key = 'epochs'"
    bad = conn.execute(
        f"SELECT run_uuid, key, step, count(*), {epochs}), -1) AS e FROM metrics m GROUP BY run_uuid, key, step "
        "HAVING step < 0 OR step > max(e, 0) OR count(*) > (CASE WHEN e >= 0 THEN 1 ELSE ? END) LIMIT 1",
        (MAX_RELOGS,)).fetchone()
    if bad:
        run, key, step, n, e = bad
        raise ArchiveError(f"{name}: metric {quoted(key)} of run {quoted(run)} is logged {n:,} times at step "
                           f"{step:,}; a run logs a metric at steps 0 to its epochs ({max(e, 0)}), once per step in a "
                           f"training run, at most {MAX_RELOGS} times in a claim or suite run")
    crowded = conn.execute(
        f"SELECT run_uuid, count(DISTINCT key), {epochs}), -1) AS e FROM metrics m GROUP BY run_uuid "
        "HAVING count(DISTINCT key) > (CASE WHEN e >= 0 THEN ? ELSE ? END) LIMIT 1",
        (MAX_KEYS, 10 * MAX_KEYS)).fetchone()
    if crowded:
        raise ArchiveError(f"{name}: run {quoted(crowded[0])} logs {crowded[1]:,} metric names (at most {MAX_KEYS:,} "
                           f"in a training run, {10 * MAX_KEYS:,} in others)")
    orphan = conn.execute("SELECT run_uuid, key FROM latest_metrics l WHERE NOT EXISTS (SELECT 1 FROM metrics m "
                          "WHERE m.run_uuid = l.run_uuid AND m.key = l.key) LIMIT 1").fetchone()
    if orphan:
        raise ArchiveError(f"{name}: run {quoted(orphan[0])} has a latest value of metric {quoted(orphan[1])}, which "
                           "it never logged")
    forged = conn.execute("SELECT run_uuid, key, value FROM (SELECT run_uuid, key, value FROM metrics UNION ALL "
                          "SELECT run_uuid, key, value FROM latest_metrics) WHERE abs(value) > 1e300 OR "
                          "(key GLOB '*_acc' AND NOT value BETWEEN 0 AND 1) LIMIT 1").fetchone()
    if forged:
        raise ArchiveError(f"{name}: metric {quoted(forged[1])} of run {quoted(forged[0])} is {forged[2]!r}, which no "
                           "run logs (accuracies lie in [0, 1], every value is finite)")
    for table in ("params", "tags"):
        many = conn.execute(f"SELECT run_uuid, count(*) FROM {table} GROUP BY run_uuid HAVING count(*) > ? LIMIT 1",
                            (10 * MAX_KEYS,)).fetchone()
        if many:
            raise ArchiveError(f"{name}: run {quoted(many[0])} has {many[1]:,} {table} (a run has at most "
                               f"{10 * MAX_KEYS:,})")


def _select(conn: sqlite3.Connection, table: str) -> list[dict]:
    columns = list(COLUMNS[table])
    quoted = ", ".join('"' + c + '"' for c in columns)
    return [dict(zip(columns, row)) for row in conn.execute(f"SELECT {quoted} FROM {table}")]


def _check_run(run: dict, store: NodeStore, name: str, ids: Counter) -> None:
    run_id = run["run_uuid"]
    if not RUN_ID.fullmatch(run_id) or ids[run_id] > 1:
        raise ArchiveError(f"{name}: run id {quoted(run_id)} is not MLflow's 32 hex digits, or repeats")
    if run["experiment_id"] not in store.experiments:
        raise ArchiveError(f"{name}: run {run_id} belongs to experiment {quoted(run['experiment_id'])}, which the "
                           "archive does not hold")
    if run["status"] not in STATUSES or run["source_type"] not in SOURCE_TYPES:
        raise ArchiveError(f"{name}: run {run_id} has an unknown status or source type {quoted(run['status'])}")
    late = max(run["start_time"], run["end_time"] or 0) - time.time() * 1000
    if late > MAX_SKEW_S * 1000:
        raise ArchiveError(f"{name}: run {run_id} is dated {late / 3.6e6:,.1f} h in the future (clocks may differ "
                           f"by at most {MAX_SKEW_S / 3600:g} h): set the node's clock right and export again")
    if run["status"] in ("RUNNING", "SCHEDULED"):  # its worker is gone, whatever its heartbeat says
        run["status"], run["end_time"] = "KILLED", run["end_time"] or run["start_time"]
        store.killed.append(run_id)


def artifacts(root: Path, run: dict) -> Path:
    """Where the archive keeps a run's artifacts (its id and experiment id are checked: no traversal)."""
    return root / "mlruns" / str(run["experiment_id"]) / run["run_uuid"] / "artifacts"


def of_kind(value, kind: tuple) -> bool:
    """Whether ``value`` (as sqlite3 or json returns it) is of ``kind`` (see COLUMNS)."""
    if kind[0] == "str":
        return (value is None and kind[2]) or (isinstance(value, str) and len(value) <= kind[1])
    if kind[0] == "int":
        return (value is None and kind[1]) or (type(value) is int and abs(value) < 2**63)
    if kind[0] == "flag":
        return type(value) is int and value in (0, 1)
    return type(value) is float or (type(value) is int and abs(value) < 2**63)


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return printable(text.splitlines()[0][:200]) if text else exc.__class__.__name__
