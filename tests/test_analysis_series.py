"""Series for analysis (PromQL and KPIs on a real DuckDB), trends and growth, STL, and the HTTP
routes: in process against the real app, and end to end against the real server process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from opsmetrics.analysis.series import DAY_MS, HOUR_MS, Series, fetch_series, grain_for_step
from opsmetrics.analysis.trend import (
    compound_growth_rate,
    decompose,
    growth,
    period_over_period,
    view_window,
)
from opsmetrics.catalog.kpi_model import Grain
from opsmetrics.clock import FakeClock
from opsmetrics.errors import BadDataError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import SampleBatchBuilder
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Limits, Settings
from opsmetrics.web.app import create_app
from tests.server import ServerProcess

T0 = 1_767_571_200_000  # Monday 2026-01-05 00:00 UTC
STEP = 5 * 60_000
NOW = T0 + 30 * DAY_MS
CATALOG = """
kpis:
  - {name: api_requests, title: API requests, unit: count, owner: sre, grain: day,
     direction: higher_is_better, promql: "sum(increase(requests_total[1d]))", target: 1000}
"""


def _traffic(n: int, seed: int) -> np.ndarray:
    t = np.arange(n)
    daily = 1 + 0.4 * np.sin(2 * np.pi * t / (DAY_MS // STEP))
    return 100 * daily * (1 + np.random.default_rng(seed).normal(0, 0.03, n))


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("analysis")
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "kpis" / "ops.yaml").write_text(CATALOG)
    limits = Limits(samples_late_window_ms=60 * DAY_MS)
    settings = Settings(data_dir=root / "data", config_dir=root / "config", limits=limits)
    services = open_services(settings, FakeClock(NOW))
    n = 30 * DAY_MS // STEP
    ts = (T0 + np.arange(n) * STEP).tolist()
    b = SampleBatchBuilder()
    for host, seed in (("a", 1), ("b", 2)):
        labels = (("__name__", "load"), ("host", host))
        b.add_many(b.series_index(labels), ts, _traffic(n, seed).tolist())
    counter = (("__name__", "requests_total"), ("job", "api"))
    b.add_many(b.series_index(counter), ts, (np.arange(n) * 10.0).tolist())  # 10 per 5 min
    services.ingestor.write(WriteRequest("t", samples=DecodedSamples(b.build())))
    yield services
    services.close()


# --- series --------------------------------------------------------------------------------
def test_a_promql_series_has_one_value_per_step(svc: Services) -> None:
    s = fetch_series(
        svc.storage, svc.catalog, svc.clock, 'load{host="a"}', T0, T0 + DAY_MS, HOUR_MS
    )
    assert len(s) == 25 and s.step_ms == HOUR_MS and s.ts.dtype == np.int64
    assert s.ts[0] == T0 and s.ts[-1] == T0 + DAY_MS
    assert s.values[0] == pytest.approx(_traffic(30 * DAY_MS // STEP, 1)[0])


def test_several_series_are_an_error_unless_summed(svc: Services) -> None:
    with pytest.raises(BadDataError, match=r"returns 2 series .* wrap it in sum\(\.\.\.\)"):
        fetch_series(svc.storage, svc.catalog, svc.clock, "load", T0, T0 + DAY_MS, HOUR_MS)
    summed = fetch_series(
        svc.storage, svc.catalog, svc.clock, "load", T0, T0 + DAY_MS, HOUR_MS, reduce="sum"
    )
    single = [
        fetch_series(svc.storage, svc.catalog, svc.clock, f'load{{host="{h}"}}', T0,
                     T0 + DAY_MS, HOUR_MS).values
        for h in "ab"
    ]  # fmt: skip
    np.testing.assert_allclose(summed.values, single[0] + single[1])


def test_a_kpi_series_is_evaluated_per_period_at_the_grain_of_the_step(svc: Services) -> None:
    s = fetch_series(svc.storage, svc.catalog, svc.clock, "api_requests", T0 + DAY_MS,
                     T0 + 4 * DAY_MS, DAY_MS)  # fmt: skip
    assert s.name == "api_requests" and s.unit == "count" and s.step_ms == DAY_MS
    assert list(s.ts) == [T0 + d * DAY_MS for d in (1, 2, 3)]
    np.testing.assert_allclose(s.values, 2880.0, rtol=0.01)  # 288 scrapes × 10 a day
    assert grain_for_step(STEP) is Grain.HOUR and grain_for_step(40 * DAY_MS) is Grain.MONTH


def test_a_range_with_too_many_points_is_refused(svc: Services) -> None:
    with pytest.raises(BadDataError, match='"step"'):
        fetch_series(svc.storage, svc.catalog, svc.clock, "load", T0, NOW, 1000)


# --- trend ---------------------------------------------------------------------------------
def test_growth_rates_on_hand_worked_numbers() -> None:
    s = Series.of([100.0, 110.0, 121.0, 133.1], DAY_MS, T0)
    g = growth(s)
    assert g.period_over_period == pytest.approx(0.10)
    assert g.compound_rate == pytest.approx(0.10)
    weekly = growth(Series.of([100.0, 50.0, 150.0, 200.0], DAY_MS, T0), 2 * DAY_MS)
    assert weekly.previous == 50.0 and weekly.period_over_period == pytest.approx(3.0)
    assert compound_growth_rate(100.0, 400.0, 2) == pytest.approx(1.0)  # doubles twice
    assert np.isnan(compound_growth_rate(0.0, 5.0, 3))
    pop = period_over_period(np.array([2.0, 4.0, 3.0, 0.0, 6.0]), 1)
    np.testing.assert_allclose(pop[1:3], [1.0, -0.25])
    assert np.isnan(pop[0]) and pop[3] == -1.0 and np.isnan(pop[4])  # 6 / 0: no rate


def test_stl_components_add_up_to_the_series() -> None:
    values = _traffic(7 * DAY_MS // STEP, 3) + np.linspace(0, 50, 7 * DAY_MS // STEP)
    values[100:104] = np.nan
    d = decompose(Series.of(values, STEP, T0), DAY_MS // STEP)
    np.testing.assert_allclose(d.trend + d.seasonal + d.remainder, d.observed, atol=1e-9)
    assert d.filled == 4
    assert d.trend[-1] - d.trend[0] == pytest.approx(50, abs=10)  # the ramp is in the trend
    assert np.std(d.seasonal) > 10 * np.std(d.remainder[np.isfinite(values)]) / 3


def test_views_are_a_day_at_5_minutes_and_90_days_at_a_day() -> None:
    assert view_window("short", NOW + 7) == (NOW - DAY_MS, NOW, STEP)
    assert view_window("long", NOW) == (NOW - 90 * DAY_MS, NOW, DAY_MS)
    with pytest.raises(BadDataError, match='"view"'):
        view_window("medium", NOW)


# --- HTTP in process ------------------------------------------------------------------------
def call(svc: Services, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(svc))
        async with httpx.AsyncClient(transport=transport, base_url="http://om.test") as c:
            return await c.request(method, path, **kwargs)

    return asyncio.run(send())


def ok(svc: Services, method: str, path: str, **kwargs: Any) -> Any:
    response = call(svc, method, path, **kwargs)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "success"
    return response.json()["data"]


def test_trend_route_returns_points_growth_and_decomposition(svc: Services) -> None:
    data = ok(svc, "GET", "/api/v1/analysis/trend",
              params={"query": 'load{host="a"}', "start": str((NOW - 7 * DAY_MS) // 1000),
                      "end": str(NOW // 1000), "step": "1h"})  # fmt: skip
    assert len(data["points"]) == 7 * 24 + 1
    assert data["decomposition"]["period"] == 24
    assert set(data["growth"]) >= {"period_over_period", "compound_rate", "slope_per_day"}
    short = ok(svc, "GET", "/api/v1/analysis/trend", params={"kpi": "api_requests",
                                                             "view": "long"})  # fmt: skip
    assert short["step"] == 86400 and short["name"] == "api_requests"


def test_forecast_and_capacity_routes_over_thirty_days_of_5_minute_data(svc: Services) -> None:
    params = {"query": 'load{host="a"}', "step": "5m", "horizon": "1d"}
    started = time.process_time()
    data = ok(svc, "GET", "/api/v1/analysis/forecast", params=params)
    assert len(data["points"]) == 288 and data["method"] and data["mase"] is not None
    t, mean, low, high = data["points"][0]
    assert t == NOW and low <= mean <= high  # the last sample is at NOW - STEP
    got = ok(svc, "GET", "/api/v1/analysis/capacity", params=params | {"limit": "1000"})
    assert got["direction"] == "up" and got["eta"] is None
    assert "not within" in got["explanation"]
    assert time.process_time() - started < 30  # a sanity bound, not a benchmark


def test_anomalies_route_and_posted_numbers(svc: Services) -> None:
    data = ok(svc, "GET", "/api/v1/analysis/anomalies", params={"query": 'load{host="b"}'})
    assert data["threshold"] == 5.0 and isinstance(data["anomalies"], list)
    assert set(data["now"]) == {"anomalous", "score", "explanation"}
    values = [10.0 + (i % 24) for i in range(24 * 10)]
    values[-1] = 90.0
    posted = ok(svc, "POST", "/api/v1/analysis/anomalies",
                json={"values": values, "step": 3600, "start": T0 // 1000})  # fmt: skip
    assert posted["now"]["anomalous"] is True
    assert posted["anomalies"][-1]["ts"] == T0 + (len(values) - 1) * HOUR_MS
    fc = ok(svc, "POST", "/api/v1/analysis/forecast",
            json={"values": values[:-1], "step": 3600, "horizon": 24})  # fmt: skip
    assert fc["season_steps"] == 24 and len(fc["points"]) == 24


def test_outlook_route_uses_the_kpi_target(svc: Services) -> None:
    data = ok(svc, "GET", "/api/v1/analysis/outlook", params={"kpi": "api_requests"})
    assert data["target"] == 1000 and data["direction"] == "higher_is_better"
    assert data["probability"] > 0.9  # 2,880 a day against a target of 1,000


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("GET", "/api/v1/analysis/forecast", {"params": {}}, '"query"'),
        ("GET", "/api/v1/analysis/forecast", {"params": {"query": "load", "kpi": "x"}}, '"query"'),
        ("GET", "/api/v1/analysis/forecast", {"params": {"query": "load"}}, "sum("),
        ("GET", "/api/v1/analysis/capacity", {"params": {"query": 'load{host="a"}'}}, '"limit"'),
        ("GET", "/api/v1/analysis/forecast",
         {"params": {"query": 'load{host="a"}', "step": "soon"}}, '"step"'),
        ("GET", "/api/v1/analysis/anomalies",
         {"params": {"query": 'load{host="a"}', "threshold": "x"}}, '"threshold"'),
        ("POST", "/api/v1/analysis/forecast", {"json": {"values": []}}, '"values"'),
        ("POST", "/api/v1/analysis/forecast", {"content": b"{"}, "invalid body"),
        ("GET", "/api/v1/analysis/outlook", {"params": {"query": "1"}}, '"target"'),
    ],
)  # fmt: skip
def test_bad_requests_are_400_bad_data_naming_the_field(
    svc: Services, method: str, path: str, kwargs: dict[str, Any], field: str
) -> None:
    response = call(svc, method, path, **kwargs)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert field in body["error"]


# --- end to end -----------------------------------------------------------------------------
#: Monday 2026-12-07 00:46 UTC: the spike falls on Sunday 22:00, whose weekend slot once had no
#: baseline in a two-week-old series (tests/README.md, "clock").
MONDAY_0046 = 1_796_604_360_000


@pytest.mark.e2e
def test_forecast_and_anomalies_through_the_real_server(tmp_path: Path) -> None:
    env = {"OPSMETRICS_SAMPLES_LATE_WINDOW": "30d"}
    srv = ServerProcess(tmp_path / "data", env=env, now_ms=MONDAY_0046)
    try:
        srv.start(timeout=120)  # 2 shared cores: a busy machine starts slowly
        now = MONDAY_0046 // HOUR_MS * HOUR_MS
        ts = [now - (24 * 14 - i) * HOUR_MS for i in range(24 * 14)]
        values = [100.0 + 30 * np.sin(2 * np.pi * i / 24) for i in range(len(ts))]
        values[-2] = 400.0  # a spike an hour ago
        body = [{"name": "orders_per_hour", "labels": {"shop": "eu"},
                 "samples": [[t, v] for t, v in zip(ts, values, strict=True)]}]  # fmt: skip
        r = httpx.post(srv.url + "/api/v1/samples", json=body, timeout=30)
        assert r.status_code in (200, 204), r.text
        params = {"query": "orders_per_hour", "start": str(ts[0] // 1000),
                  "end": str(ts[-1] // 1000), "step": "1h"}  # fmt: skip
        fc = httpx.get(srv.url + "/api/v1/analysis/forecast", params=params | {"horizon": "12"},
                       timeout=60).json()  # fmt: skip
        assert fc["status"] == "success" and len(fc["data"]["points"]) == 12
        assert fc["data"]["points"][0][0] == ts[-1] + HOUR_MS
        an = httpx.get(srv.url + "/api/v1/analysis/anomalies", params=params, timeout=60).json()
        flagged = [a["ts"] for a in an["data"]["anomalies"]]
        assert ts[-2] in flagged
        bad = httpx.get(srv.url + "/api/v1/analysis/forecast", params={"kpi": "nope"}, timeout=30)
        assert bad.status_code == 404
        window = ["--start", params["start"], "--end", params["end"], "--step", "1h"]
        cli = subprocess.run(
            [sys.executable, "-m", "opsmetrics", "analyze", "anomalies", "--query",
             "orders_per_hour", *window, "--url", srv.url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert "anomalies in orders_per_hour" in cli.stdout and "400" in cli.stdout
    finally:
        srv.kill()


# --- CLI -----------------------------------------------------------------------------------
def test_cli_reads_a_local_data_dir(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from opsmetrics.cli.analyze import analyze_app

    limits = Limits(samples_late_window_ms=60 * DAY_MS)
    services = open_services(Settings(data_dir=tmp_path / "d", limits=limits), FakeClock(NOW))
    n = 10 * 24
    ts = [NOW - (n - i) * HOUR_MS for i in range(n)]
    b = SampleBatchBuilder()
    values = (50 + 10 * np.sin(2 * np.pi * np.arange(n) / 24) + 0.1 * np.arange(n)).tolist()
    b.add_many(b.series_index((("__name__", "disk_used"),)), ts, values)
    services.ingestor.write(WriteRequest("t", samples=DecodedSamples(b.build())))
    services.close()
    window = ["--start", str(ts[0] // 1000), "--end", str(ts[-1] // 1000), "--step", "1h"]
    common = ["--query", "disk_used", *window, "--data", str(tmp_path / "d")]
    runner = CliRunner()
    done = runner.invoke(analyze_app, ["forecast", *common, "--horizon", "6"])
    assert done.exit_code == 0, done.output
    assert "forecast of disk_used" in done.output and "MASE" in done.output
    done = runner.invoke(analyze_app, ["capacity", *common, "--limit", "1000", "--json"])
    assert done.exit_code == 0, done.output
    assert '"direction": "up"' in done.output
    done = runner.invoke(analyze_app, ["anomalies", *common])
    assert done.exit_code == 0 and "latest point: normal" in done.output, done.output
    done = runner.invoke(analyze_app, ["trend", *common])
    assert done.exit_code == 0 and "compound growth" in done.output, done.output


def test_outlook_forecasts_from_yesterday_to_the_end_of_the_month(svc: Services) -> None:
    data = ok(svc, "GET", "/api/v1/analysis/outlook", params={"kpi": "api_requests"})
    today = NOW - NOW % DAY_MS
    points = data["forecast"]["points"]
    assert points[0][0] == today  # the last value used is yesterday's, a complete day
    assert points[-1][0] == data["period_end"] - DAY_MS  # the period's last day
