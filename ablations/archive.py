"""A GPU node's archive read as untrusted input: every header, path, row and JSON file is
checked before anything reaches the local store.

The node runs code nobody watched and the archive travels, so nothing in it is trusted:

- **tar headers** (before extraction): at most ``MAX_MEMBERS`` members and ``max_bytes`` in all
  (2 GiB by default); only regular files and folders (no links of any kind, devices, fifos or
  sparse files: the node writes none); no absolute paths, no ``..``; only the expected top-level
  names. A truncated or corrupt archive is named, never a traceback.
- **the MLflow database**: an SQLite file of the expected tables; every run's id is MLflow's 32
  hex digits, its experiment is one of the archive's, its status one MLflow knows; names, keys
  and values have bounded lengths; metric values are numbers. A RUNNING run (its worker died, or
  a heartbeat set in the future) comes in as KILLED, without its lease tags.
- **artifacts**: each imported run's ``result.json`` and ``verdict.json`` parse against their
  schema. The whole archive is refused on the first bad value, naming the member or the run.
"""

from __future__ import annotations

import json
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from alexnet.result import TrainResult

TOP_LEVEL = {"mlflow.db", "mlruns", "results", "log.txt", "manifest.json"}
RUN_TABLES = ("tags", "params", "metrics", "latest_metrics")  # rows keyed by run_uuid, besides ``runs``
MAX_BYTES = 2 * 2**30  # extracted size, from the headers (--max-gb raises it)
MAX_MEMBERS = 50_000  # a full-scale node run writes a few hundred
RUN_ID = re.compile(r"[0-9a-f]{32}")
EXPERIMENT_ID = re.compile(r"[0-9]{1,18}")
STATUSES = {"FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED"}
LEASE_TAGS = ("lease.owner", "lease.heartbeat")
# MLflow's own limits: names and keys 250 characters, param values 6,000, tag values 8,000
LIMITS = {"key": 250, "name": 250, "param": 6000, "tag": 8000, "text": 8000}
VERDICTS = {"reproduced", "contradicted", "inconclusive", "unfinished"}


class ArchiveError(ValueError):
    """The archive is refused; the message names the archive and the member or run at fault."""


@dataclass
class NodeStore:
    """The validated content of the archive's MLflow database."""
    schema: str  # alembic revision
    experiments: dict[str, str]  # id -> name
    runs: list[dict]  # rows of ``runs`` (active ones), statuses settled
    rows: dict[str, list[dict]] = field(default_factory=dict)  # table -> rows of the runs
    killed: list[str] = field(default_factory=list)  # runs that came in RUNNING, imported as KILLED


def unpack(archive: Path, into: Path, max_bytes: int = MAX_BYTES) -> Path:
    """The archive extracted under ``into`` once its headers passed (see the module's docstring)."""
    name = f"invalid archive {str(archive)!r}"
    if not archive.is_file():
        raise ArchiveError(f"{name}: no such file (expected the .tar.gz that scripts/gpu-run writes)")
    try:
        with tarfile.open(archive) as tar:
            members, total = [], 0
            for m in tar:  # stops at the first bad header, before reading on
                members.append(m)
                total += m.size
                _check_member(m, name)
                if total > max_bytes:
                    raise ArchiveError(f"{name}: its members declare more than {_gib(max_bytes)} "
                                       f"(reached at {_shown(m.name)}); raise the limit with --max-gb if it is genuine")
                if len(members) > MAX_MEMBERS:
                    raise ArchiveError(f"{name}: more than {MAX_MEMBERS:,} members (a node archive holds hundreds)")
            tar.extractall(into, members=members, filter="data")
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArchiveError(f"{name}: not a complete tar archive ({_first(exc)}); it is truncated or corrupt: "
                           "copy it again from the node") from None
    if not (into / "mlflow.db").is_file():
        raise ArchiveError(f"{name}: no mlflow.db in it")
    return into


def _check_member(m: tarfile.TarInfo, name: str) -> None:
    path = m.name.removeprefix("./")
    if path.startswith("/") or ".." in Path(path).parts:
        raise ArchiveError(f"{name}: member {_shown(m.name)} leads outside it")
    if path and path != "." and path.split("/")[0] not in TOP_LEVEL:
        raise ArchiveError(f"{name}: unexpected entry {_shown(path.split('/')[0])} (a node archive holds only "
                           f"{', '.join(sorted(TOP_LEVEL))})")
    if not (m.isreg() or m.isdir()) or m.issparse():
        kind = "a link" if m.issym() or m.islnk() else "a sparse file" if m.issparse() else "not a file or folder"
        raise ArchiveError(f"{name}: member {_shown(m.name)} is {kind}; a node archive holds only files and folders")


def read_store(db: Path, archive: Path) -> NodeStore:
    """The archive's runs, every value checked; ArchiveError naming the first bad one."""
    name = f"invalid archive {str(archive)!r}"
    head = db.read_bytes()[:16]
    if head != b"SQLite format 3\x00":
        raise ArchiveError(f"{name}: its mlflow.db is {'empty' if not head else 'not an SQLite database'}")
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            schema = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            meta = sa.MetaData()
            meta.reflect(conn, only=("experiments", "runs", *RUN_TABLES))
            experiments = {str(r.experiment_id): r.name for r in conn.execute(sa.select(meta.tables["experiments"]))}
            runs = [dict(r._mapping) for r in conn.execute(sa.select(meta.tables["runs"]).where(
                meta.tables["runs"].c.lifecycle_stage == "active"))]
            ids = [r["run_uuid"] for r in runs]
            rows = {t: [dict(r._mapping) for r in conn.execute(sa.select(meta.tables[t]).where(
                meta.tables[t].c.run_uuid.in_(ids)))] for t in RUN_TABLES}
    except sa.exc.SQLAlchemyError as exc:
        raise ArchiveError(f"{name}: its mlflow.db is not an MLflow store ({_first(exc)})") from None
    finally:
        engine.dispose()
    for exp_id, exp_name in experiments.items():
        if not EXPERIMENT_ID.fullmatch(exp_id) or not _text(exp_name, LIMITS["name"]):
            raise ArchiveError(f"{name}: experiment {_shown(exp_id)} has an invalid id or name {_shown(exp_name)}")
    store = NodeStore(str(schema), experiments, runs, rows)
    for run in runs:
        _check_run(run, store, name)
    for table, limit in (("params", LIMITS["param"]), ("tags", LIMITS["tag"])):
        for row in rows[table]:
            if not (_text(row["key"], LIMITS["key"]) and _text(row["value"], limit)):
                raise ArchiveError(f"{name}: run {row['run_uuid']} has a {table[:-1]} {_shown(row['key'])} "
                                   f"with an invalid key or a value over {limit:,} characters")
    for table in ("metrics", "latest_metrics"):
        for row in rows[table]:
            if not (_text(row["key"], LIMITS["key"]) and _number(row["value"]) and _int(row["step"])
                    and _int(row["timestamp"])):
                raise ArchiveError(f"{name}: run {row['run_uuid']} has a malformed metric {_shown(row['key'])}")
    dead = set(store.killed)
    store.rows["tags"] = [t for t in rows["tags"] if not (t["run_uuid"] in dead and t["key"] in LEASE_TAGS)]
    return store


def _check_run(run: dict, store: NodeStore, name: str) -> None:
    run_id = run["run_uuid"]
    if not (isinstance(run_id, str) and RUN_ID.fullmatch(run_id)):
        raise ArchiveError(f"{name}: run id {_shown(run_id)} is not MLflow's 32 hex digits")
    if str(run["experiment_id"]) not in store.experiments:
        raise ArchiveError(f"{name}: run {run_id} belongs to experiment {_shown(run['experiment_id'])}, which the "
                           "archive does not hold")
    if run["status"] not in STATUSES:
        raise ArchiveError(f"{name}: run {run_id} has an unknown status {_shown(run['status'])}")
    for key in ("name", "user_id", "source_name", "source_version", "entry_point_name", "source_type"):
        if run.get(key) is not None and not _text(run[key], LIMITS["text"]):
            raise ArchiveError(f"{name}: run {run_id} has an invalid {key}")
    for key in ("start_time", "end_time"):
        if run.get(key) is not None and not _int(run[key]):
            raise ArchiveError(f"{name}: run {run_id} has an invalid {key}")
    if run["status"] in ("RUNNING", "SCHEDULED"):  # its worker is gone, whatever its heartbeat says
        run["status"], run["end_time"] = "KILLED", run.get("end_time") or run.get("start_time")
        store.killed.append(run_id)


def check_artifacts(root: Path, store: NodeStore, archive: Path) -> None:
    """Every run's ``result.json`` and ``verdict.json``, where present, against their schema."""
    for run in store.runs:
        folder = artifacts(root, run)
        if folder.exists() and not folder.resolve().is_relative_to((root / "mlruns").resolve()):
            raise ArchiveError(f"invalid archive {str(archive)!r}: run {run['run_uuid']}'s artifacts lead outside it")
        _check_files(folder, run["run_uuid"], archive)


def artifacts(root: Path, run: dict) -> Path:
    """Where the archive keeps a run's artifacts (its id and experiment id are checked: no traversal)."""
    return root / "mlruns" / str(run["experiment_id"]) / run["run_uuid"] / "artifacts"


def _check_files(folder: Path, run_id: str, archive: Path) -> None:
    name = f"invalid archive {str(archive)!r}"
    for file, check in (("result.json", _result), ("verdict.json", _verdict)):
        path = folder / file
        if not path.exists():
            continue
        try:
            check(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{name}: run {run_id}'s {file} is malformed ({_first(exc)})") from None


def _result(d) -> None:
    TrainResult.parse(d)


def _verdict(d) -> None:
    if not isinstance(d, dict) or d.get("verdict") not in VERDICTS:
        raise ValueError(f"verdict {d.get('verdict') if isinstance(d, dict) else d!r:.80}: expected one of "
                         f"{', '.join(sorted(VERDICTS))}")
    if not (isinstance(d.get("evidence"), list) and all(isinstance(e, str) for e in d["evidence"])):
        raise ValueError("evidence: expected a list of lines")
    if not all(isinstance(k, str) and _number(v) for k, v in (d.get("tuned_lr") or {}).items()):
        raise ValueError("tuned_lr: expected arm -> number")
    for run in d.get("runs", []):
        if not (isinstance(run, dict) and isinstance(run.get("arm"), str) and _int(run.get("seed"))
                and RUN_ID.fullmatch(str(run.get("run_id", "")) or "0" * 32)):
            raise ValueError(f"runs: malformed entry {str(run)[:80]}")


def _text(value, limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else exc.__class__.__name__


def _shown(value) -> str:
    """A value from the archive as it may be printed: control characters escaped, length bounded."""
    return repr(str(value)[:120])
