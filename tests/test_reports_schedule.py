"""Report slots and the scheduler loop on the injected clock: Europe/Berlin's DST switches,
catch-up after downtime, and no second send of a slot after a restart. The scheduler runs
in-process on a real DuckDB store and a real webhook receiver; the artefact is built by hand
here (rendering has its own tests), so only the scheduling and delivery are under test."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsmetrics.alerting.model import AlertHub
from opsmetrics.catalog.notify import parse_notify
from opsmetrics.catalog.report_times import to_local
from opsmetrics.catalog.reports import (
    References,
    ReportSet,
    ReportSpec,
    next_slots,
    parse_reports,
)
from opsmetrics.clock import FakeClock
from opsmetrics.reports.rendered import RenderedReport
from opsmetrics.reports.runs import ReportRunner, RunnerConfig
from opsmetrics.reports.scheduler import (
    MAX_SLOTS,
    RUN_THREADS,
    ReportFailureAlerts,
    ReportScheduler,
    slots_until,
)
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.lease import Lease
from opsmetrics.storage.report_records import RunStatus, Trigger
from tests.receivers import Receiver, receiver

MIN = 60_000
HOUR = 60 * MIN
SPRING = int(datetime(2027, 3, 28, 0, 0, tzinfo=UTC).timestamp() * 1000)  # Berlin 01:00 CET
AUTUMN = int(datetime(2027, 10, 31, 0, 0, tzinfo=UTC).timestamp() * 1000)  # Berlin 02:00 CEST
REPORT = """
reports:
  - name: daily
    audience: executive
    schedule: "{schedule}"
    timezone: Europe/Berlin
    deliver: [{{channel: hook}}]
    catch_up: {{policy: {policy}, max_age: 2d}}
"""


def spec(schedule: str, policy: str = "latest") -> ReportSpec:
    text = REPORT.format(schedule=schedule, policy=policy)
    return parse_reports(text, "reports/r.yaml", References())[0]


def berlin(ms: int) -> str:
    return to_local(ms, spec("0 8 * * *").tz).strftime("%m-%d %H:%M%z")


def test_a_daily_report_fires_at_local_time_on_both_sides_of_each_switch() -> None:
    daily = spec("0 8 * * *")
    got = next_slots(daily, SPRING - 2 * 86_400_000, 4)
    assert [berlin(s) for s in got] == [
        "03-26 08:00+0100", "03-27 08:00+0100", "03-28 08:00+0200", "03-29 08:00+0200"]  # fmt: skip
    assert got[2] - got[1] == 23 * HOUR  # the short day
    got = next_slots(daily, AUTUMN - 86_400_000, 3)
    assert [berlin(s) for s in got] == ["10-30 08:00+0200", "10-31 08:00+0100", "11-01 08:00+0100"]
    assert got[1] - got[0] == 25 * HOUR


def test_a_time_in_the_spring_gap_fires_once_and_the_repeated_autumn_hour_once() -> None:
    gap = next_slots(spec("30 2 * * *"), SPRING - 86_400_000, 3)
    assert [berlin(s) for s in gap] == ["03-27 02:30+0100", "03-28 03:00+0200", "03-29 02:30+0200"]
    halves = next_slots(spec("*/30 * * * *"), AUTUMN - 30 * MIN, 4)
    # 02:00 and 02:30 happen twice that night (CEST, then CET): each fires the first time only.
    assert [berlin(s) for s in halves] == [
        "10-31 02:00+0200", "10-31 02:30+0200", "10-31 03:00+0100", "10-31 03:30+0100"]  # fmt: skip
    assert halves[2] - halves[1] == 90 * MIN


def rendered(slot_ms: int) -> RenderedReport:
    return RenderedReport(f"Daily {slot_ms}", "text", "<p>x</p>", "<p>x</p>",
                          summary={"kpis": []}, sha256=f"{slot_ms:064d}")  # fmt: skip


class World:
    """A store, a clock and a receiver; `scheduler()` is a freshly started process."""

    def __init__(
        self, tmp: Path, hook: Receiver, report: ReportSpec, start_ms: int,
        others: Sequence[ReportSpec] = (),
    ) -> None:  # fmt: skip
        self.clock = FakeClock(start_ms)
        self.store = DuckDBStorage(tmp / "data", now_ms=start_ms)
        self.hook = hook
        self.report = report
        self.reports = ReportSet({r.name: r for r in (report, *others)})
        self.hub = AlertHub()

    def scheduler(self) -> ReportScheduler:
        notify = parse_notify(
            f"channels: [{{name: hook, type: webhook, url: '{self.hook.url}', max_retries: 3}}]",
            "notify.yaml",
        )
        config = RunnerConfig(notify.channels, {}, "test", "http://x", retry_backoff_ms=MIN)
        runner = ReportRunner(self.store, self.clock, self.reports,
                              lambda s, slot, delayed: rendered(slot), config)  # fmt: skip
        alerts = ReportFailureAlerts(self.store, self.clock, self.hub, 2)
        return ReportScheduler(runner, self.store, self.clock, Lease.solo(self.clock, "a"), alerts)

    def slots_sent(self) -> list[str]:
        return [berlin(int(r.json()["run_id"].split(".")[1])) for r in self.hook.requests]


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


def test_the_loop_sends_each_slot_once_through_the_spring_switch(
    tmp_path: Path, hook: Receiver
) -> None:
    world = World(tmp_path, hook, spec("0 */1 * * *"), SPRING - 30 * MIN)
    scheduler = world.scheduler()
    for _ in range(5 * 6):  # 5 hours in 10-minute steps, a pass at each
        scheduler.tick()
        world.clock.advance(10 * MIN)
    # 02:00 does not exist that night: the hourly report goes from 01:00 to 03:00, once each.
    assert world.slots_sent() == [
        "03-28 01:00+0100", "03-28 03:00+0200", "03-28 04:00+0200", "03-28 05:00+0200",
        "03-28 06:00+0200"]  # fmt: skip
    assert len({r.headers["idempotency-key"] for r in hook.requests}) == 5
    runs = world.store.report_runs("daily", 10)
    assert all(r.status is RunStatus.SENT and not r.delayed for r in runs)


def test_the_loop_sends_02_00_once_in_the_repeated_autumn_hour(
    tmp_path: Path, hook: Receiver
) -> None:
    world = World(tmp_path, hook, spec("0 2 * * *"), AUTUMN - 10 * MIN)
    scheduler = world.scheduler()
    for _ in range(18):  # three hours
        scheduler.tick()
        world.clock.advance(10 * MIN)
    assert world.slots_sent() == ["10-31 02:00+0200"]


def test_a_server_down_across_two_slots_catches_up_the_latest_once_marked_delayed(
    tmp_path: Path, hook: Receiver
) -> None:
    world = World(tmp_path, hook, spec("0 8 * * *"), SPRING - 2 * 86_400_000)
    first = world.scheduler()
    first.tick()
    world.clock.set(next_slots(world.report, world.clock.now_ms(), 1)[0] + 1000)
    first.tick()
    assert world.slots_sent() == ["03-26 08:00+0100"]
    # Down over 27 and 28 March 08:00; back at 11:00 on the 28th: one run, the 28th's.
    world.clock.set(SPRING + 9 * HOUR)
    restarted = world.scheduler()
    restarted.tick()
    restarted.tick()
    assert world.slots_sent() == ["03-26 08:00+0100", "03-28 08:00+0200"]
    runs = world.store.report_runs("daily", 10)
    assert [(berlin(r.slot_ms), r.delayed) for r in runs] == [
        ("03-28 08:00+0200", True), ("03-26 08:00+0100", False)]  # fmt: skip
    assert hook.requests[-1].json()["delayed"] is True


def test_reports_due_in_the_same_minute_each_send_their_slot_once(
    tmp_path: Path, hook: Receiver
) -> None:
    """More reports than RUN_THREADS at one slot: processed side by side, each sent once."""
    daily = spec("0 8 * * *")
    many = [dataclasses.replace(daily, name=f"team-{i}") for i in range(RUN_THREADS * 2 + 1)]
    slot = next_slots(daily, SPRING - 2 * 86_400_000, 1)[0]
    world = World(tmp_path, hook, many[0], slot - MIN, others=many[1:])
    scheduler = world.scheduler()
    scheduler.tick()
    world.clock.set(slot + 1000)
    scheduler.tick()
    scheduler.tick()
    keys = sorted(r.headers["idempotency-key"] for r in hook.requests)
    assert keys == sorted(f"{r.name}.{slot}:hook" for r in many)
    runs = [r for spec in many for r in world.store.report_runs(spec.name, 5)]
    assert len(runs) == len(many) and all(r.status is RunStatus.SENT for r in runs)


def test_a_run_to_slack_alone_renders_no_pdf_and_one_with_a_webhook_does(
    tmp_path: Path, hook: Receiver
) -> None:
    notify = parse_notify(
        f"channels: [{{name: chat, type: slack, url: '{hook.url}'}},"
        f" {{name: hook, type: webhook, url: '{hook.url}'}}]",
        "notify.yaml",
    )
    daily = spec("0 8 * * *")
    chat = dataclasses.replace(
        daily, deliver=(dataclasses.replace(daily.deliver[0], channel="chat"),)
    )
    both = dataclasses.replace(daily, name="both", deliver=(*chat.deliver, *daily.deliver))
    asked: dict[str, frozenset[str]] = {}

    def render(s: ReportSpec, slot: int, delayed: bool) -> RenderedReport:
        asked[s.name] = s.formats
        return rendered(slot)

    clock = FakeClock(SPRING)
    store = DuckDBStorage(tmp_path / "data", now_ms=SPRING)
    config = RunnerConfig(notify.channels, {}, "test", "http://x")
    runner = ReportRunner(store, clock, ReportSet({"daily": chat, "both": both}), render, config)
    for report in (chat, both):
        run = runner.claim(report, SPRING, Trigger.SCHEDULE)
        assert run is not None and runner.process(run).status is RunStatus.SENT
    assert asked == {"daily": frozenset({"html"}), "both": frozenset({"html", "pdf"})}


def test_slots_are_read_in_batches_with_the_result_of_reading_them_all() -> None:
    every_minute, daily = spec("* * * * *"), spec("0 8 * * *")
    start = AUTUMN - 2 * HOUR
    now = start + 5 * HOUR  # across the repeated hour, whose second pass fires nothing
    want = [s for s in next_slots(every_minute, start, MAX_SLOTS) if s <= now]
    assert slots_until(every_minute, start, now) == want and len(want) == 4 * 60
    assert slots_until(daily, start, start + 10 * 86_400_000) == next_slots(daily, start, 10)
    assert slots_until(daily, start, start + MIN) == []
    assert len(slots_until(every_minute, start, start + 4 * 86_400_000)) == MAX_SLOTS


def test_a_failing_channel_is_retried_with_backoff_then_raises_the_meta_alert(
    tmp_path: Path,
) -> None:
    with receiver(default=(500, {}, b"down")) as down:
        world = World(tmp_path, down, spec("0 * * * *"), SPRING + 59 * MIN)
        scheduler = world.scheduler()
        sent_at: list[tuple[str, int]] = []
        for _ in range(3 * 60):  # three hours, a pass a minute
            world.clock.advance(MIN)
            scheduler.tick()
            sent_at += [(r.headers["idempotency-key"], world.clock.now_ms())
                        for r in down.requests[len(sent_at):]]  # fmt: skip
        first = [at for key, at in sent_at if key == sent_at[0][0]]
        assert len(first) == 4  # the attempt and max_retries (3) retries, with one key
        gaps = [b - a for a, b in zip(first[:-1], first[1:], strict=True)]
        assert gaps == [MIN, 2 * MIN, 4 * MIN]
        runs = world.store.report_runs("daily", 10)
        assert [r.status for r in runs if r.status is not RunStatus.RUNNING][:2] == [
            RunStatus.FAILED, RunStatus.FAILED]  # fmt: skip
        alerts = scheduler.alerts.active_alerts()
        assert [dict(a.labels) for a in alerts] == [
            {"alertname": "OpsmetricsReportFailing", "report": "daily", "severity": "warning"}
        ]
        assert "HTTP 500" in dict(alerts[0].annotations)["description"]
        assert all(r.trigger is Trigger.SCHEDULE for r in runs)
