"""Opening the store an import writes to, undone when the import is refused."""
from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
from pathlib import Path

from alexnet.tracking import EXPERIMENT, Tracker, store_uri


class created_store:
    """The Tracker of ``uri``. Whatever opening it creates — a new SQLite file and its lock files,
    the folders above it, the experiment row an existing store lacked, the artifact folder and the
    experiment folder in it — is removed again when the import fails (or opening does), so that a
    refusal leaves nothing behind."""

    def __init__(self, uri: str | None):
        self.uri = uri = store_uri(uri)
        self.db = Path(uri[len("sqlite:///"):].split("?")[0]).absolute() if uri.startswith("sqlite:///") else None

    def __enter__(self) -> Tracker:
        for name in ("mlflow", "alembic"):  # their INFO lines about creating a store's tables
            logging.getLogger(name).setLevel(logging.WARNING)
        self.fresh = self.db is not None and not self.db.exists()
        self.new_folders = [p for p in self.db.parents if not p.exists()] if self.fresh else []
        self.lock_files = [] if self.db is None else [  # the lock files opening and locking create
            p for p in (self.db.with_name(self.db.name + s) for s in (".lock", ".writers")) if not p.exists()]
        self.names = _experiment_names(self.db) if self.db is not None and not self.fresh else None
        self.root = Path("mlruns").absolute()  # where MLflow puts a new experiment's artifacts
        self.before = set(self.root.iterdir()) if self.root.is_dir() else None
        self.added = None
        try:
            self.tracker = Tracker(self.uri)
            if self.names is not None and EXPERIMENT not in self.names:
                self.added = self.tracker.experiment_id
        except BaseException:
            self._remove()
            raise
        return self.tracker

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            self._remove()

    def _remove(self) -> None:
        for path in self.lock_files:
            path.unlink(missing_ok=True)
        if self.fresh:
            self.db.unlink(missing_ok=True)
        elif self.added is not None:  # the experiment row opening the store added: gone again, not marked deleted
            with contextlib.closing(sqlite3.connect(self.db)) as db, db:
                for table in ("experiment_tags", "experiments"):
                    db.execute(f"DELETE FROM {table} WHERE experiment_id = ?", (int(self.added),))
        else:
            return
        if self.before is None:
            shutil.rmtree(self.root, ignore_errors=True)
        elif self.root.is_dir():
            for path in set(self.root.iterdir()) - self.before:
                shutil.rmtree(path, ignore_errors=True)
        for folder in self.new_folders:  # innermost first
            shutil.rmtree(folder, ignore_errors=True)


def _experiment_names(db: Path) -> set[str] | None:
    """The experiments an existing SQLite store holds, read without writing; None if it is no MLflow store."""
    try:
        with contextlib.closing(sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)) as con:
            return {name for (name,) in con.execute("SELECT name FROM experiments")}
    except sqlite3.Error:
        return None
