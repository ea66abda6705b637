"""The initiatives table of the DuckDB backend (storage/initiative_records.py)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import duckdb

from opsmetrics.storage.initiative_records import InitiativeRecord

#: Migration 13 (storage/duckdb/migrations.py).
INITIATIVE_TABLES = """
    -- Improvement initiatives created with POST /api/v1/initiatives (catalog/initiatives.py).
    CREATE TABLE initiatives (
        name VARCHAR PRIMARY KEY,
        definition JSON NOT NULL,
        created_ms BIGINT NOT NULL,
        created_by VARCHAR NOT NULL
    );
"""


class InitiativeTables:
    """Mixed into DuckDBStorage, whose cursor and (locked) transaction it uses."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def save_initiative(self, record: InitiativeRecord) -> bool:
        r = record
        with self._transaction() as cur:
            got = cur.execute(
                "INSERT INTO initiatives VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [r.name, r.definition, r.created_ms, r.created_by],
            ).fetchone()
        return bool(got and got[0])

    def initiatives(self) -> list[InitiativeRecord]:
        rows = (
            self._cursor()
            .execute(
                "SELECT name, definition, created_ms, created_by FROM initiatives ORDER BY name"
            )
            .fetchall()
        )
        return [InitiativeRecord(str(n), str(d), int(c), str(b)) for n, d, c, b in rows]
