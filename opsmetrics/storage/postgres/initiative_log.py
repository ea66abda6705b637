"""The initiatives table of the PostgreSQL state store; the same semantics as
storage/duckdb/initiative_store.py."""

from __future__ import annotations

from opsmetrics.storage.initiative_records import InitiativeRecord
from opsmetrics.storage.postgres.database import Database


class InitiativeLog:
    """Mixed into PostgresStateStore, whose Database it uses."""

    _db: Database

    def save_initiative(self, record: InitiativeRecord) -> bool:
        r = record
        with self._db.transaction() as conn:
            got = conn.execute(
                "INSERT INTO initiatives VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                [r.name, r.definition, r.created_ms, r.created_by],
            )
            return got.rowcount == 1

    def initiatives(self) -> list[InitiativeRecord]:
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT name, definition::text, created_ms, created_by FROM initiatives "
                "ORDER BY name"
            ).fetchall()
        return [InitiativeRecord(str(n), str(d), int(c), str(b)) for n, d, c, b in rows]
