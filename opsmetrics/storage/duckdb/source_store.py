"""The SQL source tables of the DuckDB backend (storage/source_records.py)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import duckdb

from opsmetrics.storage.source_records import SourceCursor, SourceRun, run_from_row, run_params

#: Migration 16 (storage/duckdb/migrations.py).
SOURCE_TABLES = """
    -- Where each SQL source (config/sources/*.yaml) continues: advanced only after the rows
    -- before it are stored (ingest/sql_sources.py).
    CREATE TABLE source_cursors (
        source VARCHAR PRIMARY KEY,
        cursor_value VARCHAR NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    -- Each source's last run.
    CREATE TABLE source_runs (
        source VARCHAR PRIMARY KEY,
        started_ms BIGINT NOT NULL,
        finished_ms BIGINT NOT NULL,
        rows BIGINT NOT NULL,
        error VARCHAR NOT NULL,
        lag_ms BIGINT,
        rows_total BIGINT NOT NULL,
        last_success_ms BIGINT
    );
"""

_RUN_COLUMNS = "source, started_ms, finished_ms, rows, error, lag_ms, rows_total, last_success_ms"
UPSERT_RUN = f"""
    INSERT INTO source_runs ({_RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $4, $7)
    ON CONFLICT (source) DO UPDATE SET
        started_ms = excluded.started_ms, finished_ms = excluded.finished_ms,
        rows = excluded.rows, error = excluded.error, lag_ms = excluded.lag_ms,
        rows_total = source_runs.rows_total + excluded.rows,
        last_success_ms = coalesce(excluded.last_success_ms, source_runs.last_success_ms)
"""
SELECT_RUNS = f"SELECT {_RUN_COLUMNS} FROM source_runs ORDER BY source"


class SourceTables:
    """Mixed into DuckDBStorage, whose cursor and (locked) transaction it uses."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def source_cursor(self, source: str) -> SourceCursor | None:
        row = (
            self._cursor()
            .execute(
                "SELECT cursor_value, updated_ms FROM source_cursors WHERE source = ?", [source]
            )
            .fetchone()
        )
        return None if row is None else SourceCursor(source, str(row[0]), int(row[1]))

    def save_source_cursor(self, cursor: SourceCursor) -> None:
        with self._transaction() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO source_cursors VALUES (?, ?, ?)",
                [cursor.source, cursor.value, cursor.updated_ms],
            )

    def record_source_run(self, run: SourceRun) -> None:
        with self._transaction() as cur:
            cur.execute(UPSERT_RUN, run_params(run))

    def source_runs(self) -> list[SourceRun]:
        return [run_from_row(r) for r in self._cursor().execute(SELECT_RUNS).fetchall()]
