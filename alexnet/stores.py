"""MLflow tracking-store URIs: which ones this project can use, checked before any work.

A URI is untrusted input: an unsupported scheme, an SQLite file that is not a database or sits
in a folder that cannot be written, or a database that refuses the connection each fail here
with one line naming the URI (its password redacted) and the fix."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from .untrusted import first_line, redact, writable_dir


class TrackingError(ValueError):
    """The tracking store cannot be used (unreachable, unsupported, not writable); names the URI and the fix."""


# URI schemes MLflow 3 stores runs in (database URIs take a driver: postgresql+psycopg://...)
SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https")
QUICK_CHECK_S = 20.0  # longest a store's integrity check may take at start (a bigger store is then trusted)
HOW_TO_NAME_A_STORE = ("expected sqlite:///PATH (an SQLite file), a database URL (postgresql://USER@HOST/DB, "
                       "mysql://..., mssql://...) or http(s)://HOST:PORT of an MLflow server")


def check_uri(uri: str, create: bool = True) -> None:
    """TrackingError, naming the (redacted) URI and the fix, for a store this project cannot use:
    an unsupported scheme, or an SQLite file whose folder cannot be written or which is not a
    database, or is damaged. ``create=False`` (a command that writes nothing to it): an existing
    file must already be an MLflow store, which opening it then leaves as it is."""
    scheme = uri.partition(":")[0].partition("+")[0].lower() if "://" in uri else ""
    if scheme not in SCHEMES:
        raise TrackingError(f"unsupported MLflow tracking URI {redact(uri)!r}: {HOW_TO_NAME_A_STORE}")
    if scheme in ("postgresql", "mysql", "mssql"):
        _probe_database(uri)
    if scheme != "sqlite":
        return
    path = Path(uri.split(":///", 1)[-1] if ":///" in uri else "")
    if not uri.startswith("sqlite:///") or not path.name or os.path.isdir(path) or len(path.name.encode()) > 255:
        raise TrackingError(f"invalid MLflow tracking URI {redact(uri)!r}: expected sqlite:///PATH to a database "
                            "file (sqlite:////abs/path.db for an absolute path)")
    try:
        writable_dir(path.parent, "MLflow store folder")
    except ValueError as exc:
        raise TrackingError(f"{exc} (from the tracking URI {redact(uri)!r})") from None
    if os.path.exists(path):
        with path.open("rb") as f:
            head = f.read(16)
        if (head or not create) and head != b"SQLite format 3\x00":
            raise TrackingError(f"MLflow store {path} is not an SQLite database (from the tracking URI "
                                f"{redact(uri)!r}): point --tracking-uri at another file, or move this one away")
        intact(path, f"MLflow store {path} (from the tracking URI {redact(uri)!r})", recover(path) +
               f", or start a fresh store (--tracking-uri sqlite:///{path.with_name('fresh.db')}: its runs are then "
               "trained again)")
        tables = _tables(path)  # MLflow would add its own beside another program's: never
        if (tables or not create) and not {"experiments", "runs", "alembic_version"} <= tables:
            raise TrackingError(f"{path} is an SQLite database but not an MLflow store (from the tracking URI "
                                f"{redact(uri)!r}): point --tracking-uri at the suite's store")
        if not os.access(path, os.W_OK):
            raise TrackingError(f"MLflow store {path} is not writable (from the tracking URI {redact(uri)!r}): "
                                "fix its permissions or point --tracking-uri at another file")


def _tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)) as con:
        return {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def recover(path: Path) -> str:
    return f"Restore it from a backup, recover what SQLite can (sqlite3 {path} .recover | sqlite3 recovered.db)"


def intact(path: Path, what: str, fixes: str) -> None:
    """TrackingError naming ``what``, SQLite's first complaint and the ``fixes``, when the SQLite
    file at ``path`` is damaged (PRAGMA quick_check: every page's structure; a big store is checked
    for at most QUICK_CHECK_S seconds, then trusted)."""
    con = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)
    deadline = time.monotonic() + QUICK_CHECK_S
    con.set_progress_handler(lambda: time.monotonic() > deadline, 100_000)
    try:
        problem = con.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.OperationalError as exc:
        problem = "ok" if "interrupt" in str(exc) else first_line(exc)
    except sqlite3.DatabaseError as exc:
        problem = first_line(exc)
    finally:
        con.close()
    if problem != "ok":
        raise TrackingError(f"{what} is damaged: SQLite reports {problem!r}. {fixes}")


def cannot_open(uri: str, exc: BaseException) -> TrackingError:
    return TrackingError(f"cannot open the MLflow store {redact(uri)} ({redact(first_line(exc))}): check the URI, "
                         "that its database server runs and its credentials (--tracking-uri, $MLFLOW_TRACKING_URI; "
                         "passwords via PGPASSWORD or ~/.pgpass)")


def _probe_database(uri: str) -> None:
    """One connection attempt, so that a wrong URI, password or a stopped server fails in seconds
    (MLflow itself retries for about 100 s)."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = None
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
        with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001  a bad URL, a missing driver, a refused connection or password
        raise cannot_open(uri, exc) from None
    finally:
        if engine is not None:
            engine.dispose()


def sqlite_path(uri: str) -> Path | None:
    """The database file of an ``sqlite:///`` URI (its query left off); None for other stores."""
    return Path(uri[len("sqlite:///"):].split("?")[0]) if uri.startswith("sqlite:///") else None


class StoreBusy(ValueError):
    """A writer that needs the store to itself found a suite running on it."""


@contextmanager
def sqlite_lock(uri: str):
    """Serialises schema creation when several processes open a fresh SQLite store at once."""
    if (db := sqlite_path(uri)) is None:
        yield
        return
    path = Path(f"{db}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def writers_lock(uri: str, exclusive: bool = False):
    """The writers' lock of a local SQLite store (a file lock beside the database): suites hold
    it shared while they run, waiting for an exclusive holder; an import holds it exclusively,
    and is refused (StoreBusy) while anyone holds it. Other stores: nothing to lock here (an
    import checks for live runs instead)."""
    if (db := sqlite_path(uri)) is None:
        yield
        return
    path = Path(f"{db}.writers")
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
        except BlockingIOError:
            raise StoreBusy(f"a suite is running on {redact(uri)} (or an import: it holds {path}): wait for it to "
                            "finish, then import") from None
        yield
