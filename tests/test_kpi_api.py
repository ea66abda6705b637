"""The KPI API and CLI: a small catalog (an event count, a ratio of two event counts, a manual
KPI, a PromQL KPI), data posted through the HTTP ingest API of the real app over real DuckDB,
answers checked against values computed by hand; the CLI against a real server process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from opsmetrics.catalog.kpi_model import Grain
from opsmetrics.catalog.kpi_versions import os_user
from opsmetrics.clock import FakeClock, SystemClock
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings
from opsmetrics.web import kpi_json, kpi_metrics
from opsmetrics.web.app import create_app
from opsmetrics.web.routers import kpis as kpis_router
from opsmetrics.web.routers.kpis import period_floor_ms
from tests.server import ServerProcess, run_bounded

DAY = 86_400_000


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


NOW = ms("2024-06-04T12:00Z")  # a Tuesday, noon
D1, D2, D3 = ms("2024-06-01T00:00Z"), ms("2024-06-02T00:00Z"), ms("2024-06-03T00:00Z")

CATALOG = """\
- name: orders
  title: Orders
  owner: sales
  unit: count
  direction: higher_is_better
  grain: day
  event: {name: purchase, agg: count}
  dimensions: [country]
  target: 3
  thresholds: {warning: 2, critical: 1}
  tags: [shop]
- name: purchase_rate
  title: Purchases per signup
  owner: growth
  level: tactical
  indicator: leading
  unit: percent
  direction: higher_is_better
  ratio:
    numerator: {event: {name: purchase}}
    denominator: {event: {name: signup}}
- name: csat_survey
  title: Survey satisfaction
  owner: cx
  unit: score
  direction: higher_is_better
  manual: true
  target: 4
  thresholds: {warning: 3.5, critical: 3}
- name: api_up
  title: API up
  owner: sre
  unit: ratio
  direction: higher_is_better
  promql: avg(up{job="api"})
"""

# By hand: 2024-06-01 has 2 signups and 1 purchase (DE); 2024-06-02 has 4 signups and
# 3 purchases (2 DE, 1 FR); 2024-06-03 has nothing.
EVENTS = [
    {"name": "signup", "ts": D1 + 3_600_000, "entity": "u1"},
    {"name": "signup", "ts": D1 + 7_200_000, "entity": "u2"},
    {"name": "purchase", "ts": D1 + 9_000_000, "entity": "u1", "props": {"country": "DE"}},
    *({"name": "signup", "ts": D2 + i * 3_600_000, "entity": f"u{3 + i}"} for i in range(4)),
    {"name": "purchase", "ts": D2 + 5_000_000, "entity": "u3", "props": {"country": "DE"}},
    {"name": "purchase", "ts": D2 + 6_000_000, "entity": "u4", "props": {"country": "DE"}},
    {"name": "purchase", "ts": D2 + 7_000_000, "entity": "u5", "props": {"country": "FR"}},
]
# PromQL KPIs are evaluated at each period's end: June 3's value is `up` at June 4, 00:00.
UP_AT = ms("2024-06-03T23:58Z")
SAMPLES = [
    {"name": "up", "labels": {"job": "api", "instance": "a"}, "samples": [[UP_AT, 1]]},
    {"name": "up", "labels": {"job": "api", "instance": "b"}, "samples": [[UP_AT, 0]]},
]


def write_catalog(config_dir: Path, text: str = CATALOG) -> Path:
    (config_dir / "kpis").mkdir(parents=True, exist_ok=True)
    path = config_dir / "kpis" / "shop.yaml"
    path.write_text(text)
    return path


def kpi_app(services: Services) -> FastAPI:
    app = create_app(services)
    if not any(getattr(r, "path", "") == "/api/v1/kpis" for r in app.routes):
        app.include_router(kpis_router.router)  # until the lead wires it in web/app.py
    if not hasattr(app.state, "kpi_values"):
        kpi_metrics.install(app, services)  # likewise
    return app


class Api:
    """The real ASGI app in process, one request at a time from sync tests."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.app = kpi_app(services)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://om.test") as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(send())

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "success"
        return body["data"]

    def error(self, status: int, method: str, path: str, **kwargs: Any) -> str:
        response = self.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        body = response.json()
        assert body["status"] == "error" and set(body) == {"status", "errorType", "error"}
        return str(body["error"])


def open_at(tmp_path: Path, clock: FakeClock) -> Services:
    settings = Settings(
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        limits=Limits(events_late_window_ms=30 * DAY, samples_late_window_ms=DAY),
    )
    return open_services(settings, clock)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    write_catalog(tmp_path / "config")
    services = open_at(tmp_path, FakeClock(NOW))
    try:
        client = Api(services)
        client.ok("POST", "/api/v1/events", content=json.dumps(EVENTS))
        client.ok("POST", "/api/v1/samples", content=json.dumps(SAMPLES))
        yield client
    finally:
        services.close()


# --- the catalog ----------------------------------------------------------------------------
def test_list_without_values_shows_the_definitions(api: Api) -> None:
    data = api.ok("GET", "/api/v1/kpis", params={"values": "false"})
    assert [k["name"] for k in data] == ["api_up", "csat_survey", "orders", "purchase_rate"]
    orders = data[2]
    assert orders == {
        "name": "orders",
        "title": "Orders",
        "owner": "sales",
        "level": "operational",
        "indicator": "lagging",
        "unit": "count",
        "currency": None,
        "decimals": None,
        "direction": "higher_is_better",
        "cadence": "weekly",
        "grain": "day",
        "target": 3.0,
        "thresholds": {"warning": 2.0, "critical": 1.0},
        "tags": ["shop"],
    }
    assert "current" not in orders


def test_show_has_formula_as_written_source_lineage_and_version(api: Api) -> None:
    data = api.ok("GET", "/api/v1/kpis/purchase_rate")
    assert data["formula"] == {
        "ratio": {
            "numerator": {"event": {"name": "purchase"}},
            "denominator": {"event": {"name": "signup"}},
        }
    }
    assert data["source"].endswith("kpis/shop.yaml:12")
    assert data["lineage"] == {
        "inputs": [{"kind": "event", "name": "purchase"}, {"kind": "event", "name": "signup"}],
        "dependents": [],
        "sources": [],  # no SQL source emits these events here (test_sql_sources_e2e.py has one)
    }
    assert data["level"] == "tactical" and data["indicator"] == "leading"
    version = data["version"]
    assert version["version"] == 1 and version["hash"] == data["hash"]
    assert version["recorded"] == "2024-06-04T12:00:00Z"
    assert version["author"] == os_user()
    assert api.ok("GET", "/api/v1/kpis/api_up")["lineage"]["inputs"] == [
        {"kind": "series", "name": 'up{job="api"}'}
    ]
    assert api.ok("GET", "/api/v1/kpis/csat_survey")["formula"] == {"manual": True}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/kpis/ordrs"),
        ("GET", "/api/v1/kpis/ordrs/series"),
        ("GET", "/api/v1/kpis/ordrs/versions"),
        ("POST", "/api/v1/kpis/ordrs/values"),
    ],
)
def test_unknown_kpi_is_404_with_a_suggestion(api: Api, method: str, path: str) -> None:
    message = api.error(404, method, path, content=b'{"value": 1, "author": "a"}')
    assert message == "no KPI named 'ordrs'; did you mean 'orders'?"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"grain": "fortnight"}, "'fortnight'; use one of hour, day, week, month, quarter, year"),
        ({"compare": "lastyear"}, "'lastyear'; use one of previous, wow, mom, qoq, yoy"),
        ({"by": "plan"}, "'plan' is not a dimension of KPI 'orders'; its dimensions are country"),
        ({"tz": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"from": "2024-06-03T00:00:00Z", "to": "2024-06-02T00:00:00Z"}, "must be after"),
        ({"from": "yesterday"}, 'invalid parameter "from"'),
    ],
)
def test_bad_series_parameters_are_400(api: Api, params: dict[str, str], message: str) -> None:
    assert message in api.error(400, "GET", "/api/v1/kpis/orders/series", params=params)


def test_list_values_parameter_must_be_a_boolean(api: Api) -> None:
    assert "use true or false" in api.error(400, "GET", "/api/v1/kpis", params={"values": "x"})


# --- manual values: refusals ----------------------------------------------------------------
def test_manual_values_only_for_manual_kpis(api: Api) -> None:
    message = api.error(400, "POST", "/api/v1/kpis/orders/values", json={"value": 1, "author": "a"})
    assert "only KPIs defined with `manual: true`" in message
    assert "kpis/shop.yaml:1" in message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"value": 4.2}, "missing required field `author`"),
        ({"value": 4.2, "author": " "}, "values[0].author: must not be empty"),
        ({"value": "high", "author": "ana"}, "Expected `float`"),
        ([], "the list is empty"),
        ({"value": 4.2, "author": "ana", "ts": "last week"}, "values[0].ts:"),
        ({"value": 4.2, "author": "ana", "score": 3}, "unknown field `score`"),
    ],
)
def test_bad_manual_values_are_400(api: Api, body: Any, message: str) -> None:
    got = api.error(400, "POST", "/api/v1/kpis/csat_survey/values", json=body)
    assert message in got


# --- versions -------------------------------------------------------------------------------
def test_versions_after_changing_a_file_and_restarting(tmp_path: Path) -> None:
    config = tmp_path / "config"
    write_catalog(config)
    clock = FakeClock(NOW)
    open_at(tmp_path, clock).close()
    write_catalog(config, CATALOG.replace("  target: 3\n", "  target: 5\n"))
    clock.advance(DAY)
    services = open_at(tmp_path, clock)
    try:
        api = Api(services)
        versions = api.ok("GET", "/api/v1/kpis/orders/versions")
        assert [(v["version"], v["recorded"]) for v in versions] == [
            (1, "2024-06-04T12:00:00Z"),
            (2, "2024-06-05T12:00:00Z"),
        ]
        assert {v["author"] for v in versions} == {os_user()}
        assert "-target: 3\n+target: 5\n" in versions[1]["diff"]
        assert versions[0]["diff"].startswith("--- /dev/null\n+++ orders v1\n")
        assert versions[1]["hash"] != versions[0]["hash"]
        shown = api.ok("GET", "/api/v1/kpis/orders")
        assert shown["version"]["version"] == 2 and shown["target"] == 5.0
        assert len(api.ok("GET", "/api/v1/kpis/api_up/versions")) == 1
    finally:
        services.close()


# --- helpers --------------------------------------------------------------------------------
def test_rfc3339_is_utc_with_z() -> None:
    assert kpi_json.rfc3339(D1) == "2024-06-01T00:00:00Z"
    assert kpi_json.rfc3339(D1 + 1) == "2024-06-01T00:00:00.001Z"


@pytest.mark.parametrize(
    ("grain", "tz", "expected"),
    [
        (Grain.HOUR, "UTC", "2024-06-04T12:00:00+00:00"),
        (Grain.DAY, "UTC", "2024-06-04T00:00:00+00:00"),
        (Grain.DAY, "America/New_York", "2024-06-04T00:00:00-04:00"),
        (Grain.WEEK, "UTC", "2024-06-03T00:00:00+00:00"),
        (Grain.MONTH, "Europe/Berlin", "2024-06-01T00:00:00+02:00"),
        (Grain.QUARTER, "UTC", "2024-04-01T00:00:00+00:00"),
        (Grain.YEAR, "Europe/Berlin", "2024-01-01T00:00:00+01:00"),
    ],
)
def test_period_floor(grain: Grain, tz: str, expected: str) -> None:
    assert period_floor_ms(NOW + 1_234_567, grain, tz) == ms(expected)


# --- values ---------------------------------------------------------------------------------
def wilson(hits: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval, written out independently of the evaluator."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return centre - half, centre + half


def series(api: Api, name: str, **params: str) -> dict[str, Any]:
    data: dict[str, Any] = api.ok("GET", f"/api/v1/kpis/{name}/series", params=params)
    return data


JUNE = {"from": "2024-06-01T00:00:00Z", "to": "2024-06-04T00:00:00Z"}


def test_series_answers_in_the_documented_shape(api: Api) -> None:
    data = series(api, "orders", **JUNE)
    assert set(data) == {
        "kpi",
        "grain",
        "tz",
        "version",
        "freshness",
        "points",
        "meta",
        "stale_sources",
    }
    assert (data["kpi"], data["grain"], data["tz"], data["version"]) == ("orders", "day", "UTC", 1)
    assert data["freshness"] == "2024-06-02T01:56:40Z"  # the newest purchase: D2 + 7,000 s
    point_keys = {"t", "value", "target", "status", "compare", "change", "attainment"}
    point_keys |= {"sample_size", "ci", "group", "note"}
    assert all(set(p) == point_keys for p in data["points"])
    # a count without filters cannot leave an event out (tests/test_kpi_exclusions.py)
    assert data["meta"]["excluded"]["total"] == 0


def test_event_count_against_hand_computed_values(api: Api) -> None:
    points = series(api, "orders", **JUNE)["points"]
    got = [(p["t"], p["value"], p["target"], p["status"], p["attainment"]) for p in points]
    assert got == [
        ("2024-06-01T00:00:00Z", 1.0, 3.0, "warning", pytest.approx(1 / 3)),  # 1 < warning 2
        ("2024-06-02T00:00:00Z", 3.0, 3.0, "ok", 1.0),
        ("2024-06-03T00:00:00Z", 0.0, 3.0, "critical", 0.0),  # 0 < critical 1
    ]


def test_epoch_seconds_work_as_from_and_to(api: Api) -> None:
    by_seconds = series(api, "orders", **{"from": str(D1 // 1000), "to": str(D3 // 1000)})
    assert [p["value"] for p in by_seconds["points"]] == [1.0, 3.0]


def test_compare_with_the_previous_period(api: Api) -> None:
    points = series(api, "orders", compare="previous", **JUNE)["points"]
    assert [(p["compare"], p["change"]) for p in points[1:]] == [(1.0, 2.0), (3.0, -1.0)]


def test_breakdown_by_a_dimension(api: Api) -> None:
    points = series(api, "orders", by="country", **JUNE)["points"]
    got = {(p["t"][:10], p["group"]["country"]): p["value"] for p in points if p["value"]}
    assert got == {("2024-06-01", "DE"): 1.0, ("2024-06-02", "DE"): 2.0, ("2024-06-02", "FR"): 1.0}


def test_ratio_with_sample_size_and_wilson_interval(api: Api) -> None:
    points = series(api, "purchase_rate", **JUNE)["points"]
    assert [(p["value"], p["sample_size"]) for p in points[:2]] == [(0.5, 2), (0.75, 4)]
    assert points[0]["ci"] == pytest.approx(list(wilson(1, 2)))
    assert points[1]["ci"] == pytest.approx(list(wilson(3, 4)))
    assert points[2]["value"] is None and points[2]["ci"] is None  # 0 / 0 is no value


def test_default_range_is_the_last_30_periods(api: Api) -> None:
    points = series(api, "orders")["points"]
    assert len(points) == 30
    assert points[0]["t"] == "2024-05-06T00:00:00Z" and points[-1]["t"] == "2024-06-04T00:00:00Z"
    weekly = series(api, "orders", grain="week")
    assert weekly["grain"] == "week" and weekly["points"][-1]["t"] == "2024-06-03T00:00:00Z"
    assert weekly["points"][-2]["value"] == 4.0  # week of Monday 2024-05-27: June 1 and 2


def test_manual_values_round_trip_and_survive_a_restart(tmp_path: Path) -> None:
    write_catalog(tmp_path / "config")
    clock = FakeClock(NOW)
    body = [
        {"value": 4.2, "ts": "2024-06-01T09:00:00Z", "author": "ana", "note": "May survey"},
        {"value": 3.2, "ts": D2 + 3_600_000, "author": "ben", "note": ""},
    ]
    services = open_at(tmp_path, clock)
    try:
        posted = Api(services).ok("POST", "/api/v1/kpis/csat_survey/values", json=body)
        assert posted == {"kpi": "csat_survey", "values": 2}
    finally:
        services.close()
    services = open_at(tmp_path, clock)
    try:
        api = Api(services)
        api.ok("POST", "/api/v1/kpis/csat_survey/values", json={"value": 3.9, "author": "cy"})
        points = series(api, "csat_survey", **{"from": "2024-06-01T00:00:00Z"})["points"]
    finally:
        services.close()
    got = [(p["t"][:10], p["value"], p["status"]) for p in points if p["value"] is not None]
    # 3.2 is below warning 3.5, not below critical 3; 3.9 (no ts: now) is June 4's, not below 3.5
    assert got == [
        ("2024-06-01", 4.2, "ok"),
        ("2024-06-02", 3.2, "warning"),
        ("2024-06-04", 3.9, "ok"),
    ]


def test_list_with_current_values(api: Api) -> None:
    data = {k["name"]: k for k in api.ok("GET", "/api/v1/kpis")}
    # current = the latest complete period: June 3 (NOW is June 4, noon)
    june3 = {"t": "2024-06-03T00:00:00Z", "note": None}
    assert data["api_up"]["current"] == june3 | {"value": 0.5, "target": None}
    assert data["api_up"]["status"] == "ok"  # avg of up (1 and 0); no thresholds to cross
    assert data["orders"]["current"] == june3 | {"value": 0.0, "target": 3.0}
    assert data["orders"]["status"] == "critical"
    assert all(k["error"] is None for k in data.values())


def test_metrics_exports_kpi_gauges(api: Api) -> None:
    value = {"value": 3.2, "author": "ana", "ts": D3 + 3_600_000}  # in June 3: the current period
    api.ok("POST", "/api/v1/kpis/csat_survey/values", json=value)
    text = api.request("GET", "/metrics").text
    assert 'opsmetrics_kpi_value{kpi="api_up"} 0.5' in text
    assert 'opsmetrics_kpi_value{kpi="csat_survey"} 3.2' in text
    assert 'opsmetrics_kpi_target{kpi="csat_survey"} 4.0' in text
    assert 'opsmetrics_kpi_status{kpi="csat_survey"} 1.0' in text  # warning
    assert 'opsmetrics_kpi_status{kpi="orders"} 2.0' in text  # critical: 0 orders on June 3
    assert 'opsmetrics_kpi_status{kpi="api_up"} 0.0' in text  # ok: no thresholds
    assert 'opsmetrics_kpi_target{kpi="api_up"}' not in text  # it has no target


def test_current_values_are_cached_for_a_minute(tmp_path: Path) -> None:
    write_catalog(tmp_path / "config")
    clock = FakeClock(NOW)
    services = open_at(tmp_path, clock)
    try:
        values = kpi_metrics.kpi_values_for(services)
        api = Api(services)
        assert values.current("orders").point.value == 0.0  # type: ignore[union-attr]
        api.ok("POST", "/api/v1/events", json=[{"name": "purchase", "ts": D3 + 1000}])
        clock.advance(59_000)
        assert values.current("orders").point.value == 0.0  # type: ignore[union-attr]
        clock.advance(1_000)
        assert values.current("orders").point.value == 1.0  # type: ignore[union-attr]
    finally:
        services.close()


# --- the CLI against a real server ----------------------------------------------------------
def cli(srv: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "opsmetrics", "kpi", *args, "--url", srv.url]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return run_bounded(command, 60, env)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    write_catalog(tmp_path / "config")
    srv = ServerProcess(tmp_path / "data", tmp_path / "config").start()
    day = period_floor_ms(SystemClock().now_ms(), Grain.DAY, "UTC") - DAY  # yesterday
    try:
        events = [{"name": "purchase", "ts": day + i * 60_000, "entity": f"u{i}"} for i in range(2)]
        response = httpx.post(srv.url + "/api/v1/events", json=events, timeout=10)
        assert response.status_code == 200, response.text
        yield srv, day
    finally:
        srv.kill()


@pytest.mark.clock
@pytest.mark.e2e
def test_cli_list_show_and_values(live: tuple[ServerProcess, int]) -> None:
    srv, day = live
    listed = cli(srv, "list")
    assert listed.returncode == 0, listed.stderr
    assert "KPIs: 4" in listed.stdout
    assert all(name in listed.stdout for name in ("api_up", "csat_survey", "orders"))
    shown = cli(srv, "show", "purchase_rate")
    assert shown.returncode == 0, shown.stderr
    assert "Purchases per signup (purchase_rate)" in shown.stdout
    assert "kpis/shop.yaml:12" in shown.stdout and "event: purchase" in shown.stdout
    start, end = str(day // 1000), str((day + DAY) // 1000)
    raw = cli(srv, "values", "orders", "--from", start, "--to", end, "--json")
    assert raw.returncode == 0, raw.stderr
    points = json.loads(raw.stdout)["data"]["points"]
    assert [(p["t"], p["value"], p["status"]) for p in points] == [
        (kpi_json.rfc3339(day), 2.0, "ok")  # 2 is not below warning 2
    ]
    table = cli(srv, "values", "orders", "--from", start, "--to", end, "--compare", "previous")
    assert table.returncode == 0, table.stderr
    assert "orders by day (UTC)" in table.stdout and kpi_json.rfc3339(day) in table.stdout


@pytest.mark.clock
@pytest.mark.e2e
def test_cli_unknown_kpi_suggests_a_name(live: tuple[ServerProcess, int]) -> None:
    srv, _ = live
    done = cli(srv, "show", "ordrs")
    assert done.returncode == 2
    assert "no KPI named 'ordrs'; did you mean 'orders'?" in done.stderr
