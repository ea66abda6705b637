"""The report delivery log of the PostgreSQL state store; the same semantics as
storage/duckdb/report_store.py."""

from __future__ import annotations

from collections.abc import Sequence

from opsmetrics.storage.postgres.database import Database
from opsmetrics.storage.report_records import (
    DELIVERY_COLUMNS,
    RUN_COLUMNS,
    ReportDelivery,
    ReportRun,
    Trigger,
    delivery_from_row,
    delivery_row,
    run_from_row,
    run_row,
)

#: Migration 5 (storage/postgres/migrations.py).
REPORT_TABLES = """
    -- One row per report and slot (reports/runs.py), inserted before rendering: the insert
    -- is the claim, so a slot runs once whichever node or restarted process tries it.
    CREATE TABLE report_runs (
        run_id text COLLATE "C" PRIMARY KEY,   -- <report>.<slot_ms>, .manual for a manual send
        report text COLLATE "C" NOT NULL,
        slot_ms bigint NOT NULL,               -- the cron slot, UTC
        trigger text NOT NULL,                 -- schedule | manual
        claimed_ms bigint NOT NULL,
        claimed_by text NOT NULL,
        delayed boolean NOT NULL,              -- run after its slot (catch-up)
        status text NOT NULL,                  -- running | sent | failed
        finished_ms bigint,
        sha256 text NOT NULL,                  -- of the artefact sent
        error text NOT NULL,
        render_attempts integer NOT NULL,
        next_attempt_ms bigint                 -- render retry
    );
    CREATE INDEX report_runs_report ON report_runs (report, slot_ms);
    -- Per run and channel: a `sent` channel is never sent again.
    CREATE TABLE report_deliveries (
        run_id text COLLATE "C" NOT NULL,
        channel text COLLATE "C" NOT NULL,
        recipients text NOT NULL,              -- email addresses, one per line
        status text NOT NULL,                  -- pending | sent | failed
        attempts integer NOT NULL,
        error text NOT NULL,
        message_id text NOT NULL,              -- Message-ID or Idempotency-Key
        next_attempt_ms bigint,
        sent_ms bigint,
        PRIMARY KEY (run_id, channel)
    );
    -- When each report was first scheduled: catch-up never reaches back before it.
    CREATE TABLE report_schedules (
        report text COLLATE "C" PRIMARY KEY,
        since_ms bigint NOT NULL
    );
"""
_UPDATE_RUN = """
    UPDATE report_runs SET status = %s, finished_ms = %s, sha256 = %s, error = %s,
        render_attempts = %s, next_attempt_ms = %s, delayed = %s
    WHERE run_id = %s
"""
_UPDATE_DELIVERY = """
    UPDATE report_deliveries SET status = %s, attempts = %s, error = %s, message_id = %s,
        next_attempt_ms = %s, sent_ms = %s
    WHERE run_id = %s AND channel = %s
"""
_UNFINISHED = f"""
    SELECT {RUN_COLUMNS} FROM report_runs r WHERE status = 'running' AND (
        next_attempt_ms <= %(now)s OR EXISTS (
            SELECT 1 FROM report_deliveries d WHERE d.run_id = r.run_id
            AND d.status <> 'sent' AND d.next_attempt_ms <= %(now)s))
    ORDER BY slot_ms, run_id
"""
_LATEST = f"""
    SELECT DISTINCT ON (report) {RUN_COLUMNS} FROM report_runs
    WHERE report = ANY(%s) AND (%s::text IS NULL OR trigger = %s)
    ORDER BY report, slot_ms DESC, claimed_ms DESC
"""
_SINCE = """
    WITH ins AS (
        INSERT INTO report_schedules VALUES (%(report)s, %(now)s)
        ON CONFLICT (report) DO NOTHING RETURNING since_ms
    )
    SELECT since_ms FROM ins UNION ALL
    SELECT since_ms FROM report_schedules WHERE report = %(report)s
"""


class ReportLog:
    """Mixed into PostgresStateStore, whose Database it uses."""

    _db: Database

    def claim_report_run(self, run: ReportRun, deliveries: Sequence[ReportDelivery]) -> bool:
        with self._db.transaction() as conn:
            got = conn.execute(
                f"INSERT INTO report_runs ({RUN_COLUMNS}) VALUES ({_marks(13)}) "
                "ON CONFLICT DO NOTHING",
                run_row(run),
            )
            if got.rowcount != 1:
                return False
            sql = f"INSERT INTO report_deliveries ({DELIVERY_COLUMNS}) VALUES ({_marks(9)})"
            for d in deliveries:
                conn.execute(sql, delivery_row(d))
        return True

    def update_report_run(self, run: ReportRun) -> None:
        r = run
        with self._db.transaction() as conn:
            conn.execute(
                _UPDATE_RUN,
                [r.status.value, r.finished_ms, r.sha256, r.error, r.render_attempts,
                 r.next_attempt_ms, r.delayed, r.run_id],
            )  # fmt: skip

    def update_report_delivery(self, delivery: ReportDelivery) -> None:
        d = delivery
        with self._db.transaction() as conn:
            conn.execute(
                _UPDATE_DELIVERY,
                [d.status.value, d.attempts, d.error, d.message_id, d.next_attempt_ms,
                 d.sent_ms, d.run_id, d.channel],
            )  # fmt: skip

    def report_run(self, run_id: str) -> ReportRun | None:
        with self._db.connection() as conn:
            sql = f"SELECT {RUN_COLUMNS} FROM report_runs WHERE run_id = %s"
            row = conn.execute(sql, [run_id]).fetchone()
        return None if row is None else run_from_row(row)

    def report_deliveries(self, run_ids: Sequence[str]) -> list[ReportDelivery]:
        if not run_ids:
            return []
        sql = (
            f"SELECT {DELIVERY_COLUMNS} FROM report_deliveries WHERE run_id = ANY(%s) "
            "ORDER BY run_id, channel"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql, [list(run_ids)]).fetchall()
        return [delivery_from_row(row) for row in rows]

    def report_runs(self, report: str, limit: int) -> list[ReportRun]:
        sql = (
            f"SELECT {RUN_COLUMNS} FROM report_runs WHERE report = %s "
            "ORDER BY slot_ms DESC, claimed_ms DESC, run_id LIMIT %s"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql, [report, limit]).fetchall()
        return [run_from_row(row) for row in rows]

    def latest_report_runs(
        self, reports: Sequence[str], trigger: Trigger | None = None
    ) -> dict[str, ReportRun]:
        if not reports:
            return {}
        with self._db.connection() as conn:
            rows = conn.execute(_LATEST, [list(reports), *_trigger(trigger)]).fetchall()
        runs = [run_from_row(row) for row in rows]
        return {r.report: r for r in runs}

    def unfinished_report_runs(self, now_ms: int) -> list[ReportRun]:
        with self._db.connection() as conn:
            rows = conn.execute(_UNFINISHED, {"now": now_ms}).fetchall()
        return [run_from_row(row) for row in rows]

    def report_schedule_since(self, report: str, now_ms: int) -> int:
        with self._db.transaction() as conn:
            row = conn.execute(_SINCE, {"report": report, "now": now_ms}).fetchone()
        assert row is not None
        return int(row[0])


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


def _trigger(trigger: Trigger | None) -> list[str | None]:
    value = None if trigger is None else trigger.value
    return [value, value]
