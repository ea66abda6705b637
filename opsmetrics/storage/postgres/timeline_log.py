"""The incident timeline tables of the PostgreSQL state store; the same semantics as
storage/duckdb/timeline_store.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opsmetrics.storage.postgres.database import Database
from opsmetrics.storage.timeline_records import ActionClaim, TimelineEntry

_COLUMNS = "id, fingerprint, started_ms, at_ms, kind, actor, detail"
_SELECT = "SELECT id, fingerprint, started_ms, at_ms, kind, actor, detail::text FROM alert_timeline"
#: Take the key if it is free or its last run failed: one statement, so two nodes claiming at
#: once serialise on the row and exactly one gets it.
_CLAIM = """
    INSERT INTO alert_actions (key, fingerprint, started_ms, action, status, claimed_ms)
    VALUES (%(key)s, %(fp)s, %(started)s, %(action)s, 'claimed', %(now)s)
    ON CONFLICT (key) DO UPDATE SET status = 'claimed', claimed_ms = excluded.claimed_ms,
        finished_ms = NULL
    WHERE alert_actions.status = 'failed'
    RETURNING key
"""


class TimelineLog:
    """Mixed into PostgresStateStore, whose Database it uses."""

    _db: Database

    def record_timeline(self, entries: Sequence[TimelineEntry]) -> int:
        unique = {e.id: e for e in entries}
        if not unique:
            return 0
        sql = (
            f"INSERT INTO alert_timeline ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING"
        )
        stored = 0
        with self._db.transaction() as conn:
            for e in unique.values():
                row = [e.id, e.fingerprint, e.started_ms, e.at_ms, e.kind, e.actor, e.detail]
                stored += conn.execute(sql, row).rowcount
        return stored

    def timeline(self, fingerprint: str) -> list[TimelineEntry]:
        return self._entries(f"{_SELECT} WHERE fingerprint = %s ORDER BY at_ms, id", [fingerprint])

    def timeline_entries(self, kinds: Sequence[str], since_ms: int) -> list[TimelineEntry]:
        sql = f"{_SELECT} WHERE kind = ANY(%s) AND at_ms >= %s ORDER BY at_ms, id"
        return self._entries(sql, [list(kinds), since_ms])

    def _entries(self, sql: str, params: list[Any]) -> list[TimelineEntry]:
        with self._db.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [TimelineEntry(i, f, int(s), int(a), k, who, d) for i, f, s, a, k, who, d in rows]

    def claim_action(self, claim: ActionClaim) -> bool:
        c = claim
        params = {"key": c.key, "fp": c.fingerprint, "started": c.started_ms,
                  "action": c.action, "now": c.claimed_ms}  # fmt: skip
        with self._db.transaction() as conn:
            return conn.execute(_CLAIM, params).fetchone() is not None

    def finish_action(self, key: str, status: str, at_ms: int) -> None:
        sql = "UPDATE alert_actions SET status = %s, finished_ms = %s WHERE key = %s"
        with self._db.transaction() as conn:
            conn.execute(sql, [status, at_ms, key])
