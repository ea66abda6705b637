"""Dashboard widget payloads (dashboards/data.py) on a small data set written through the real
ingestor with a FakeClock, checked against the services they are built on (KPI evaluator,
PromQL engine) and against counts worked out by hand from the events written."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from opsmetrics.alerting.model import Alert, AlertHub, AlertState
from opsmetrics.clock import FakeClock
from opsmetrics.dashboards.data import DashboardData
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import Annotation, Event, SampleBatchBuilder
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.query.promql.engine import evaluate_range
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
D0 = 1_709_510_400_000  # Monday 2024-03-04 00:00 UTC
NOW = D0 + 3 * DAY + 12 * HOUR

KPIS = """
- {name: orders, title: Orders, owner: shop, unit: count, direction: higher_is_better,
   grain: day, dimensions: [country], event: {name: purchase, agg: count},
   target: 4, thresholds: {warning: 3.5, critical: 1}}
- {name: cart_conversion, title: Cart conversion, owner: shop, unit: percent,
   direction: higher_is_better, conversion: {from: cart_view, to: purchase, within: 1d}}
- {name: load, title: Load, owner: sre, unit: count, direction: lower_is_better, grain: hour,
   promql: 'max(load_avg)', thresholds: {warning: 5, critical: 8}}
"""
DASHBOARD = """
title: Everything
time_range: 3d
sections:
  - title: All widget types
    widgets:
      - {type: metric_card, id: card, kpi: orders}
      - {type: metric_card, id: qcard, query: 'sum(load_avg)', unit: count}
      - {type: metric_card, id: broken, query: 'load_avg'}
      - type: trend_chart
        id: trend
        kpis: [orders]
        queries: [{expr: 'load_avg', legend: '{{host}}'}]
        compare: previous_period
      - type: trend_chart
        id: forecast
        queries: [{expr: 'max(load_avg)'}]
        forecast: true
        anomalies: true
      - {type: gauge, id: gauge, kpi: load, min: 0, max: 10}
      - {type: status_grid, id: grid, kpis: [orders, load],
         queries: [{expr: 'max(load_avg)', thresholds: {good: 1, warning: 5, critical: 8}}]}
      - {type: funnel, id: funnel, steps: [page_view, cart_view, purchase], within: 1d}
      - {type: funnel, id: kfunnel, kpi: cart_conversion}
      - {type: cohort, id: cohort, start_event: signup, return_event: purchase,
         period: day, periods: 2}
      - {type: table, id: table, kpis: [orders, load]}
      - {type: table, id: qtable, query: 'load_avg'}
      - {type: bar, id: bar, query: 'load_avg', legend: '{{host}}'}
      - {type: bar, id: kbar, kpi: orders, by: country}
      - {type: scatter, id: scatter, x: {query: 'max(load_avg)'}, y: {query: 'max(twice)'}}
      - {type: scatter, id: scatter2h, step: 2h,
         x: {query: 'max(load_avg)'}, y: {query: 'max(twice)'}}
      - {type: alert_list, id: alerts, match: {severity: critical}}
      - {type: text, id: text, markdown: "**Hi** <script>alert(1)</script>"}
      - {type: experiment, id: exp, experiment: button}
"""
# Users u1..u4 view a page on day 2; u1, u2, u3 view a cart; u1, u2 purchase (u2 after 2 days:
# outside the 1-day window); u5 buys without a page view.
EVENTS = [
    *[Event("page_view", D0 + 2 * DAY + HOUR, f"u{i}") for i in range(1, 5)],
    *[Event("cart_view", D0 + 2 * DAY + 2 * HOUR, f"u{i}") for i in range(1, 4)],
    Event("purchase", D0 + 2 * DAY + 3 * HOUR, "u1", props={"country": "de"}),
    Event("purchase", D0 + 2 * DAY + 4 * HOUR, "u5", props={"country": "fr"}),
    Event("purchase", D0 + 2 * DAY + 5 * HOUR, "u6", props={"country": "de"}),
    Event("purchase", D0 + DAY + 5 * HOUR, "u6", props={"country": "de"}),
    Event("purchase", D0 + 6 * HOUR, "u2"),  # before the range: not counted
    Event("signup", D0 + DAY + HOUR, "u1"),
    Event("signup", D0 + DAY + HOUR, "u7"),
    *[
        Event("experiment_exposure", D0 + 2 * DAY + 2 * HOUR, u, props={"variant": arm})
        for u, arm in (("u1", "control"), ("u2", "control"), ("u3", "treatment"))
    ],
]
EXPERIMENT = """
name: button
title: Button test
variants: [{name: control, weight: 0.5}, {name: treatment, weight: 0.5}]
exposure: {event: experiment_exposure, variant_prop: variant}
entity: user
primary: {name: conv, kind: proportion, event: purchase, within: 1d}
"""


def load(host: str, ts: int) -> float:
    return (2.0 if host == "a" else 6.0) + (ts - D0) / DAY


class StaticAlerts:
    """An alert source with a fixed list (the rule manager's role)."""

    def __init__(self, alerts: list[Alert]) -> None:
        self.alerts = alerts

    def active_alerts(self) -> list[Alert]:
        return self.alerts


def alert(name: str, severity: str, active_at: int) -> Alert:
    labels = tuple(sorted({"alertname": name, "severity": severity}.items()))
    return Alert(labels, (("summary", f"{name} is bad"),), AlertState.FIRING, 1.0, active_at)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("dash")
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "dashboards").mkdir()
    (root / "config" / "kpis" / "k.yaml").write_text(KPIS)
    (root / "config" / "dashboards" / "all.yaml").write_text(DASHBOARD)
    (root / "config" / "experiments").mkdir()
    (root / "config" / "experiments" / "button.yaml").write_text(EXPERIMENT)
    limits = Limits(events_late_window_ms=30 * DAY, samples_late_window_ms=30 * DAY)
    settings = Settings(data_dir=root / "data", config_dir=root / "config", limits=limits)
    services = open_services(settings, FakeClock(NOW))
    b = SampleBatchBuilder()
    for ts in range(D0 - 3 * DAY, NOW + 1, 5 * MIN):
        for host in ("a", "b"):
            b.add((("__name__", "load_avg"), ("host", host)), ts, load(host, ts))
            b.add((("__name__", "twice"), ("host", host)), ts, 2 * load(host, ts) + 1)
    deploy = Annotation("d1", D0 + 2 * DAY, "deploy v2", tags=["deploy"])
    samples = DecodedSamples(b.build())
    services.ingestor.write(WriteRequest("t", samples, EVENTS, [deploy]))
    try:
        yield services
    finally:
        services.close()


@pytest.fixture(scope="module")
def payload(svc: Services) -> dict[str, Any]:
    hub = AlertHub()
    down = alert("Down", "critical", NOW - HOUR)
    hub.add_source(StaticAlerts([down, alert("Slow", "warning", NOW)]))
    data = DashboardData(svc.storage, svc.catalog, evaluator(svc), svc.clock, hub)
    data.acked = {down.fingerprint}.__contains__  # the dispatcher's acknowledgements
    try:
        got: dict[str, Any] = data.payload(svc.dashboards.get("all"), NOW - 3 * DAY, NOW)
        return got
    finally:
        data.close()


def evaluator(svc: Services) -> KpiEvaluator:
    return KpiEvaluator(svc.storage, svc.catalog, svc.clock)


def test_every_widget_answers_and_a_broken_one_fails_alone(payload: dict[str, Any]) -> None:
    widgets = payload["widgets"]
    assert len(widgets) == 19
    assert "returns 2 series" in widgets["broken"]["error"]
    errors = {wid: w["error"] for wid, w in widgets.items() if "error" in w}
    assert set(errors) == {"broken"}
    assert payload["range"] == {"start": NOW - 3 * DAY, "end": NOW, "step": 15 * MIN}


def test_metric_card_is_the_kpi_evaluators_current_value(
    svc: Services, payload: dict[str, Any]
) -> None:
    card = payload["widgets"]["card"]
    current = evaluator(svc).current("orders")
    assert card["value"] == current.value == 3  # yesterday (day 2): u1, u5 and u6 purchased
    assert card["status"] == current.status.value == "warning"
    assert card["status_text"] == "Warning: below 3.50"
    assert card["delta"]["value"] == 3 - 1 and card["delta"]["good"] is True
    assert card["delta"]["pct"] == current.change == 2.0
    assert card["target"] == 4 and card["attainment"] == 0.75
    assert card["link"] == "/kpis/orders"
    series = evaluator(svc).series("orders", NOW - 3 * DAY, NOW, grain=current_grain())
    assert card["sparkline"] == [[p.start_ms, p.value] for p in series.points]


def current_grain() -> Any:
    from opsmetrics.catalog.kpi_model import Grain

    return Grain.HOUR  # a 3-day range is drawn by the hour


def test_query_card_sums_the_hosts(payload: dict[str, Any]) -> None:
    card = payload["widgets"]["qcard"]
    assert card["value"] == pytest.approx(load("a", NOW) + load("b", NOW))


def test_trend_chart_points_are_the_range_querys(svc: Services, payload: dict[str, Any]) -> None:
    chart = payload["widgets"]["trend"]
    step = payload["range"]["step"]
    first = -(-(NOW - 3 * DAY) // step) * step
    expected = evaluate_range(svc.storage, "load_avg", first, NOW, step)
    by_host = {s["name"]: s for s in chart["series"][1:]}
    assert set(by_host) == {"a", "b"}
    for i, labels in enumerate(expected.labels):  # type: ignore[union-attr]
        host = dict(labels)["host"]
        values = expected.values[i].tolist()  # type: ignore[union-attr]
        assert [v for _, v in by_host[host]["points"]] == values
    shifted = by_host["a"]["compare_points"]
    assert shifted[-1][0] == by_host["a"]["points"][-1][0]
    assert shifted[-1][1] == pytest.approx(load("a", NOW - 3 * DAY))
    orders = chart["series"][0]
    assert sum(v or 0 for _, v in orders["points"]) == 4  # purchases in the 3 days
    assert [a["title"] for a in chart["annotations"]] == ["deploy v2"]
    assert chart["annotations"][0]["kind"] == "deploy"


def test_gauge_and_status_grid(svc: Services, payload: dict[str, Any]) -> None:
    gauge = payload["widgets"]["gauge"]
    current = evaluator(svc).current("load")
    assert gauge["value"] == current.value
    assert (gauge["min"], gauge["max"]) == (0, 10)
    assert gauge["status"] == current.status.value == "critical"  # b's load passed 8
    assert gauge["thresholds"]["direction"] == "lower_is_better"
    items = {i["name"]: i for i in payload["widgets"]["grid"]["items"]}
    assert items["orders"]["status"] == "warning" and items["load"]["status"] == "critical"
    query = items["max(load_avg)"]
    assert query["value"] == pytest.approx(load("b", NOW))
    assert query["status"] == "critical" and query["status_text"].startswith("Critical: above")


def test_funnels_count_the_events_written(payload: dict[str, Any]) -> None:
    steps = payload["widgets"]["funnel"]["steps"]
    assert [(s["name"], s["count"]) for s in steps] == [
        ("page_view", 4),
        ("cart_view", 3),
        ("purchase", 1),
    ]
    assert steps[2]["rate_from_start"] == 0.25 and steps[2]["rate_from_previous"] == 1 / 3
    kpi_steps = payload["widgets"]["kfunnel"]["steps"]
    assert [(s["name"], s["count"]) for s in kpi_steps] == [("cart_view", 3), ("purchase", 1)]


def test_cohort_retention(payload: dict[str, Any]) -> None:
    cohort = payload["widgets"]["cohort"]
    assert cohort["period"] == "day"
    (row,) = cohort["cohorts"]
    assert row["start"] == D0 + DAY and row["size"] == 2
    assert row["retention"][:2] == [0.0, 0.5]  # u1 bought the next day


def test_tables(payload: dict[str, Any]) -> None:
    table = payload["widgets"]["table"]
    assert table["columns"] == ["KPI", "Value", "Target", "Status", "Change"]
    assert table["rows"][0][:4] == ["Orders", "3", "4", "warning"]
    assert table["links"] == ["/kpis/orders", "/kpis/load"]
    qtable = payload["widgets"]["qtable"]
    assert qtable["columns"] == ["host", "value"]
    assert [r[0] for r in qtable["rows"]] == ["a", "b"]
    assert qtable["rows"][1][1] == pytest.approx(load("b", NOW))


def test_bars(payload: dict[str, Any]) -> None:
    bars = payload["widgets"]["bar"]["bars"]
    assert [b["label"] for b in bars] == ["b", "a"]  # largest first
    assert bars[0]["value"] == pytest.approx(load("b", NOW))
    by_country = {b["label"]: b["value"] for b in payload["widgets"]["kbar"]["bars"]}
    assert by_country == {"de": 2, "fr": 1}  # day 2: u1 and u6 in de, u5 in fr


def test_scatter_regression_matches_numpy(payload: dict[str, Any]) -> None:
    scatter = payload["widgets"]["scatter"]
    points = np.array(scatter["points"])
    assert len(points) >= 60
    slope, intercept = np.polyfit(points[:, 0], points[:, 1], 1)
    assert scatter["regression"]["slope"] == pytest.approx(slope) == pytest.approx(2)
    assert scatter["regression"]["intercept"] == pytest.approx(intercept)
    assert scatter["regression"]["r"] == pytest.approx(1)
    assert "rises" in scatter["finding"]


def test_scatter_step_sets_one_point_per_step(payload: dict[str, Any]) -> None:
    hourly, two_hourly = payload["widgets"]["scatter"], payload["widgets"]["scatter2h"]
    assert abs(len(two_hourly["points"]) - len(hourly["points"]) / 2) <= 1
    assert {tuple(p) for p in two_hourly["points"]} < {tuple(p) for p in hourly["points"]}
    assert two_hourly["regression"]["slope"] == pytest.approx(2)


def test_alert_list_filters_by_label(payload: dict[str, Any]) -> None:
    alerts = payload["widgets"]["alerts"]["alerts"]
    assert [(a["name"], a["severity"], a["state"]) for a in alerts] == [
        ("Down", "critical", "firing")
    ]
    assert alerts[0]["active_at"] == NOW - HOUR and alerts[0]["summary"] == "Down is bad"
    assert alerts[0]["acknowledged"] is True


def test_text_is_rendered_and_html_escaped(payload: dict[str, Any]) -> None:
    html = payload["widgets"]["text"]["html"]
    assert "<strong>Hi</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_widget_filter_and_values_are_json_safe(svc: Services) -> None:
    data = DashboardData(svc.storage, svc.catalog, evaluator(svc), svc.clock)
    try:
        got = data.payload(svc.dashboards.get("all"), NOW - DAY, NOW, ["card", "gauge"])
    finally:
        data.close()
    assert set(got["widgets"]) == {"card", "gauge"}
    assert got["range"]["step"] == 5 * MIN
    for w in got["widgets"].values():
        assert all(v is None or math.isfinite(v) for v in _numbers(w))


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def test_experiment_panel_is_the_readout(svc: Services, payload: dict[str, Any]) -> None:
    from opsmetrics.analysis.experiments import readout
    from opsmetrics.catalog.experiments import load_experiments

    panel = payload["widgets"]["exp"]
    assert panel["title"] == "Button test"
    experiment = load_experiments(svc.catalog.config_dir)["button"]
    assert panel["result"] == readout(svc.storage, experiment, NOW)
    assert panel["result"]["experiment"]["name"] == "button"


def test_forecast_band_follows_the_complete_points(svc: Services, payload: dict[str, Any]) -> None:
    from opsmetrics.analysis.forecast import forecast
    from opsmetrics.dashboards.analysis import as_series, complete

    chart = payload["widgets"]["forecast"]
    points = chart["series"][0]["points"]
    band = chart["forecast"]
    used = complete(points, NOW)
    series = as_series(used)
    assert series is not None
    expected = forecast(series, len(used) // 5)
    assert [p[0] for p in band["points"]] == expected.ts.tolist()
    assert [p[1] for p in band["points"]] == pytest.approx(expected.mean.tolist())
    assert band["points"][0][0] == used[-1][0] + payload["range"]["step"]
    assert band["method"] == expected.method
    assert all(lo <= m <= hi for _, m, lo, hi in band["points"])
    assert chart["anomalies"] == []  # a straight line has none


def test_memo_shares_within_ttl_recomputes_after_and_forgets_failures() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from opsmetrics.dashboards.context import Memo

    clock = FakeClock(NOW)
    memo = Memo(clock)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: memo.get("k", compute, 1000), range(8)))
    assert got == [1] * 8 and len(calls) == 1
    clock.advance(999)
    assert memo.get("k", compute, 1000) == 1
    clock.advance(1)
    assert memo.get("k", compute, 1000) == 2

    def fail() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        memo.get("bad", fail)
    assert memo.get("bad", compute) == 3
