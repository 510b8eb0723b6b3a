"""The store an import writes to: locked before anything is opened or created, and left as it was
when the import is refused."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from alexnet.stores import StoreBusy, sqlite_lock, sqlite_path, writers_lock
from alexnet.tracking import Tracker, store_uri


class created_store:
    """The Tracker of ``uri``, opened holding the store's writers lock exclusively (a file beside an
    SQLite database; other stores have no file to lock: the import checks for live runs instead).
    The lock is taken before anything is opened or created and held until the import is done or
    undone, so a suite (which holds it shared) and another import never see a half-made store. A
    store that does not exist yet is made under the lock a suite takes to make one (``sqlite_lock``),
    held to the end: no suite can start in a store this import may remove again.
    Opening creates nothing in an existing store: not the suite's experiment (the import's
    transaction adds the experiments it needs), not an artifact folder. A store this import
    created — the SQLite file, its lock files, the folders above it, the artifact folder — is
    removed again when the import fails, so that a refusal leaves nothing behind."""

    def __init__(self, uri: str | None):
        self.uri = uri = store_uri(uri)
        self.db = db.absolute() if (db := sqlite_path(uri)) is not None else None

    def __enter__(self) -> Tracker:
        for name in ("mlflow", "alembic"):  # their INFO lines about creating a store's tables
            logging.getLogger(name).setLevel(logging.WARNING)
        self.fresh = self.db is not None and not os.path.exists(self.db)
        self.new_folders = [p for p in self.db.parents if not os.path.exists(p)] if self.fresh else []
        self.root = Path("mlruns").absolute()  # where MLflow puts a new store's artifacts
        self.before = set(self.root.iterdir()) if self.root.is_dir() else None
        self.held = contextlib.ExitStack()
        try:
            if self.fresh:  # the lock a suite takes to create a store: none is made here until this import ends
                self.held.enter_context(sqlite_lock(self.uri))
                self.fresh = not os.path.exists(self.db)  # made by another process before the lock was ours
            if self.db is not None:
                self.db.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self.held.enter_context(writers_lock(self.uri, exclusive=True))
                except StoreBusy:
                    self.fresh = False  # another process is making it: nothing here is ours to remove
                    raise
            self.tracker = Tracker(self.uri, create=False)
        except BaseException:
            self.__exit__(BaseException, None, None)
            raise
        return self.tracker

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is not None and self.fresh:
                for path in (self.db, *(self.db.with_name(self.db.name + s) for s in (".lock", ".writers"))):
                    path.unlink(missing_ok=True)  # a store no one else can have opened: it did not exist
                if self.before is None:
                    shutil.rmtree(self.root, ignore_errors=True)
                elif self.root.is_dir():
                    for path in set(self.root.iterdir()) - self.before:
                        shutil.rmtree(path, ignore_errors=True)
                for folder in self.new_folders:  # innermost first
                    shutil.rmtree(folder, ignore_errors=True)
        finally:
            self.held.close()
