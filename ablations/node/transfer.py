"""``python -m ablations import ARCHIVE``: bring a GPU node's results home, all or nothing.

The archive (``scripts/gpu-run`` writes it) holds the node's MLflow store (``mlflow.db`` and its
artifacts under ``mlruns/``), its reports (``results/``), a log, a manifest and the node's record
(``node/``: read by people, never imported). It is untrusted:
``ablations.node.archive`` checks its stream, headers, rows and JSON files first. Then, in this order:

1. **check** — the local store's schema revision equals the archive's; no suite is running on the
   store (its writer lock, and no live RUNNING run); the results folder and the store's artifact
   folders do not contain each other; every new run's artifact folder and every report resolves
   inside its target folder, the former not existing yet; a local report that differs from the
   archive's is refused unless ``replace_results`` (identical ones are left as they are);
2. **stage** — artifacts and reports are copied into hidden staging folders beside their targets;
3. **write** — the experiments the store lacks and the runs' rows go in one database transaction
   (new experiments keep their artifacts beside the store's own, never where the archive or the
   working folder would put them); the staged folders and reports are moved into place before
   it commits. Any failure rolls the rows back, removes what was moved and restores replaced
   reports; a store this import created is removed again.

Runs already in the local store are left alone (importing twice duplicates nothing); the suite
then reuses the node's runs (same config hash, seed and code version) where the local store has
none of its own: each imported run is tagged ``import.time`` and ``import.archive``, and a
local run comes first (``alexnet.tracking.Tracker.find``), so an archive cannot change a verdict
the local store alone gives."""

from __future__ import annotations

import csv
import filecmp
import io
import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from ablations.node.archive import (
    MAX_BYTES,
    ArchiveError,
    NodeStore,
    artifacts,
    read_store,
    unpack,
)
from ablations.node.created_store import created_store
from ablations.node.meaning import check as check_meaning
from ablations.node.run_tables import RUN_TABLES, RunTables
from alexnet.tracking import IMPORTED, Tracker, local_folder
from alexnet.untrusted import formula_free, printable, quoted

MAX_LINE = 65_536  # characters in a line of an imported CSV report
REPORT_FOLDER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")  # a scale or a device slug
REPORT_FILE = re.compile(r"claims\.md|claims\.csv|bench\.json|bench\.csv|[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.png")


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _report_files(root: Path, results_dir: Path, replace: bool) -> list[tuple[Path, Path]]:
    """(archive file, local target) of every report that is new or differs; ValueError when one
    would overwrite a different local file without ``replace``, or a file stands in its way."""
    source = root / "results"
    pairs = []
    for src in sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []:
        rel = src.relative_to(source)
        if len(rel.parts) != 3 or not all(REPORT_FOLDER.fullmatch(p) for p in rel.parts[:2]) \
                or not REPORT_FILE.fullmatch(rel.name):
            raise ArchiveError(f"report {quoted(str(rel))} is not one a suite or benchmark writes (results/<scale>/"
                               "<device>/ holding claims.md, claims.csv, bench.json, bench.csv and .png plots)")
        wrong = _content_problem(src)
        if wrong:
            raise ArchiveError(f"report {quoted(str(rel))} {wrong}")
        target = results_dir / rel
        blocked = next((p for p in [*reversed(rel.parents[:-1])] if (results_dir / p).exists()
                        and not (results_dir / p).is_dir()), None)
        if not _inside(target, results_dir) or target.is_dir() or blocked is not None:
            raise ArchiveError(f"report {quoted(str(rel))} cannot be written to {quoted(str(target))}: a local "
                               "folder or file stands there")
        if target.exists() and filecmp.cmp(src, target, shallow=False):
            continue  # the same file: a second import
        if target.exists() and not replace:
            raise ValueError(f"the archive's results/{quoted(str(rel))} differs from the local {quoted(str(target))}: "
                             "nothing was imported. Keep yours (--results-dir elsewhere) or take the node's "
                             "(--replace-results)")
        pairs.append((src, target))
    return pairs


def _content_problem(path: Path) -> str | None:
    """What is wrong with a report's content for its kind, or None: a .png is a PNG, a .json parses,
    .md and .csv are UTF-8 text, and no CSV cell starts like a spreadsheet formula unless a number."""
    data = path.read_bytes()
    if path.suffix == ".png":
        return None if data.startswith(b"\x89PNG\r\n\x1a\n") else "is not a PNG image"
    try:
        text = data.decode()
        if path.suffix == ".json":
            json.loads(text)
    except ValueError:
        return f"is not {'JSON' if path.suffix == '.json' else 'UTF-8 text'}"
    if path.suffix == ".csv":
        longest = max(map(len, text.splitlines()), default=0)
        if longest > MAX_LINE:  # csv's own limit is a global others may raise
            return f"holds a line of {longest:,} characters (the suite's are under {MAX_LINE:,})"
        if text.startswith("\ufeff") or re.match(r"\s*sep\s*=", text, re.I):  # read by spreadsheets, dropped
            return "starts with a byte-order mark or a 'sep=' line"                # or obeyed: not ours
        try:
            cell = next((c for sep in ",;\t|" for row in csv.reader(io.StringIO(text, newline=""), delimiter=sep)
                         for c in row if not formula_free(c) and not _number(c)), None)  # any separator read
        except csv.Error as exc:  # a bare carriage return, a cell over csv's field limit, ...
            return f"is not a CSV file the suite writes ({exc})"
        if cell is not None:
            return f"holds a cell that starts like a spreadsheet formula: {quoted(cell)}"
    return None


def _number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


class Merge:
    """The node's new runs, checked against the local store; ``commit`` writes them, all or nothing."""

    def __init__(self, root: Path, node: NodeStore, tracker: Tracker, archive: Path):
        self.root, self.node, self.tracker, self.archive = root, node, tracker, archive
        self.tables = RunTables(tracker.uri, node.schema, tracker.shown_uri)  # refuses another schema revision
        self.present = self.tables.present([r["run_uuid"] for r in node.runs])
        found, self.next_id = self.tables.experiments()
        self.local = {r.name: (r.experiment_id, r.artifact_location) for r in found if r.lifecycle_stage == "active"}
        self.deleted = {r.name for r in found if r.lifecycle_stage != "active"}
        self.new = [dict(r) for r in node.runs if r["run_uuid"] not in self.present]
        linked = next(((r["run_uuid"], to) for r in self.new for to in node.links.get(r["run_uuid"], ())
                       if to in self.present and IMPORTED not in tracker.run(to).data.tags), None)
        if linked:  # a new run names the archive's runs, or ones an earlier import brought: never a local one
            raise ArchiveError(f"invalid archive {str(archive)!r}: its new run {linked[0]} names run {linked[1]} (as "
                               "its parent or in its verdict), which is a run of the local store")
        own = (local_folder(tracker.client.get_experiment(tracker.experiment_id).artifact_location)
               if tracker.experiment_id is not None else Path("mlruns").absolute() / "0")  # MLflow's default
        if own is None:
            raise ValueError("cannot import artifacts: the local store's artifacts must be a local folder")
        self.artifact_root = own.parent  # where the store keeps each experiment's folder
        self.plan = self._plan()

    def _plan(self) -> dict[str, tuple[int, str, Path]]:
        """run id -> (local experiment id, artifact location, the run's folder), each target checked
        to lie inside its experiment's folder and not to exist yet; experiments the store lacks get
        the next ids, with folders beside the store's own."""
        self.created: dict[str, tuple[int, str]] = {}
        found = {}
        for run in self.new:
            name = self.node.experiments[run["experiment_id"]]
            if name in self.deleted:
                raise ValueError(f"the local store holds a deleted experiment named {quoted(name)}, which the "
                                 "archive's runs belong to: restore it (mlflow experiments restore) or purge it, "
                                 "then import")
            if name not in self.local and name not in self.created:
                exp_id = self.next_id + len(self.created)
                self.created[name] = (exp_id, str(self.artifact_root / str(exp_id)))
            exp_id, location = self.local.get(name) or self.created[name]
            folder = local_folder(location)
            if folder is None:
                raise ValueError(f"cannot import artifacts into {location!r}: the local store's artifacts must be a "
                                 "local folder")
            target = folder / run["run_uuid"]
            if not _inside(target, folder) or target.exists() or target.is_symlink():
                raise ArchiveError(f"invalid archive {str(self.archive)!r}: run {run['run_uuid']}'s artifact folder "
                                   f"{target} already exists locally or lies outside {folder}")
            found[run["run_uuid"]] = (exp_id, location, target)
        return found

    def commit(self, reports: list[tuple[Path, Path]], stage_dir: Path, made: list[Path]) -> int:
        """Stage artifacts and reports, insert the rows, move both into place, then commit; ``made``
        collects the folders created on the way (the caller removes them if anything fails)."""
        token = uuid.uuid4().hex[:8]
        staged, moved, replaced = [], [], []
        try:
            for run in self.new:
                exp_id, location, target = self.plan[run["run_uuid"]]
                stage = target.parent / f".import-{token}" / run["run_uuid"]
                _makedirs(stage, made)
                staged.append((stage, target))
                if artifacts(self.root, run).is_dir():
                    shutil.copytree(artifacts(self.root, run), stage / "artifacts")
                run["experiment_id"], run["artifact_uri"] = exp_id, f"{location}/{run['run_uuid']}/artifacts"
                run["lifecycle_stage"] = "active"
            for i, (src, _) in enumerate(reports):
                shutil.copy2(src, stage_dir / str(i))
            now = int(time.time() * 1000)
            experiments = [{"experiment_id": i, "name": n, "artifact_location": loc, "lifecycle_stage": "active",
                            "creation_time": now, "last_update_time": now} for n, (i, loc) in self.created.items()]
            rows = {table: [r for r in self.node.rows[table] if r["run_uuid"] in self.plan] for table in RUN_TABLES}
            rows["tags"] += [{"key": key, "value": value, "run_uuid": run["run_uuid"]} for run in self.new
                             for key, value in ((IMPORTED, str(now)), (f"{IMPORTED}.archive",
                                                                         printable(self.archive.name)[:250]))]
            with self.tables.insert(experiments, self.new, rows):  # rolled back on any error below
                for stage, target in staged:
                    os.replace(stage, target)
                    moved.append(target)
                for i, (_, target) in enumerate(reports):
                    _makedirs(target.parent, made)
                    if target.exists():
                        os.replace(target, stage_dir / f"{i}.old")
                        replaced.append((stage_dir / f"{i}.old", target))
                    os.replace(stage_dir / str(i), target)
                    moved.append(target)
        except BaseException as exc:
            for path in moved:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            for backup, target in replaced:
                os.replace(backup, target)
            if isinstance(exc, sa.exc.SQLAlchemyError):  # rows the checks passed but the store refuses
                raise ArchiveError(f"invalid archive {str(self.archive)!r}: its rows do not fit the local store "
                                   f"({str(exc).splitlines()[0][:200]})") from None
            raise
        finally:
            for stage, _ in staged:
                shutil.rmtree(stage.parent, ignore_errors=True)
            self.tables.dispose()
        return len(self.new)


def _makedirs(folder: Path, made: list[Path]) -> None:
    """``folder`` and its missing parents created, each one recorded in ``made`` (outermost first)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir()
        made.append(path)


def import_archive(archive: Path, uri: str | None, results_dir: Path, *, max_bytes: int = MAX_BYTES,
                   replace_results: bool = False) -> dict:
    """Merge the archive's runs into the store at ``uri`` (opened only once the archive passed its
    checks) and copy its reports into ``results_dir``; all or nothing. What was done, for the caller."""
    with tempfile.TemporaryDirectory(prefix="alexnet-import-") as tmp:  # removed on every exit, SIGTERM included
        root = unpack(archive, Path(tmp), max_bytes)
        node = read_store(root / "mlflow.db", archive)
        check_meaning(root, node, archive)
        store = created_store(uri)
        with store as tracker:  # locked: refused while a suite runs; a suite writes its reports under its lock
            reports = _report_files(root, results_dir, replace_results)  # checked under ours
            live = [r for r in tracker.find({}, statuses=("RUNNING",)) if not tracker.dead(r)]
            if live:
                raise ValueError(f"a suite is running on {tracker.shown_uri} (run {live[0].info.run_id} is "
                                 "live): import when it has finished")
            merge = Merge(root, node, tracker, archive)
            store_files = [merge.artifact_root] + ([store.db] if store.db else [])
            if any(_inside(results_dir, p) or _inside(p, results_dir) for p in store_files):
                raise ValueError(f"--results-dir {quoted(str(results_dir))} and the store ({tracker.shown_uri}, "
                                 f"artifacts in {merge.artifact_root}) lie inside one another: pass another "
                                 "--results-dir")
            made: list[Path] = []
            try:
                _makedirs(results_dir, made)
                stage = Path(tempfile.mkdtemp(prefix=".import-", dir=results_dir))
                try:
                    imported = merge.commit(reports, stage, made)
                finally:
                    shutil.rmtree(stage, ignore_errors=True)
            except BaseException:
                for path in reversed(made):
                    shutil.rmtree(path, ignore_errors=True)
                raise
    return {"imported": imported, "present": len(merge.present), "store": tracker.shown_uri,
            "reports": sorted({str(t.parent) for _, t in reports}),
            "killed": [r for r in node.killed if r not in merge.present]}
