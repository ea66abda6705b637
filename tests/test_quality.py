"""Data-quality monitors over a real server with a fixed clock (docs/sources.md, Data quality).

One server for the module, its clock at FIXED_NOW (Monday 00:12 UTC). Planted through the real
ingest endpoints: `signup` events that stop two hours ago (freshness), 15 days of `visit`
events whose last complete hour drops to one event (volume), `purchase` events whose last hour
lacks the `plan` a KPI filters on half the time and sends `amount` as a string (completeness,
schema drift), one purchase sent twice (duplicates), and remote-written `queue_depth` that
stops two hours ago beside `api_latency` that keeps coming (freshness of metrics). The alerts
go through notify.yaml's routing to a real local webhook receiver.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
from playwright.sync_api import Page

from opsmetrics.ingest.proto import remote_pb2 as pb
from tests.conftest import FIXED_NOW
from tests.receivers import Receiver, receiver
from tests.server import ServerProcess, wait_until
from tests.ui_helpers import chromium_page, visit

pytestmark = pytest.mark.e2e

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
HOUR_START = FIXED_NOW // HOUR * HOUR
RW_HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}
KPIS = """
- {name: signups, title: Signups, owner: growth, unit: count, direction: higher_is_better,
   grain: day, event: {name: signup, agg: count}}
- {name: pro_purchases, title: Pro purchases, owner: shop, unit: count,
   direction: higher_is_better, grain: day, event: {name: purchase, agg: count,
   where: {plan: pro}}}
- {name: queue, title: Queue depth, owner: sre, unit: count, direction: lower_is_better,
   grain: hour, promql: 'max(queue_depth)'}
"""
NOTIFY = """
channels:
  - {name: hook, type: webhook, url: "%s/hook"}
routes:
  - match: {alertname: SourceStale}
    channels: [hook]
    group_by: [source]
    group_wait: 0s
    group_interval: 1h
"""
DASHBOARD = """\
title: Growth
time_range: 1d
sections:
  - title: KPIs
    widgets:
      - {type: metric_card, kpi: signups}
      - {type: status_grid, kpis: [signups, pro_purchases]}
      - {type: table, kpis: [signups, pro_purchases]}
"""
QUALITY = """
interval: 1s
sources:
  event:visit: {disable: [freshness]}
"""

SQL_SOURCES = """
- name: refunds
  url: sqlite:///shop.db
  interval: 1s  # the collector starts each within its interval
  query: SELECT id, customer, created_at FROM refunds WHERE id > $cursor ORDER BY id
  cursor: {column: id, initial: 0}
  emit:
    events: {name: refund, id: "refund-{id}", entity: customer, ts: created_at}
- name: broken
  url: sqlite:///shop.db
  interval: 1s  # the collector starts each within its interval
  query: SELECT id, customer, created_at FROM no_such_table WHERE id > $cursor ORDER BY id
  cursor: {column: id, initial: 0}
  emit:
    events: {name: refund, id: "refund-{id}", entity: customer, ts: created_at}
"""
SQL_IDS = ("sql:refunds", "sql:broken")


def _shop_db(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE refunds (id INTEGER PRIMARY KEY, customer TEXT, created_at TEXT)")
    for i in range(1, 6):
        con.execute("INSERT INTO refunds VALUES (?, ?, ?)", [i, "c", f"2027-01-03 23:0{i}:00"])
    con.commit()
    con.close()


@dataclass
class Planted:
    srv: ServerProcess
    hook: Receiver


def _events(srv: ServerProcess, events: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(e) for e in events)
    headers = {"content-type": "application/x-ndjson"}
    r = httpx.post(srv.url + "/api/v1/events", content=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text


def _remote_write(srv: ServerProcess, name: str, job: str, start: int, end: int) -> None:
    req = pb.WriteRequest()
    series = req.timeseries.add()
    for label, value in (("__name__", name), ("instance", "a:1"), ("job", job)):
        series.labels.add(name=label, value=value)
    for ts in range(start, end, 15_000):
        series.samples.add(timestamp=ts, value=float(ts % 7))
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
    r = httpx.post(srv.url + "/api/v1/write", content=body, headers=RW_HEADERS, timeout=30)
    assert r.status_code == 204, r.text


def _signups() -> list[dict[str, Any]]:
    """Every 5 minutes for three days, ending two hours before now."""
    stop = FIXED_NOW - 2 * HOUR
    ts = range(FIXED_NOW - 3 * DAY, stop, 5 * MIN)
    return [{"name": "signup", "ts": t, "entity": f"u{t}"} for t in ts]


def _visits() -> list[dict[str, Any]]:
    """Twelve an hour for 15 days; one in the last complete hour; more in the current one."""
    out = []
    for hour in range(HOUR_START - 15 * DAY, HOUR_START, HOUR):
        n = 1 if hour == HOUR_START - HOUR else 12
        out += [{"name": "visit", "ts": hour + i * 5 * MIN, "entity": "v"} for i in range(n)]
    out += [{"name": "visit", "ts": HOUR_START + i * MIN, "entity": "v"} for i in range(10)]
    return out


def _purchases() -> list[dict[str, Any]]:
    """The day before the last hour: plan and a numeric amount on every purchase; the last
    hour: plan on every other one, amount as text."""
    before = range(FIXED_NOW - 25 * HOUR, FIXED_NOW - HOUR, 10 * MIN)
    out = [
        {"name": "purchase", "ts": t, "entity": "c", "props": {"plan": "pro", "amount": 10}}
        for t in before
    ]
    for i, t in enumerate(range(FIXED_NOW - HOUR + MIN, FIXED_NOW, 2 * MIN)):
        props: dict[str, Any] = {"amount": "10"} | ({"plan": "pro"} if i % 2 else {})
        out.append({"name": "purchase", "ts": t, "entity": "c", "props": props})
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    root = tmp_path_factory.mktemp("quality")
    config = root / "config"
    (config / "kpis").mkdir(parents=True)
    (config / "kpis" / "kpis.yaml").write_text(KPIS)
    (config / "quality.yaml").write_text(QUALITY)
    (config / "dashboards").mkdir()
    (config / "dashboards" / "growth.yaml").write_text(DASHBOARD)
    (config / "sources").mkdir()
    (config / "sources" / "shop.yaml").write_text(SQL_SOURCES)
    _shop_db(config / "shop.db")
    with receiver() as hook:
        (config / "notify.yaml").write_text(NOTIFY % hook.url)
        srv = ServerProcess(root / "data", config_dir=config, now_ms=FIXED_NOW).start()
        try:
            _events(srv, _signups() + _visits() + _purchases())
            dup = {"name": "purchase", "id": "p-1", "ts": FIXED_NOW - MIN, "entity": "c",
                   "props": {"plan": "pro", "amount": "10"}}  # fmt: skip
            _events(srv, [dup])
            _events(srv, [dup])
            _remote_write(srv, "queue_depth", "worker", FIXED_NOW - 6 * HOUR, FIXED_NOW - 2 * HOUR)
            _remote_write(srv, "api_latency", "api", FIXED_NOW - 6 * HOUR, FIXED_NOW)
            yield Planted(srv, hook)
        finally:
            srv.stop()


def _sources(srv: ServerProcess) -> dict[str, dict[str, Any]]:
    r = httpx.get(srv.url + "/api/v1/quality", timeout=30)
    assert r.status_code == 200, r.text
    return {s["id"]: s for s in r.json()["data"]["sources"]}


def _settled(srv: ServerProcess) -> dict[str, dict[str, Any]]:
    """The report once a pass has seen every planted source."""
    ids = {"event:signup", "event:visit", "event:purchase", "metric:queue_depth"}
    return dict(wait_until(lambda: (s := _sources(srv)) and ids <= s.keys() and s, "sources"))


def test_freshness_fires_on_a_gap_in_pushed_events(planted: Planted) -> None:
    signup = _settled(planted.srv)["event:signup"]
    fresh = signup["monitors"]["freshness"]
    assert fresh["status"] == "critical", fresh
    # learned from the 5-minute cadence (p99 gap 5m × 3), at the 15-minute floor
    assert signup["expected_freshness_seconds"] == 900
    assert signup["last_seen"] * 1000 == FIXED_NOW - 2 * HOUR - 5 * MIN
    assert signup["stale_since"] * 1000 == FIXED_NOW - 2 * HOUR - 5 * MIN + 15 * MIN
    assert signup["kpis"] == ["signups"]
    assert signup["status"] == "critical"


def test_freshness_fires_on_a_gap_in_remote_written_metrics(planted: Planted) -> None:
    sources = _settled(planted.srv)
    stale = sources["metric:queue_depth"]["monitors"]["freshness"]
    assert stale["status"] == "critical" and "no data for 2h" in stale["detail"], stale
    assert sources["metric:queue_depth"]["kpis"] == ["queue"]
    fresh = sources["metric:api_latency"]["monitors"]["freshness"]
    assert fresh["status"] == "ok", fresh
    # one sample every 15 s: the learned expectation is the floor, not hours
    assert sources["metric:api_latency"]["expected_freshness_seconds"] == 900


def test_volume_anomaly_fires_on_a_drop(planted: Planted) -> None:
    visit = _settled(planted.srv)["event:visit"]
    volume = visit["monitors"]["volume"]
    assert volume["status"] == "warning", volume
    assert volume["value"] == 1 and "1 in the last hour" in volume["detail"]
    assert visit["monitors"]["freshness"]["status"] == "disabled"  # quality.yaml
    # the other sources have no 2 days of history: not judged
    signup = _settled(planted.srv)["event:signup"]["monitors"]["volume"]
    assert signup["status"] in ("ok", "unknown")


def test_missing_kpi_property_lowers_completeness(planted: Planted) -> None:
    purchase = _settled(planted.srv)["event:purchase"]
    check = purchase["monitors"]["completeness"]
    assert check["status"] == "warning", check
    assert "plan" in check["detail"] and "(was 100%)" in check["detail"]
    plan = next(p for p in purchase["properties"] if p["name"] == "plan")
    assert plan["kpis"] == ["pro_purchases"]
    assert 0.4 < plan["present"] < 0.6
    # visits carry no property a KPI reads: nothing to miss
    assert _settled(planted.srv)["event:visit"]["monitors"]["completeness"]["status"] == "ok"


def test_a_property_that_changes_type_is_drift(planted: Planted) -> None:
    drift = _settled(planted.srv)["event:purchase"]["monitors"]["schema_drift"]
    assert drift["status"] == "warning", drift
    assert "amount changed type: number → now also string" in drift["detail"]
    assert "plan" not in drift["detail"]  # still there, on fewer events: completeness's case


def test_duplicates_are_counted_per_event_name(planted: Planted) -> None:
    sources = _settled(planted.srv)
    assert sources["event:purchase"]["monitors"]["duplicates"]["value"] == 1
    assert sources["event:signup"]["monitors"]["duplicates"]["value"] == 0
    text = httpx.get(planted.srv.url + "/metrics", timeout=10).text
    assert 'opsmetrics_ingest_duplicate_events_total{name="purchase"} 1.0' in text


def test_results_are_written_as_samples(planted: Planted) -> None:
    srv = planted.srv

    def status() -> list[dict[str, Any]]:
        q = 'opsmetrics_quality_status{source="event:signup",monitor="freshness"}'
        r = httpx.get(srv.url + "/api/v1/query", params={"query": q}, timeout=10)
        return list(r.json()["data"]["result"])

    got = wait_until(status, "opsmetrics_quality_status written")
    assert got[0]["value"][1] == "2"  # critical
    assert got[0]["metric"]["kind"] == "event"


def test_the_kpi_api_notes_the_stale_source(planted: Planted) -> None:
    _settled(planted.srv)
    r = httpx.get(planted.srv.url + "/api/v1/kpis/signups", timeout=30)
    assert r.status_code == 200, r.text
    (stale,) = r.json()["data"]["stale_sources"]
    assert stale["source"] == "event:signup"
    assert stale["note"] == "source event:signup stale since 2027-01-03 22:22 UTC"
    listed = httpx.get(planted.srv.url + "/api/v1/kpis", params={"values": "true"}, timeout=30)
    rows = {k["name"]: k for k in listed.json()["data"]}
    assert [s["source"] for s in rows["signups"]["stale_sources"]] == ["event:signup"]
    assert [s["source"] for s in rows["queue"]["stale_sources"]] == ["metric:queue_depth"]
    assert rows["pro_purchases"]["stale_sources"] == []


def test_a_stale_source_alert_reaches_the_webhook(planted: Planted) -> None:
    def stale() -> dict[str, dict[str, Any]]:
        alerts = [a for r in list(planted.hook.requests) for a in r.json()["alerts"]]
        return {a["labels"]["source"]: a for a in alerts if "event:signup" in a["labels"]["source"]}

    got = wait_until(stale, "the SourceStale alert of event:signup at the webhook")
    assert got["event:signup"]["labels"]["alertname"] == "SourceStale"
    # only SourceStale is routed to the hook (notify.yaml): the drift alert is not sent
    sent = {a["labels"]["alertname"] for r in planted.hook.requests for a in r.json()["alerts"]}
    assert sent == {"SourceStale"}
    stale = got
    signup = stale["event:signup"]
    assert signup["status"] == "firing"
    assert signup["labels"]["severity"] == "critical"
    assert signup["labels"]["monitor"] == "freshness"
    assert "no data for 2h" in signup["annotations"]["summary"]


def test_sql_sources_are_judged_by_their_runs(planted: Planted) -> None:
    def ran() -> dict[str, dict[str, Any]]:
        s = _settled(planted.srv)
        runs = [s.get(i, {}).get("monitors", {}).get("freshness", {}) for i in SQL_IDS]
        return s if all(r.get("detail", "no data yet") != "no data yet" for r in runs) else {}

    sources = wait_until(ran, "a run of each SQL source")
    refunds = sources["sql:refunds"]
    assert refunds["monitors"]["freshness"]["status"] == "ok", refunds
    assert refunds["expected_freshness_seconds"] == 900  # 1s × 3, at the 15-minute floor
    assert sources["event:refund"]["last_seen"] * 1000 == FIXED_NOW - 72 * MIN + 5 * MIN
    volume, written = refunds["monitors"]["volume"], sources["event:refund"]["monitors"]["volume"]
    assert volume["judged_at"] == "event:refund"  # its rows per hour, judged where they land
    assert volume["detail"] == "event:refund: " + written["detail"]
    assert volume["status"] == written["status"]
    broken = sources["sql:broken"]["monitors"]["freshness"]
    assert broken["status"] == "critical" and "no run succeeded" in broken["detail"], broken
    assert "no_such_table" in broken["detail"]


@pytest.fixture(scope="module")
def page(planted: Planted) -> Iterator[Page]:
    with chromium_page(planted.srv.clock_ms()) as opened:
        yield opened
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_the_sources_page_shows_every_source_with_its_monitors(
    page: Page, planted: Planted
) -> None:
    _settled(planted.srv)
    watch = visit(page, f"{planted.srv.url}/sources")
    signup = page.locator('tr[data-source="event:signup"]')
    assert signup.get_attribute("data-status") == "critical"
    assert "no data for 2h" in signup.locator("[data-detail]").inner_text()
    assert signup.locator("a", has_text="signups").get_attribute("href") == "/kpis/signups"
    drift = page.locator('tr[data-source="event:purchase"] td').nth(8)
    assert drift.inner_text().strip() == "Warning"
    assert "amount changed type" in (drift.locator(".status").get_attribute("title") or "")
    for source in ("metric:queue_depth", "metric:api_latency", "sql:refunds", "event:visit"):
        assert page.locator(f'tr[data-source="{source}"]').count() == 1, source
    assert page.locator("#sources-sql td", has_text="broken").count() == 1  # GET /api/v1/sources
    assert page.locator('nav a[aria-current="page"]').inner_text() == "Sources"
    assert watch.problems == []


def test_the_kpi_page_says_its_source_is_stale(page: Page, planted: Planted) -> None:
    watch = visit(page, f"{planted.srv.url}/kpis/signups")
    note = page.locator('[data-warning="stale"]')
    assert note.count() == 1
    assert note.inner_text().startswith("Not current: source event:signup stale since")
    assert watch.problems == []


def test_dashboard_kpi_widgets_mark_a_stale_value(planted: Planted) -> None:
    _settled(planted.srv)
    url = planted.srv.url + "/api/v1/dashboards/growth/data"
    widgets = httpx.get(url, params={"start": "now-1d", "end": "now"}, timeout=30).json()
    card, grid, table = widgets["data"]["widgets"].values()
    note = "source event:signup stale since 2027-01-03 22:22 UTC"
    assert card["stale"] == [note]
    items = {i["name"]: i["stale"] for i in grid["items"]}
    assert items == {"signups": [note], "pro_purchases": []}
    signups, purchases = table["rows"]
    assert signups[1].endswith(" (stale)") and not purchases[1].endswith(" (stale)")


def test_the_dashboard_shows_the_stale_badge(page: Page, planted: Planted) -> None:
    watch = visit(page, f"{planted.srv.url}/dashboards/growth")
    badges = page.locator("[data-stale]")
    assert badges.count() == 2  # the card and the grid's signups cell
    assert "event:signup" in (badges.first.get_attribute("title") or "")
    assert watch.problems == []
