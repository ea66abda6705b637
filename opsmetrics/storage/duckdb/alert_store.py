"""The alerting tables of the DuckDB backend: notification log, silences, acknowledgements."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import duckdb

from opsmetrics.storage.alert_records import (
    AckRow,
    NotificationFilter,
    NotificationOutcome,
    NotificationRecord,
    SilenceRow,
)

#: Migration 8 (storage/duckdb/migrations.py).
ALERT_TABLES = """
    -- One row per notification to one channel (alerting/outbox.py), written before sending;
    -- its outcome is appended after. Rows without an outcome are resent on start.
    CREATE TABLE alert_notifications (
        id VARCHAR PRIMARY KEY,
        group_key VARCHAR NOT NULL,
        group_hash VARCHAR NOT NULL,
        route VARCHAR NOT NULL,
        channel VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,             -- notify | escalation | acknowledge
        content_hash VARCHAR NOT NULL,     -- which alerts, in which state, were notified
        fingerprints VARCHAR[] NOT NULL,
        alertnames VARCHAR[] NOT NULL,
        batch JSON NOT NULL,               -- what the notifier was given
        created_ms BIGINT NOT NULL
    );
    -- Outcomes, appended (an UPDATE per delivery is slow in DuckDB); no row yet = pending.
    CREATE TABLE alert_notification_outcomes (
        id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,           -- delivered | failed
        attempts INTEGER NOT NULL,
        http_status INTEGER,
        detail VARCHAR NOT NULL,
        finished_ms BIGINT NOT NULL
    );
    CREATE TABLE alert_silences (
        id VARCHAR PRIMARY KEY,
        matchers JSON NOT NULL,            -- [{name, value, isRegex, isEqual}]
        starts_ms BIGINT NOT NULL,
        ends_ms BIGINT NOT NULL,
        created_by VARCHAR NOT NULL,
        comment VARCHAR NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE alert_acks (
        fingerprint VARCHAR PRIMARY KEY,
        acked_by VARCHAR NOT NULL,
        comment VARCHAR NOT NULL,
        at_ms BIGINT NOT NULL
    );
"""

_I_COLUMNS = (
    "id, group_key, group_hash, route, channel, kind, content_hash, fingerprints, alertnames, "
    "batch, created_ms"
)
_N_COLUMNS = (
    "n.id, group_key, group_hash, route, channel, kind, coalesce(o.status, 'pending'), "
    "content_hash, fingerprints, alertnames, batch, created_ms, coalesce(o.attempts, 0), "
    "o.http_status, coalesce(o.detail, ''), o.finished_ms"
)
#: The log with each intent's newest outcome.
_LOG = (
    "alert_notifications n LEFT JOIN (SELECT DISTINCT ON (id) * FROM "
    "alert_notification_outcomes ORDER BY id, finished_ms DESC) o ON o.id = n.id"
)
_S_COLUMNS = "id, matchers, starts_ms, ends_ms, created_by, comment, updated_ms"


class AlertTables:
    """Mixed into DuckDBStorage, whose cursor and (locked) transaction it uses."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    # --- notification log ---------------------------------------------------------------
    def record_notifications(self, recs: Sequence[NotificationRecord]) -> None:
        rows = [
            [
                r.id, r.group_key, r.group_hash, r.route, r.channel, r.kind, r.content_hash,
                list(r.fingerprints), list(r.alertnames), r.batch, r.created_ms,
            ]
            for r in recs
        ]  # fmt: skip
        self._insert_many(f"INSERT INTO alert_notifications ({_I_COLUMNS}) VALUES ", rows)

    def finish_notifications(self, outcomes: Sequence[NotificationOutcome]) -> None:
        rows = [
            [o.id, o.status, o.attempts, o.http_status, o.detail[:1000], o.finished_ms]
            for o in outcomes
        ]
        self._insert_many("INSERT INTO alert_notification_outcomes VALUES ", rows)

    def _insert_many(self, sql: str, rows: list[list[Any]]) -> None:
        """One transaction; one multi-row statement per chunk (much faster than executemany)."""
        if not rows:
            return
        one = "(" + ", ".join("?" * len(rows[0])) + ")"
        with self._transaction() as cur:
            for start in range(0, len(rows), 500):
                chunk = rows[start : start + 500]
                cur.execute(sql + ", ".join([one] * len(chunk)), [v for r in chunk for v in r])

    def notifications(self, f: NotificationFilter) -> list[NotificationRecord]:
        where, params = ["true"], []
        if f.alert:
            where.append("(list_contains(fingerprints, ?) OR list_contains(alertnames, ?))")
            params += [f.alert, f.alert]
        if f.channel:
            where.append("channel = ?")
            params.append(f.channel)
        if f.status:
            where.append("coalesce(o.status, 'pending') = ?")
            params.append(f.status)
        sql = (
            f"SELECT {_N_COLUMNS} FROM {_LOG} WHERE {' AND '.join(where)} "
            "ORDER BY created_ms DESC, n.id DESC LIMIT ?"
        )
        rows = self._cursor().execute(sql, [*params, f.limit]).fetchall()
        return [_notification(r) for r in rows]

    def pending_notifications(self) -> list[NotificationRecord]:
        sql = f"SELECT {_N_COLUMNS} FROM {_LOG} WHERE o.id IS NULL ORDER BY created_ms, n.id"
        return [_notification(r) for r in self._cursor().execute(sql).fetchall()]

    def recent_notifications(self, since_ms: int) -> list[NotificationRecord]:
        sql = (
            f"SELECT {_N_COLUMNS} FROM {_LOG} WHERE created_ms >= ? "
            "AND kind IN ('notify', 'escalation') AND coalesce(o.status, 'pending') <> 'failed' "
            "ORDER BY created_ms, n.id"
        )
        return [_notification(r) for r in self._cursor().execute(sql, [since_ms]).fetchall()]

    def prune_alert_log(self, before_ms: int) -> int:
        """Drop finished notifications created before then, and silences that ended before
        then; pending intents stay. Returns the notifications dropped."""
        finished = (
            "SELECT n.id FROM alert_notifications n JOIN alert_notification_outcomes o "
            "ON o.id = n.id WHERE n.created_ms < ?"
        )
        with self._transaction() as cur:
            ids = [r[0] for r in cur.execute(finished, [before_ms]).fetchall()]
            if ids:
                cur.execute(
                    "DELETE FROM alert_notification_outcomes WHERE id IN "
                    "(SELECT unnest(?::VARCHAR[]))",
                    [ids],
                )
                cur.execute(
                    "DELETE FROM alert_notifications WHERE id IN (SELECT unnest(?::VARCHAR[]))",
                    [ids],
                )
            cur.execute("DELETE FROM alert_silences WHERE ends_ms < ?", [before_ms])
        return len(ids)

    # --- silences -----------------------------------------------------------------------
    def save_silence(self, s: SilenceRow) -> None:
        row = [s.id, s.matchers, s.starts_ms, s.ends_ms, s.created_by, s.comment, s.updated_ms]
        with self._transaction() as cur:
            cur.execute("DELETE FROM alert_silences WHERE id = ?", [s.id])
            cur.execute(
                f"INSERT INTO alert_silences ({_S_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", row
            )

    def silences(self) -> list[SilenceRow]:
        sql = f"SELECT {_S_COLUMNS} FROM alert_silences ORDER BY starts_ms, id"
        return [_silence(r) for r in self._cursor().execute(sql).fetchall()]

    # --- acknowledgements ---------------------------------------------------------------
    def save_ack(self, ack: AckRow) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM alert_acks WHERE fingerprint = ?", [ack.fingerprint])
            cur.execute(
                "INSERT INTO alert_acks (fingerprint, acked_by, comment, at_ms) "
                "VALUES (?, ?, ?, ?)",
                [ack.fingerprint, ack.by, ack.comment, ack.at_ms],
            )

    def delete_ack(self, fingerprint: str) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM alert_acks WHERE fingerprint = ?", [fingerprint])

    def acks(self) -> list[AckRow]:
        sql = "SELECT fingerprint, acked_by, comment, at_ms FROM alert_acks ORDER BY at_ms"
        rows = self._cursor().execute(sql).fetchall()
        return [AckRow(str(f), str(b), str(c), int(t)) for f, b, c, t in rows]

    # --- leases -------------------------------------------------------------------------
    def hold_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT holder, expires_ms FROM leases WHERE name = ?", [name]
            ).fetchone()
            if row is not None and row[0] != holder and int(row[1]) > now_ms:
                return False
            cur.execute("DELETE FROM leases WHERE name = ?", [name])
            cur.execute("INSERT INTO leases VALUES (?, ?, ?)", [name, holder, now_ms + ttl_ms])
        return True

    def release_lease(self, name: str, holder: str) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM leases WHERE name = ? AND holder = ?", [name, holder])


def _notification(row: tuple[Any, ...]) -> NotificationRecord:
    (id_, gkey, ghash, route, channel, kind, status, chash, fps, names, batch, created,
     attempts, http_status, detail, finished) = row  # fmt: skip
    return NotificationRecord(
        id=id_, group_key=gkey, group_hash=ghash, route=route, channel=channel, kind=kind,
        status=status, content_hash=chash, fingerprints=tuple(fps), alertnames=tuple(names),
        batch=str(batch), created_ms=int(created), attempts=int(attempts),
        http_status=None if http_status is None else int(http_status), detail=detail,
        finished_ms=None if finished is None else int(finished),
    )  # fmt: skip


def _silence(row: tuple[Any, ...]) -> SilenceRow:
    id_, matchers, starts, ends, by, comment, updated = row
    return SilenceRow(str(id_), str(matchers), int(starts), int(ends), by, comment, int(updated))
