"""The tracking layer's SQL side: an MLflow store's own tables, read and written where MLflow's
API cannot (the archive import keeps run ids, parent links and timestamps), and only after the
other store's schema revision (the alembic version in its database) proved equal to this one's."""

from __future__ import annotations

from contextlib import contextmanager

import sqlalchemy as sa

RUN_TABLES = ("tags", "params", "metrics", "latest_metrics")  # rows keyed by run_uuid, besides ``runs``


class SchemaMismatch(ValueError):
    """The two stores' MLflow schema revisions differ: their tables cannot be copied row for row."""


class RunTables:
    """One store's ``experiments``, ``runs`` and run tables, checked against ``schema`` (the other
    store's alembic revision); ``dispose`` when done."""

    def __init__(self, uri: str, schema: str, shown_uri: str):
        if uri.startswith(("http://", "https://")):
            raise ValueError(f"cannot import into {shown_uri}: importing keeps run ids, which needs the store's "
                             "database URI (sqlite:///... or postgresql+psycopg://...), not a server URL")
        self.engine = sa.create_engine(uri)
        self.meta = sa.MetaData()
        self.meta.reflect(self.engine, only=("experiments", "runs", *RUN_TABLES))
        with self.engine.connect() as conn:
            local = str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())
        if local != schema:
            self.dispose()
            raise SchemaMismatch(f"the archive's MLflow schema revision {schema!r} differs from the local store's "
                                 f"{local!r}: use the same MLflow version on the node and here (constraints.txt)")

    def present(self, run_ids: list[str]) -> set[str]:
        """The run ids this store already holds."""
        runs = self.meta.tables["runs"]
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(sa.select(runs.c.run_uuid).where(runs.c.run_uuid.in_(run_ids)))}

    def experiments(self) -> tuple[list, int]:
        """(every experiment row, the next free experiment id)."""
        experiments = self.meta.tables["experiments"]
        with self.engine.connect() as conn:
            found = list(conn.execute(sa.select(experiments)))
            top = conn.execute(sa.select(sa.func.max(experiments.c.experiment_id))).scalar()
        return found, (top or 0) + 1

    @contextmanager
    def insert(self, experiments: list[dict], runs: list[dict], rows: dict[str, list[dict]]):
        """Insert the rows in one transaction, which commits when the block ends (the caller moves
        files into place inside it) and rolls back if it raises."""
        with self.engine.begin() as conn:
            if experiments:
                conn.execute(sa.insert(self.meta.tables["experiments"]), experiments)
            if runs:
                conn.execute(sa.insert(self.meta.tables["runs"]), runs)
            for table, found in rows.items():
                if found:
                    conn.execute(sa.insert(self.meta.tables[table]), found)
            yield

    def dispose(self) -> None:
        self.engine.dispose()
