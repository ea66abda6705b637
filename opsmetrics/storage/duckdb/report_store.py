"""The report delivery log of the DuckDB backend (storage/report_records.py)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import duckdb

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

#: Migration 14 (storage/duckdb/migrations.py).
REPORT_TABLES = """
    -- One row per report and slot (reports/runs.py), inserted before rendering: the insert
    -- is the claim, so a slot runs once whichever node or restarted process tries it.
    CREATE TABLE report_runs (
        run_id VARCHAR PRIMARY KEY,        -- <report>.<slot_ms>, .manual for a manual send
        report VARCHAR NOT NULL,
        slot_ms BIGINT NOT NULL,           -- the cron slot, UTC
        trigger VARCHAR NOT NULL,          -- schedule | manual
        claimed_ms BIGINT NOT NULL,
        claimed_by VARCHAR NOT NULL,
        delayed BOOLEAN NOT NULL,          -- run after its slot (catch-up)
        status VARCHAR NOT NULL,           -- running | sent | failed
        finished_ms BIGINT,
        sha256 VARCHAR NOT NULL,           -- of the artefact sent
        error VARCHAR NOT NULL,
        render_attempts INTEGER NOT NULL,
        next_attempt_ms BIGINT             -- render retry
    );
    CREATE INDEX report_runs_report ON report_runs (report, slot_ms);
    -- Per run and channel: a `sent` channel is never sent again.
    CREATE TABLE report_deliveries (
        run_id VARCHAR NOT NULL,
        channel VARCHAR NOT NULL,
        recipients VARCHAR NOT NULL,       -- email addresses, one per line
        status VARCHAR NOT NULL,           -- pending | sent | failed
        attempts INTEGER NOT NULL,
        error VARCHAR NOT NULL,
        message_id VARCHAR NOT NULL,       -- Message-ID or Idempotency-Key
        next_attempt_ms BIGINT,
        sent_ms BIGINT,
        PRIMARY KEY (run_id, channel)
    );
    -- When each report was first scheduled: catch-up never reaches back before it.
    CREATE TABLE report_schedules (
        report VARCHAR PRIMARY KEY,
        since_ms BIGINT NOT NULL
    );
"""
_UPDATE_RUN = """
    UPDATE report_runs SET status = ?, finished_ms = ?, sha256 = ?, error = ?,
        render_attempts = ?, next_attempt_ms = ?, delayed = ?
    WHERE run_id = ?
"""
_UPDATE_DELIVERY = """
    UPDATE report_deliveries SET status = ?, attempts = ?, error = ?, message_id = ?,
        next_attempt_ms = ?, sent_ms = ?
    WHERE run_id = ? AND channel = ?
"""
_UNFINISHED = f"""
    SELECT {RUN_COLUMNS} FROM report_runs r WHERE status = 'running' AND (
        next_attempt_ms <= ? OR EXISTS (
            SELECT 1 FROM report_deliveries d WHERE d.run_id = r.run_id
            AND d.status <> 'sent' AND d.next_attempt_ms <= ?))
    ORDER BY slot_ms, run_id
"""
_LATEST = f"""
    SELECT {RUN_COLUMNS} FROM report_runs
    WHERE list_contains(?, report) AND (?::VARCHAR IS NULL OR trigger = ?)
    QUALIFY row_number() OVER (PARTITION BY report ORDER BY slot_ms DESC, claimed_ms DESC) = 1
"""


class ReportTables:
    """Mixed into DuckDBStorage, whose cursor and (locked) transaction it uses."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def claim_report_run(self, run: ReportRun, deliveries: Sequence[ReportDelivery]) -> bool:
        with self._transaction() as cur:
            got = cur.execute(
                f"INSERT INTO report_runs ({RUN_COLUMNS}) VALUES ({_marks(13)}) "
                "ON CONFLICT DO NOTHING",
                run_row(run),
            ).fetchone()
            if not (got and got[0]):
                return False
            if deliveries:
                cur.executemany(
                    f"INSERT INTO report_deliveries ({DELIVERY_COLUMNS}) VALUES ({_marks(9)})",
                    [delivery_row(d) for d in deliveries],
                )
        return True

    def update_report_run(self, run: ReportRun) -> None:
        r = run
        with self._transaction() as cur:
            cur.execute(
                _UPDATE_RUN,
                [r.status.value, r.finished_ms, r.sha256, r.error, r.render_attempts,
                 r.next_attempt_ms, r.delayed, r.run_id],
            )  # fmt: skip

    def update_report_delivery(self, delivery: ReportDelivery) -> None:
        d = delivery
        with self._transaction() as cur:
            cur.execute(
                _UPDATE_DELIVERY,
                [d.status.value, d.attempts, d.error, d.message_id, d.next_attempt_ms,
                 d.sent_ms, d.run_id, d.channel],
            )  # fmt: skip

    def report_run(self, run_id: str) -> ReportRun | None:
        sql = f"SELECT {RUN_COLUMNS} FROM report_runs WHERE run_id = ?"
        row = self._cursor().execute(sql, [run_id]).fetchone()
        return None if row is None else run_from_row(row)

    def report_deliveries(self, run_ids: Sequence[str]) -> list[ReportDelivery]:
        if not run_ids:
            return []
        sql = (
            f"SELECT {DELIVERY_COLUMNS} FROM report_deliveries WHERE list_contains(?, run_id) "
            "ORDER BY run_id, channel"
        )
        rows = self._cursor().execute(sql, [list(run_ids)]).fetchall()
        return [delivery_from_row(row) for row in rows]

    def report_runs(self, report: str, limit: int) -> list[ReportRun]:
        sql = (
            f"SELECT {RUN_COLUMNS} FROM report_runs WHERE report = ? "
            "ORDER BY slot_ms DESC, claimed_ms DESC, run_id LIMIT ?"
        )
        rows = self._cursor().execute(sql, [report, limit]).fetchall()
        return [run_from_row(row) for row in rows]

    def latest_report_runs(
        self, reports: Sequence[str], trigger: Trigger | None = None
    ) -> dict[str, ReportRun]:
        if not reports:
            return {}
        rows = self._cursor().execute(_LATEST, [list(reports), *_trigger(trigger)]).fetchall()
        runs = [run_from_row(row) for row in rows]
        return {r.report: r for r in runs}

    def unfinished_report_runs(self, now_ms: int) -> list[ReportRun]:
        rows = self._cursor().execute(_UNFINISHED, [now_ms, now_ms]).fetchall()
        return [run_from_row(row) for row in rows]

    def report_schedule_since(self, report: str, now_ms: int) -> int:
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO report_schedules VALUES (?, ?) ON CONFLICT DO NOTHING",
                [report, now_ms],
            )
            row = cur.execute(
                "SELECT since_ms FROM report_schedules WHERE report = ?", [report]
            ).fetchone()
        assert row is not None
        return int(row[0])


def _marks(n: int) -> str:
    return ", ".join(["?"] * n)


def _trigger(trigger: Trigger | None) -> list[str | None]:
    value = None if trigger is None else trigger.value
    return [value, value]
