"""The SQL source tables of the PostgreSQL state store; the same semantics as
storage/duckdb/source_store.py, so several nodes see one cursor per source."""

from __future__ import annotations

from opsmetrics.storage.postgres.database import Database
from opsmetrics.storage.source_records import SourceCursor, SourceRun, run_from_row, run_params

#: Migration 7 (storage/postgres/migrations.py).
SOURCE_TABLES = """
    -- Where each SQL source continues (ingest/sql_sources.py), and its last run.
    CREATE TABLE source_cursors (
        source text COLLATE "C" PRIMARY KEY,
        cursor_value text NOT NULL,
        updated_ms bigint NOT NULL
    );
    CREATE TABLE source_runs (
        source text COLLATE "C" PRIMARY KEY,
        started_ms bigint NOT NULL,
        finished_ms bigint NOT NULL,
        rows bigint NOT NULL,
        error text NOT NULL,
        lag_ms bigint,
        rows_total bigint NOT NULL,
        last_success_ms bigint
    );
"""

SELECT_RUNS = (
    "SELECT source, started_ms, finished_ms, rows, error, lag_ms, rows_total, last_success_ms "
    "FROM source_runs ORDER BY source"
)
UPSERT_RUN = """
    INSERT INTO source_runs (source, started_ms, finished_ms, rows, error, lag_ms, rows_total,
                             last_success_ms)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (source) DO UPDATE SET
        started_ms = excluded.started_ms, finished_ms = excluded.finished_ms,
        rows = excluded.rows, error = excluded.error, lag_ms = excluded.lag_ms,
        rows_total = source_runs.rows_total + excluded.rows,
        last_success_ms = coalesce(excluded.last_success_ms, source_runs.last_success_ms)
"""


class SourceLog:
    """Mixed into PostgresStateStore, whose Database it uses."""

    _db: Database

    def source_cursor(self, source: str) -> SourceCursor | None:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT cursor_value, updated_ms FROM source_cursors WHERE source = %s", [source]
            ).fetchone()
        return None if row is None else SourceCursor(source, str(row[0]), int(row[1]))

    def save_source_cursor(self, cursor: SourceCursor) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO source_cursors VALUES (%s, %s, %s) ON CONFLICT (source) DO UPDATE "
                "SET cursor_value = excluded.cursor_value, updated_ms = excluded.updated_ms",
                [cursor.source, cursor.value, cursor.updated_ms],
            )

    def record_source_run(self, run: SourceRun) -> None:
        source, started, finished, rows, error, lag, success = run_params(run)
        with self._db.transaction() as conn:
            conn.execute(UPSERT_RUN, [source, started, finished, rows, error, lag, rows, success])

    def source_runs(self) -> list[SourceRun]:
        with self._db.connection() as conn:
            rows = conn.execute(SELECT_RUNS).fetchall()
        return [run_from_row(r) for r in rows]
