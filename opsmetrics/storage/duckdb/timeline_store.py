"""The incident timeline tables of the DuckDB backend (storage/timeline_records.py)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import duckdb

from opsmetrics.storage.timeline_records import ActionClaim, TimelineEntry

#: Migration 12 (storage/duckdb/migrations.py).
TIMELINE_TABLES = """
    -- Every alert instance's history (alerting/timeline.py): fired, notified, acknowledged,
    -- escalated, protocol steps and actions, resolved. The id is derived from what happened,
    -- so an entry recorded again (after a restart) is not stored twice.
    CREATE TABLE alert_timeline (
        id VARCHAR PRIMARY KEY,
        fingerprint VARCHAR NOT NULL,
        started_ms BIGINT NOT NULL,        -- the instance: when it started firing
        at_ms BIGINT NOT NULL,
        kind VARCHAR NOT NULL,
        actor VARCHAR NOT NULL,
        detail JSON NOT NULL
    );
    -- Protocol actions (alerting/protocols.py), claimed before they are sent: a claimed or
    -- succeeded key is never sent again; a failed one may be.
    CREATE TABLE alert_actions (
        key VARCHAR PRIMARY KEY,           -- the Idempotency-Key sent with the request
        fingerprint VARCHAR NOT NULL,
        started_ms BIGINT NOT NULL,
        action VARCHAR NOT NULL,
        status VARCHAR NOT NULL,           -- claimed | succeeded | failed
        claimed_ms BIGINT NOT NULL,
        finished_ms BIGINT
    );
"""
_COLUMNS = "id, fingerprint, started_ms, at_ms, kind, actor, detail"


class TimelineTables:
    """Mixed into DuckDBStorage, whose cursor and (locked) transaction it uses."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def record_timeline(self, entries: Sequence[TimelineEntry]) -> int:
        unique = {e.id: e for e in entries}
        if not unique:
            return 0
        rows = [[e.id, e.fingerprint, e.started_ms, e.at_ms, e.kind, e.actor, e.detail]
                for e in unique.values()]  # fmt: skip
        one = "(?, ?, ?, ?, ?, ?, ?)"
        sql = (
            f"INSERT INTO alert_timeline ({_COLUMNS}) VALUES "
            f"{', '.join([one] * len(rows))} ON CONFLICT DO NOTHING"
        )
        with self._transaction() as cur:
            got = cur.execute(sql, [v for r in rows for v in r]).fetchone()
        return int(got[0]) if got else 0

    def timeline(self, fingerprint: str) -> list[TimelineEntry]:
        sql = f"SELECT {_COLUMNS} FROM alert_timeline WHERE fingerprint = ? ORDER BY at_ms, id"
        return [_entry(r) for r in self._cursor().execute(sql, [fingerprint]).fetchall()]

    def timeline_entries(self, kinds: Sequence[str], since_ms: int) -> list[TimelineEntry]:
        sql = (
            f"SELECT {_COLUMNS} FROM alert_timeline WHERE list_contains(?::VARCHAR[], kind) "
            "AND at_ms >= ? ORDER BY at_ms, id"
        )
        rows = self._cursor().execute(sql, [list(kinds), since_ms]).fetchall()
        return [_entry(r) for r in rows]

    def claim_action(self, claim: ActionClaim) -> bool:
        c = claim
        with self._transaction() as cur:
            row = cur.execute("SELECT status FROM alert_actions WHERE key = ?", [c.key]).fetchone()
            if row is not None and row[0] != "failed":
                return False
            cur.execute("DELETE FROM alert_actions WHERE key = ?", [c.key])
            cur.execute(
                "INSERT INTO alert_actions VALUES (?, ?, ?, ?, 'claimed', ?, NULL)",
                [c.key, c.fingerprint, c.started_ms, c.action, c.claimed_ms],
            )
        return True

    def finish_action(self, key: str, status: str, at_ms: int) -> None:
        with self._transaction() as cur:
            row = cur.execute("SELECT * FROM alert_actions WHERE key = ?", [key]).fetchone()
            if row is None:
                return
            cur.execute("DELETE FROM alert_actions WHERE key = ?", [key])
            cur.execute(
                "INSERT INTO alert_actions VALUES (?, ?, ?, ?, ?, ?, ?)",
                [*row[:4], status, row[5], at_ms],
            )


def _entry(row: tuple[Any, ...]) -> TimelineEntry:
    id_, fp, started, at, kind, actor, detail = row
    return TimelineEntry(str(id_), str(fp), int(started), int(at), kind, actor, str(detail))
