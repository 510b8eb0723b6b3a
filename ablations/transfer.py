"""``python -m ablations import ARCHIVE``: bring a GPU node's results home, all or nothing.

The archive (``scripts/gpu-run`` writes it) holds the node's MLflow store (``mlflow.db`` and its
artifacts under ``mlruns/``), its reports (``results/``), a log and a manifest. It is untrusted:
``ablations.archive`` checks its headers, rows and JSON files first. Then, in this order:

1. **check** — the local store's schema revision equals the archive's; no suite is running on the
   store (its writer lock, and no live RUNNING run); every new run's artifact folder and every
   report resolves inside its target folder; a local report that differs from the archive's is
   refused unless ``replace_results`` (identical ones are left as they are);
2. **stage** — artifacts and reports are copied into hidden staging folders beside their targets;
3. **write** — the runs' rows go in one database transaction, and the staged folders are moved
   into place before it commits; any failure rolls the rows back and removes what was moved.

Runs already in the local store are left alone (importing twice duplicates nothing); the suite
then reuses the node's runs (same config hash, seed and code version)."""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

from alexnet.tracking import Tracker, local_folder

from .archive import MAX_BYTES, RUN_TABLES, ArchiveError, NodeStore, artifacts, check_artifacts, read_store, unpack


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _schema(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())


def _report_files(root: Path, results_dir: Path, replace: bool) -> list[tuple[Path, Path]]:
    """(archive file, local target) of every report that is new or differs; ValueError when one
    would overwrite a different local file without ``replace``."""
    source = root / "results"
    pairs = []
    for src in sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []:
        target = results_dir / src.relative_to(source)
        if not _inside(target, results_dir):
            raise ArchiveError(f"report {src.relative_to(root)} would land outside {results_dir}")
        if target.exists() and filecmp.cmp(src, target, shallow=False):
            continue  # the same file: a second import
        if target.exists() and not replace:
            raise ValueError(f"the archive's {src.relative_to(root)} differs from the local {target}: nothing was "
                             "imported. Keep yours (--results-dir elsewhere) or take the node's (--replace-results)")
        pairs.append((src, target))
    return pairs


class Merge:
    """The node's new runs, checked against the local store and staged; ``commit`` writes them."""

    def __init__(self, root: Path, node: NodeStore, tracker: Tracker, archive: Path):
        if tracker.uri.startswith(("http://", "https://")):
            raise ValueError(f"cannot import into {tracker.shown_uri}: importing keeps run ids, which needs the "
                             "store's database URI (sqlite:///... or postgresql+psycopg://...), not a server URL")
        self.root, self.node, self.tracker, self.archive = root, node, tracker, archive
        self.engine = sa.create_engine(tracker.uri)
        local = _schema(self.engine)
        if local != node.schema:
            raise ValueError(f"the archive's MLflow schema revision {node.schema} differs from the local store's "
                             f"{local}: use the same MLflow version on the node and here (constraints.txt)")
        self.meta = sa.MetaData()
        self.meta.reflect(self.engine, only=("runs", *RUN_TABLES))
        ids = [r["run_uuid"] for r in node.runs]
        with self.engine.connect() as conn:
            runs = self.meta.tables["runs"]
            self.present = {r[0] for r in conn.execute(sa.select(runs.c.run_uuid).where(runs.c.run_uuid.in_(ids)))}
        self.new = [dict(r) for r in node.runs if r["run_uuid"] not in self.present]

    def source(self, run: dict) -> Path:
        return artifacts(self.root, run)

    def targets(self) -> dict[str, tuple[str, str, Path]]:
        """run id -> (local experiment id, artifact location, the run's folder there), each checked
        to lie inside its location and not to exist yet. Creates the experiments the store lacks."""
        found = {}
        for run in self.new:
            name = self.node.experiments[str(run["experiment_id"])]
            local = self.tracker.client.get_experiment_by_name(name)
            exp_id = local.experiment_id if local else self.tracker.client.create_experiment(name)
            location = self.tracker.client.get_experiment(exp_id).artifact_location
            folder = local_folder(location)
            if folder is None:
                raise ValueError(f"cannot import artifacts into {location!r}: the local store's artifacts must be a "
                                 "local folder")
            target = folder / run["run_uuid"]
            if not _inside(target, folder) or target.exists():
                raise ArchiveError(f"invalid archive {str(self.archive)!r}: run {run['run_uuid']}'s artifact folder "
                                   f"{target} already exists locally or lies outside {folder}")
            found[run["run_uuid"]] = (exp_id, location, target)
        return found

    def commit(self) -> int:
        """Stage the artifacts, insert the rows and move the artifacts into place in one transaction."""
        if not self.new:
            return 0
        targets = self.targets()
        token = uuid.uuid4().hex[:8]
        staged, moved = {}, []
        try:
            for run in self.new:
                exp_id, location, target = targets[run["run_uuid"]]
                stage = target.parent / f".import-{token}" / run["run_uuid"]
                stage.mkdir(parents=True)
                if self.source(run).is_dir():
                    shutil.copytree(self.source(run), stage / "artifacts")
                staged[run["run_uuid"]] = (stage, target)
                run["experiment_id"], run["artifact_uri"] = int(exp_id), f"{location}/{run['run_uuid']}/artifacts"
            keep = {r["run_uuid"] for r in self.new}
            with self.engine.begin() as conn:  # rolled back on any error below
                conn.execute(sa.insert(self.meta.tables["runs"]), self.new)
                for table in RUN_TABLES:
                    rows = [r for r in self.node.rows[table] if r["run_uuid"] in keep]
                    if rows:
                        conn.execute(sa.insert(self.meta.tables[table]), rows)
                for stage, target in staged.values():
                    os.replace(stage, target)
                    moved.append(target)
        except BaseException:
            for target in moved:
                shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            for stage, _ in staged.values():
                shutil.rmtree(stage.parent, ignore_errors=True)
            self.engine.dispose()
        return len(self.new)


def import_archive(archive: Path, uri: str | None, results_dir: Path, *, max_bytes: int = MAX_BYTES,
                   replace_results: bool = False) -> dict:
    """Merge the archive's runs into the store at ``uri`` (opened only once the archive passed its
    checks) and copy its reports into ``results_dir``; all or nothing. What was done, for the caller."""
    with tempfile.TemporaryDirectory(prefix="alexnet-import-") as tmp:  # removed on every exit, SIGTERM included
        root = unpack(archive, Path(tmp), max_bytes)
        node = read_store(root / "mlflow.db", archive)
        check_artifacts(root, node, archive)
        reports = _report_files(root, results_dir, replace_results)
        tracker = Tracker(uri)  # opened (or created) only once the archive passed every check
        with tracker.store_lock(exclusive=True):  # refuses while a suite runs on a local store
            live = [r for r in tracker.find({}, statuses=("RUNNING",)) if not tracker.dead(r)]
            if live:
                raise ValueError(f"a suite is running on {tracker.shown_uri} (run {live[0].info.run_id} is live): "
                                 "import when it has finished")
            merge = Merge(root, node, tracker, archive)
            results_dir.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=".import-", dir=results_dir))
            try:
                for i, (src, _) in enumerate(reports):
                    shutil.copy2(src, stage / str(i))
                imported = merge.commit()
                for i, (_, target) in enumerate(reports):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(stage / str(i), target)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
    folders = sorted({str(t.parent) for _, t in reports})
    return {"imported": imported, "present": len(merge.present), "reports": folders, "store": tracker.shown_uri,
            "killed": [r for r in node.killed if r not in merge.present], "replaced": replace_results}
