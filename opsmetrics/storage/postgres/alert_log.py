"""The alerting tables of the PostgreSQL state store: notification log, silences, acks.

The same semantics as storage/duckdb/alert_store.py: intents are inserted, outcomes appended
(the newest by finished_ms wins; at equal times the one appended last), a row without an
outcome is pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from opsmetrics.storage.alert_records import (
    AckRow,
    NotificationFilter,
    NotificationOutcome,
    NotificationRecord,
    SilenceRow,
)
from opsmetrics.storage.postgres.database import Database

_I_COLUMNS = (
    "id, group_key, group_hash, route, channel, kind, content_hash, fingerprints, alertnames, "
    "batch, created_ms"
)
_N_COLUMNS = (
    "n.id, group_key, group_hash, route, channel, kind, coalesce(o.status, 'pending'), "
    "content_hash, fingerprints, alertnames, batch::text, created_ms, coalesce(o.attempts, 0), "
    "o.http_status, coalesce(o.detail, ''), o.finished_ms"
)
#: The log with each intent's newest outcome.
_LOG = (
    "alert_notifications n LEFT JOIN LATERAL (SELECT * FROM alert_notification_outcomes x "
    "WHERE x.id = n.id ORDER BY x.finished_ms DESC, x.seq DESC LIMIT 1) o ON true"
)
_S_COLUMNS = "id, matchers, starts_ms, ends_ms, created_by, comment, updated_ms"


class AlertLog:
    """Mixed into PostgresStateStore, whose Database it uses."""

    _db: Database

    # --- notification log ---------------------------------------------------------------
    def record_notifications(self, recs: Sequence[NotificationRecord]) -> None:
        """ValueError, storing none of them, if an id is recorded already (as DuckDB refuses
        a duplicate primary key)."""
        if not recs:
            return
        rows = [
            (
                r.id, r.group_key, r.group_hash, r.route, r.channel, r.kind, r.content_hash,
                list(r.fingerprints), list(r.alertnames), r.batch, r.created_ms,
            )
            for r in recs
        ]  # fmt: skip
        sql = f"INSERT INTO alert_notifications ({_I_COLUMNS}) VALUES ({', '.join(['%s'] * 11)})"
        try:
            with self._db.transaction() as conn:
                conn.cursor().executemany(sql, rows)
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or str(exc)
            raise ValueError(f"a notification id is recorded already: {detail}") from exc

    def finish_notifications(self, outcomes: Sequence[NotificationOutcome]) -> None:
        if not outcomes:
            return
        rows = [
            (o.id, o.status, o.attempts, o.http_status, o.detail[:1000], o.finished_ms)
            for o in outcomes
        ]
        sql = (
            "INSERT INTO alert_notification_outcomes "
            "(id, status, attempts, http_status, detail, finished_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s)"
        )
        with self._db.transaction() as conn:
            conn.cursor().executemany(sql, rows)

    def notifications(self, f: NotificationFilter) -> list[NotificationRecord]:
        where, params = ["true"], list[Any]()
        if f.alert:
            where.append("(%s = ANY(fingerprints) OR %s = ANY(alertnames))")
            params += [f.alert, f.alert]
        if f.channel:
            where.append("channel = %s")
            params.append(f.channel)
        if f.status:
            where.append("coalesce(o.status, 'pending') = %s")
            params.append(f.status)
        sql = (
            f"SELECT {_N_COLUMNS} FROM {_LOG} WHERE {' AND '.join(where)} "
            "ORDER BY created_ms DESC, n.id DESC LIMIT %s"
        )
        return self._log(sql, [*params, f.limit])

    def pending_notifications(self) -> list[NotificationRecord]:
        sql = f"SELECT {_N_COLUMNS} FROM {_LOG} WHERE o.id IS NULL ORDER BY created_ms, n.id"
        return self._log(sql, [])

    def recent_notifications(self, since_ms: int) -> list[NotificationRecord]:
        sql = (
            f"SELECT {_N_COLUMNS} FROM {_LOG} WHERE created_ms >= %s "
            "AND kind IN ('notify', 'escalation') AND coalesce(o.status, 'pending') <> 'failed' "
            "ORDER BY created_ms, n.id"
        )
        return self._log(sql, [since_ms])

    def _log(self, sql: str, params: list[Any]) -> list[NotificationRecord]:
        with self._db.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_notification(r) for r in rows]

    def prune_alert_log(self, before_ms: int) -> int:
        """Drop finished notifications created before then, and silences that ended before
        then; pending intents stay. Returns the notifications dropped."""
        sql = """
            WITH gone AS (
                DELETE FROM alert_notifications n WHERE n.created_ms < %(before)s
                AND EXISTS (SELECT 1 FROM alert_notification_outcomes o WHERE o.id = n.id)
                RETURNING n.id
            ), outcomes AS (
                DELETE FROM alert_notification_outcomes WHERE id IN (SELECT id FROM gone)
            )
            SELECT count(*) FROM gone
        """
        with self._db.transaction() as conn:
            row = conn.execute(sql, {"before": before_ms}).fetchone()
            conn.execute("DELETE FROM alert_silences WHERE ends_ms < %s", [before_ms])
        return int(row[0]) if row else 0

    # --- silences -----------------------------------------------------------------------
    def save_silence(self, s: SilenceRow) -> None:
        sql = f"""
            INSERT INTO alert_silences ({_S_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers,
                starts_ms = excluded.starts_ms, ends_ms = excluded.ends_ms,
                created_by = excluded.created_by, comment = excluded.comment,
                updated_ms = excluded.updated_ms
        """
        row = [s.id, s.matchers, s.starts_ms, s.ends_ms, s.created_by, s.comment, s.updated_ms]
        with self._db.transaction() as conn:
            conn.execute(sql, row)

    def silences(self) -> list[SilenceRow]:
        sql = (
            "SELECT id, matchers::text, starts_ms, ends_ms, created_by, comment, updated_ms "
            "FROM alert_silences ORDER BY starts_ms, id"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql).fetchall()
        return [SilenceRow(*r) for r in rows]

    # --- acknowledgements ---------------------------------------------------------------
    def save_ack(self, ack: AckRow) -> None:
        sql = """
            INSERT INTO alert_acks (fingerprint, acked_by, comment, at_ms) VALUES (%s, %s, %s, %s)
            ON CONFLICT (fingerprint) DO UPDATE SET acked_by = excluded.acked_by,
                comment = excluded.comment, at_ms = excluded.at_ms
        """
        with self._db.transaction() as conn:
            conn.execute(sql, [ack.fingerprint, ack.by, ack.comment, ack.at_ms])

    def delete_ack(self, fingerprint: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM alert_acks WHERE fingerprint = %s", [fingerprint])

    def acks(self) -> list[AckRow]:
        sql = (
            "SELECT fingerprint, acked_by, comment, at_ms FROM alert_acks "
            "ORDER BY at_ms, fingerprint"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql).fetchall()
        return [AckRow(str(f), str(b), str(c), int(t)) for f, b, c, t in rows]


def _notification(row: tuple[Any, ...]) -> NotificationRecord:
    (id_, gkey, ghash, route, channel, kind, status, chash, fps, names, batch, created,
     attempts, http_status, detail, finished) = row  # fmt: skip
    return NotificationRecord(
        id=id_, group_key=gkey, group_hash=ghash, route=route, channel=channel, kind=kind,
        status=status, content_hash=chash, fingerprints=tuple(fps), alertnames=tuple(names),
        batch=batch, created_ms=int(created), attempts=int(attempts),
        http_status=None if http_status is None else int(http_status), detail=detail,
        finished_ms=None if finished is None else int(finished),
    )  # fmt: skip
