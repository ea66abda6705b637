"""The report delivery log (storage/report_records.py) on DuckDB and PostgreSQL: a slot is
claimed once, runs and channels keep what happened across a reopen, and the queries the
scheduler relies on (latest run, unfinished runs, the schedule's first sight) agree."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from opsmetrics.storage.report_records import (
    DeliveryStatus,
    ReportDelivery,
    ReportRun,
    RunStatus,
    Trigger,
)
from tests.postgres_server import pg_state_url, postgres_url  # noqa: F401 - fixtures
from tests.state_contract import T0, StateOpener, open_state  # noqa: F401 - a fixture

HOUR = 3_600_000


def run(report: str, slot: int, trigger: Trigger = Trigger.SCHEDULE) -> ReportRun:
    suffix = ".manual" if trigger is Trigger.MANUAL else ""
    return ReportRun(f"{report}.{slot}{suffix}", report, slot, trigger, slot + 5, "node-a")


def deliveries(r: ReportRun) -> list[ReportDelivery]:
    return [
        ReportDelivery(r.run_id, "email", ("a@x.example", "b@x.example"), message_id="<m@x>",
                       next_attempt_ms=r.claimed_ms),
        ReportDelivery(r.run_id, "hook", (), message_id=f"{r.run_id}:hook",
                       next_attempt_ms=r.claimed_ms),
    ]  # fmt: skip


def test_a_slot_is_claimed_once_and_what_happened_survives_a_reopen(
    open_state: StateOpener,  # noqa: F811
) -> None:
    store = open_state()
    first = run("daily", T0)
    assert store.claim_report_run(first, deliveries(first))
    assert not store.claim_report_run(dataclasses.replace(first, claimed_by="node-b"), [])
    manual = run("daily", T0, Trigger.MANUAL)
    assert store.claim_report_run(manual, [])  # a manual send is a slot of its own
    email, hook = deliveries(first)
    store.update_report_delivery(
        dataclasses.replace(email, status=DeliveryStatus.SENT, attempts=1, sent_ms=T0 + 9,
                            next_attempt_ms=None)
    )  # fmt: skip
    store.update_report_delivery(
        dataclasses.replace(hook, status=DeliveryStatus.FAILED, attempts=2, error="HTTP 500",
                            next_attempt_ms=T0 + HOUR)
    )  # fmt: skip
    store.update_report_run(dataclasses.replace(first, sha256="ab" * 32, delayed=True))
    store.close()
    again = open_state()
    try:
        got = again.report_run(first.run_id)
        assert got is not None and got.claimed_by == "node-a" and got.delayed
        assert got.sha256 == "ab" * 32 and got.status is RunStatus.RUNNING
        sent, failed = again.report_deliveries([first.run_id])
        assert (sent.channel, sent.status, sent.recipients) == (
            "email", DeliveryStatus.SENT, ("a@x.example", "b@x.example"))  # fmt: skip
        assert sent.sent_ms == T0 + 9 and sent.next_attempt_ms is None
        assert (failed.status, failed.attempts, failed.error) == (
            DeliveryStatus.FAILED, 2, "HTTP 500")  # fmt: skip
        assert failed.message_id == f"{first.run_id}:hook"
        assert again.report_run("daily.1") is None
    finally:
        again.close()


def test_the_scheduler_queries_latest_unfinished_and_first_sight(
    open_state: StateOpener,  # noqa: F811
) -> None:
    store = open_state()
    try:
        old, new, other = run("daily", T0), run("daily", T0 + 24 * HOUR), run("hourly", T0)
        for r in (old, new, other):
            assert store.claim_report_run(r, deliveries(r))
        store.update_report_run(
            dataclasses.replace(old, status=RunStatus.SENT, finished_ms=T0 + HOUR)
        )
        manual = run("daily", T0 + 48 * HOUR, Trigger.MANUAL)
        assert store.claim_report_run(manual, [])
        latest = store.latest_report_runs(["daily", "hourly", "none"])
        assert {k: v.run_id for k, v in latest.items()} == {
            "daily": manual.run_id, "hourly": other.run_id}  # fmt: skip
        scheduled = store.latest_report_runs(["daily"], Trigger.SCHEDULE)
        assert {k: v.run_id for k, v in scheduled.items()} == {"daily": new.run_id}
        assert [r.run_id for r in store.report_runs("daily", 10)] == [
            manual.run_id, new.run_id, old.run_id]  # fmt: skip
        assert [r.run_id for r in store.report_runs("daily", 1)] == [manual.run_id]
        # Due: a channel whose next attempt has come; not a finished run, not a future retry.
        assert [r.run_id for r in store.unfinished_report_runs(T0 + 10)] == [other.run_id]
        due_later = T0 + 24 * HOUR + 10
        assert [r.run_id for r in store.unfinished_report_runs(due_later)] == [
            other.run_id, new.run_id]  # fmt: skip
        assert store.report_schedule_since("daily", T0) == T0
        assert store.report_schedule_since("daily", T0 + HOUR) == T0
    finally:
        store.close()


def test_racing_claims_of_one_slot_give_it_to_exactly_one(
    open_state: StateOpener,  # noqa: F811
) -> None:
    store = open_state()
    try:
        claims = [dataclasses.replace(run("daily", T0), claimed_by=f"n{i}") for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            won = list(pool.map(lambda r: store.claim_report_run(r, deliveries(r)), claims))
        assert sum(won) == 1
        got = store.report_run(claims[0].run_id)
        assert got is not None and got.claimed_by == f"n{won.index(True)}"
        assert len(store.report_deliveries([got.run_id])) == 2
    finally:
        store.close()
