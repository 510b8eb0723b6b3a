"""``python -m ablations import ARCHIVE``: bring a GPU node's results home.

The archive (``scripts/gpu-run`` writes it) holds the node's MLflow store (``mlflow.db`` and its
artifacts under ``mlruns/``), its reports (``results/``), a log and a manifest. Its runs are
merged into the local store with their run ids, params, metrics, tags (parent links included)
and artifacts, so the MLflow UI shows them beside local runs and the suite reuses them; runs
already present are left alone, so importing twice duplicates nothing. The reports are copied
into the local results folder (``results/<scale>/<gpu>/``, ``results/bench/<gpu>/``).

An archive is untrusted: it is extracted with tarfile's ``data`` filter (no absolute paths, no
``..``, no links leading out, no device files) into a fresh temporary folder, and only the
expected top-level entries are read. The merge copies rows between two MLflow databases of the
same schema version, so the local store must be a database URI (SQLite or PostgreSQL)."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

import sqlalchemy as sa

from alexnet.tracking import Tracker, local_folder

TOP_LEVEL = {"mlflow.db", "mlruns", "results", "log.txt", "manifest.json"}
RUN_TABLES = ("tags", "params", "metrics", "latest_metrics")  # rows keyed by run_uuid, besides ``runs``


def unpack(archive: Path, into: Path) -> Path:
    """The archive extracted under ``into``; ValueError naming the archive and what is wrong."""
    if not archive.is_file() or not tarfile.is_tarfile(archive):
        raise ValueError(f"invalid archive {str(archive)!r}: not a tar archive (expected the .tar.gz that "
                         "scripts/gpu-run writes)")
    with tarfile.open(archive) as tar:
        names = [m.name.removeprefix("./") for m in tar.getmembers()]
        for name in names:
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"invalid archive {str(archive)!r}: member {name!r} leads outside it")
        unexpected = sorted({n.split("/")[0] for n in names if n and n != "."} - TOP_LEVEL)
        if unexpected:
            raise ValueError(f"invalid archive {str(archive)!r}: unexpected entries {', '.join(map(repr, unexpected))}"
                             f" (a node archive holds only {', '.join(sorted(TOP_LEVEL))})")
        try:
            tar.extractall(into, filter="data")
        except tarfile.FilterError as exc:
            raise ValueError(f"invalid archive {str(archive)!r}: refused member ({exc})") from None
    if not (into / "mlflow.db").is_file():
        raise ValueError(f"invalid archive {str(archive)!r}: no mlflow.db in it")
    return into


def _schema(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()


def merge_runs(source_db: Path, tracker: Tracker) -> tuple[int, int]:
    """Copy every live run of the source store that the local store lacks; (imported, present)."""
    if tracker.uri.startswith(("http://", "https://")):
        raise ValueError(f"cannot import into {tracker.shown_uri}: importing keeps run ids, which needs the "
                         "store's database URI (sqlite:///... or postgresql+psycopg://...), not a server URL")
    src, dst = sa.create_engine(f"sqlite:///{source_db}"), sa.create_engine(tracker.uri)
    if _schema(src) != _schema(dst):
        raise ValueError(f"the archive's MLflow schema ({_schema(src)}) differs from the local store's "
                         f"({_schema(dst)}): use the same MLflow version on the node and here (constraints.txt)")
    meta = sa.MetaData()
    meta.reflect(src, only=("experiments", "runs", *RUN_TABLES))
    with src.connect() as s:
        experiments = {row.experiment_id: row.name for row in s.execute(sa.select(meta.tables["experiments"]))}
        runs = [dict(row._mapping) for row in s.execute(
            sa.select(meta.tables["runs"]).where(meta.tables["runs"].c.lifecycle_stage == "active"))]
        ids = [r["run_uuid"] for r in runs]
        rows = {t: [dict(row._mapping) for row in s.execute(
            sa.select(meta.tables[t]).where(meta.tables[t].c.run_uuid.in_(ids)))] for t in RUN_TABLES}
    dest_meta = sa.MetaData()
    dest_meta.reflect(dst, only=("runs", *RUN_TABLES))
    with dst.connect() as d:
        present = {row[0] for row in d.execute(sa.select(dest_meta.tables["runs"].c.run_uuid).where(
            dest_meta.tables["runs"].c.run_uuid.in_(ids)))}
    new = [r for r in runs if r["run_uuid"] not in present]
    if not new:
        return 0, len(present)
    locations = {}
    for exp_id in {r["experiment_id"] for r in new}:
        local = tracker.client.get_experiment_by_name(experiments[exp_id])
        local_id = local.experiment_id if local else tracker.client.create_experiment(experiments[exp_id])
        location = tracker.client.get_experiment(local_id).artifact_location
        if local_folder(location) is None:
            raise ValueError(f"cannot import artifacts into {location!r}: the local store's artifacts must be a "
                             "local folder")
        locations[exp_id] = (local_id, location)
    for r in new:  # artifacts first: a run row without its artifacts would be reused by the suite and fail
        local_id, location = locations[r["experiment_id"]]
        folder = source_db.parent / "mlruns" / str(r["experiment_id"]) / r["run_uuid"] / "artifacts"
        target = local_folder(f"{location}/{r['run_uuid']}/artifacts")
        if folder.is_dir():
            shutil.copytree(folder, target, dirs_exist_ok=True)
        r["experiment_id"], r["artifact_uri"] = int(local_id), f"{location}/{r['run_uuid']}/artifacts"
    keep = {r["run_uuid"] for r in new}
    with dst.begin() as d:  # one transaction: all of the node's runs or none
        d.execute(sa.insert(dest_meta.tables["runs"]), new)
        for t in RUN_TABLES:
            batch = [row for row in rows[t] if row["run_uuid"] in keep]
            if batch:
                d.execute(sa.insert(dest_meta.tables[t]), batch)
    return len(new), len(present)


def import_archive(archive: Path, uri: str | None, results_dir: Path) -> dict:
    """Merge the archive's runs into the store at ``uri`` (opened only once the archive passed its
    checks) and copy its reports; what was done, for the caller to print."""
    with tempfile.TemporaryDirectory(prefix="alexnet-import-") as tmp:
        root = unpack(archive, Path(tmp))
        tracker = Tracker(uri)
        imported, present = merge_runs(root / "mlflow.db", tracker)
        reports = []
        if (root / "results").is_dir():
            for folder in sorted(p.parent for p in (root / "results").rglob("*") if p.is_file()):
                rel = folder.relative_to(root / "results")
                if rel not in reports:
                    reports.append(rel)
            shutil.copytree(root / "results", results_dir, dirs_exist_ok=True)
    return {"imported": imported, "present": present, "reports": [str(results_dir / r) for r in reports],
            "store": tracker.shown_uri}
