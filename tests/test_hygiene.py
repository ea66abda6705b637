"""The hygiene report on a real server with an injected clock: planted incident timelines (a
flapping alert, one never acknowledged, one handled well), KPIs unused, never reviewed and
overdue, and an event source gone silent; each finding carries its fix. Also its report table
and the `opsmetrics hygiene` command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmetrics.clock import FakeClock
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest, event_key
from opsmetrics.model import Event, SampleBatchBuilder
from opsmetrics.reports.hygiene import Hygiene, hygiene_table
from opsmetrics.reports.hygiene_alerts import AlertNoise, alert_finding
from opsmetrics.reports.hygiene_model import Finding
from opsmetrics.services import open_services
from opsmetrics.settings import Limits, Settings
from opsmetrics.storage import StoredEvent, WriteBatch
from opsmetrics.storage.review_records import KpiReview
from opsmetrics.storage.timeline_records import TimelineEntry
from tests.conftest import FIXED_NOW
from tests.server import ServerProcess, run_bounded

MIN = 60_000
HOUR = 3_600_000
DAY = 24 * HOUR
CATALOG = """\
- name: used_kpi
  title: Used and reviewed
  owner: growth
  cadence: weekly
  unit: count
  direction: higher_is_better
  event: {name: heartbeat, agg: count}
- name: late_kpi
  title: Reviewed three days ago, daily
  owner: ops
  cadence: daily
  unit: count
  direction: higher_is_better
  event: {name: checkout, agg: count}
- name: unused_kpi
  title: Used by nothing
  owner: finance
  cadence: monthly
  unit: count
  direction: higher_is_better
  manual: true
"""
DASHBOARD = """\
title: Ops
sections:
  - title: Both
    widgets:
      - {type: trend_chart, id: both, kpis: [used_kpi, late_kpi]}
"""


def fired(fp: str, name: str, at: int) -> TimelineEntry:
    detail = json.dumps({"alertname": name, "rule": f"rules/ops.yaml:{len(name)}"})
    return TimelineEntry(f"{fp}-{at}-f", fp, at, at, "fired", "opsmetrics", detail)


def then(fp: str, started: int, at: int, kind: str) -> TimelineEntry:
    return TimelineEntry(f"{fp}-{started}-{kind}", fp, started, at, kind, "ana", "{}")


def timelines() -> list[TimelineEntry]:
    out = []
    for k in range(4):  # fires for 3 minutes, quiet for 7, four times
        start = FIXED_NOW - 6 * HOUR + k * 10 * MIN
        out += [
            fired("fp-flap", "DiskFlapping", start),
            then("fp-flap", start, start + 3 * MIN, "resolved"),
        ]
    stuck = FIXED_NOW - 3 * HOUR
    out.append(fired("fp-stuck", "QueueStuck", stuck))
    ok = FIXED_NOW - 5 * HOUR
    out += [fired("fp-ok", "HandledWell", ok), then("fp-ok", ok, ok + 5 * MIN, "acknowledged"),
            then("fp-ok", ok, ok + 30 * MIN, "resolved")]  # fmt: skip
    return out


def events() -> list[StoredEvent]:
    """`heartbeat` every hour up to now, `checkout` every hour until 10 hours ago."""
    found = []
    for h in range(1, 5 * 24):
        at = FIXED_NOW - h * HOUR + 5 * MIN
        found.append(Event("heartbeat", at, f"u{h}"))
        if h > 10:
            found.append(Event("checkout", at, f"u{h}"))
    return [StoredEvent(event_key(e), e) for e in found]


def samples() -> WriteRequest:
    """`steady_gauge` every 15 minutes up to now, `batch_job_runs` every 15 minutes until a
    day ago."""
    b = SampleBatchBuilder()
    ts = [FIXED_NOW - k * 15 * MIN for k in range(1, 4 * 24 * 4)]
    b.add_many(b.series_index((("__name__", "steady_gauge"),)), ts, [1.0] * len(ts))
    old = [t for t in ts if t < FIXED_NOW - DAY]
    b.add_many(b.series_index((("__name__", "batch_job_runs"),)), old, [2.0] * len(old))
    return WriteRequest("t", samples=DecodedSamples(b.build()))


def write_config(root: Path) -> Path:
    config = root / "config"
    (config / "kpis").mkdir(parents=True)
    (config / "kpis" / "kpis.yaml").write_text(CATALOG)
    (config / "dashboards").mkdir()
    (config / "dashboards" / "ops.yaml").write_text(DASHBOARD)
    return config


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("hygiene")
    config = write_config(root)
    limits = Limits(samples_late_window_ms=7 * DAY)
    settings = Settings(data_dir=root / "data", config_dir=config, limits=limits)
    services = open_services(settings, FakeClock(FIXED_NOW))
    try:
        store = services.storage
        store.record_timeline(timelines())
        store.write(WriteBatch(events=events()))
        services.ingestor.write(samples())
        for kpi, ago in (("used_kpi", DAY), ("late_kpi", 3 * DAY)):
            at = FIXED_NOW - ago
            store.record_review(KpiReview(f"r-{kpi}", kpi, at, "ana", "", 1, "ok", None))
    finally:
        services.close()
    server = ServerProcess(root / "data", config_dir=config, now_ms=FIXED_NOW).start(timeout=120)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def report(srv: ServerProcess) -> dict[str, Any]:
    r = httpx.get(f"{srv.url}/api/v1/hygiene", timeout=60)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def finding(report: dict[str, Any], kind: str, subject: str) -> dict[str, str]:
    found: list[dict[str, str]] = [
        f for f in report["findings"] if f["kind"] == kind and f["subject"] == subject
    ]
    assert len(found) == 1, (kind, subject, report["findings"])
    return found[0]


def test_a_flapping_alert_is_found_with_its_fix(report: dict[str, Any]) -> None:
    f = finding(report, "flapping", "DiskFlapping")
    assert f["area"] == "alert"
    assert f["fix"] == (
        "add `keep_firing_for: 15m` to DiskFlapping (rules/ops.yaml:12) or raise its `for:`: it "
        "resolved and fired again within 15 minutes 3 times this week"
    )
    stats = {a["alertname"]: a for a in report["alerts"]}
    assert (stats["DiskFlapping"]["fires"], stats["DiskFlapping"]["flaps"]) == (4, 3)
    assert stats["DiskFlapping"]["resolved_unseen"] == 4


def test_a_never_acknowledged_alert_is_found_and_a_handled_one_is_not(
    report: dict[str, Any],
) -> None:
    f = finding(report, "never_acknowledged", "QueueStuck")
    assert "route QueueStuck (rules/ops.yaml:10) to a channel its team watches" in f["fix"]
    assert "fired once this week and was never acknowledged" in f["fix"]
    stats = {a["alertname"]: a for a in report["alerts"]}
    assert stats["HandledWell"]["median_ack_seconds"] == 300
    assert not [f for f in report["findings"] if f["subject"] == "HandledWell"]


def test_kpis_unused_never_reviewed_and_overdue_are_found(report: dict[str, Any]) -> None:
    unused = finding(report, "unused", "unused_kpi")
    assert unused["fix"].startswith("add unused_kpi to a dashboard, an alert or a report, or ")
    assert "kpis.yaml:15" in unused["fix"]
    never = finding(report, "never_reviewed", "finance")  # one line per owner
    assert never["detail"] == "1 KPI never reviewed: unused_kpi"
    assert never["fix"].startswith("ask finance to review unused_kpi and mark each reviewed")
    late = finding(report, "overdue_review", "late_kpi")
    assert "the daily review is 2 days late" in late["fix"]
    kpis = {f["subject"] for f in report["findings"] if f["area"] == "kpi"}
    assert "used_kpi" not in kpis


def test_an_event_source_gone_silent_is_found_and_a_steady_one_is_not(
    report: dict[str, Any],
) -> None:
    f = finding(report, "silent_events", "checkout")
    assert f["fix"].startswith("check the sender of `checkout` events")
    # The last one came at 13:17 the day before: 10 h 55 min of silence.
    assert "none arrived for 11 h, where they came every hour" in f["fix"]
    sources = {(s["kind"], s["name"]): s for s in report["sources"]}
    assert sources[("events", "heartbeat")]["silent"] is False
    assert sources[("events", "checkout")]["cadence_seconds"] == 3600


def test_a_metric_gone_silent_is_found_and_a_steady_one_is_not(report: dict[str, Any]) -> None:
    f = finding(report, "silent_metric", "batch_job_runs")
    assert f["fix"].startswith("check the scrape target or pusher of `batch_job_runs`")
    assert "no samples for 24 h, where they came every hour" in f["fix"]
    sources = {(s["kind"], s["name"]): s for s in report["sources"]}
    assert sources[("metric", "steady_gauge")]["silent"] is False


def test_the_hygiene_command_prints_each_fix(srv: ServerProcess) -> None:
    args = [sys.executable, "-m", "opsmetrics", "hygiene", "--url", srv.url]
    done = run_bounded(args, 60, dict(os.environ))
    assert done.returncode == 0, done.stderr
    for subject in ("DiskFlapping", "QueueStuck", "unused_kpi", "late_kpi", "checkout"):
        assert subject in done.stdout


def test_the_report_table_lists_alerts_then_kpis_then_sources_with_fixes() -> None:
    noisy = alert_finding(AlertNoise("HighErrorRate", "rules/api.yaml:12", fires=41))
    assert noisy is not None
    assert noisy.fix == (
        "raise the `for:` of HighErrorRate (rules/api.yaml:12) or add a silence: it fired "
        "41 times this week"
    )
    source = Finding("source", "silent_events", "signup", "quiet", "check the sender")
    kpi = Finding("kpi", "unused", "mrr", "unused", "use it")
    table = hygiene_table(Hygiene(FIXED_NOW, [source, kpi, noisy], [], []))
    assert table.columns == ("Area", "Item", "Finding", "Fix")
    assert [r[1] for r in table.rows] == ["HighErrorRate", "mrr", "signup"]
    assert table.rows[0][3] == noisy.fix
    assert hygiene_table(Hygiene(FIXED_NOW, [], [], [])).empty.startswith("Nothing to clean up")
