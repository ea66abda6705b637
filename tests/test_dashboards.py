"""Dashboards as code (catalog/dashboards.py): loading YAML, JSON and the seed's JSON form,
`file:line: field: message` problems, `opsmetrics validate`, and the HTTP routes end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from opsmetrics.catalog.dashboards import load_dashboards, read_dashboards
from opsmetrics.catalog.kpis import Catalog, load_catalog
from opsmetrics.catalog.validate import EXAMPLE_CONFIG, validate_config_dir
from opsmetrics.errors import ConfigError, NotFoundError
from tests.server import ServerProcess

KPIS = """
- {name: orders, title: Orders, owner: shop, unit: count, direction: higher_is_better,
   event: {name: purchase, agg: count}, target: 2, thresholds: {warning: 1}}
- {name: daily_revenue, title: Daily revenue, owner: shop, unit: currency, currency: EUR,
   direction: higher_is_better, event: {name: purchase, agg: sum, field: value}}
- {name: system_uptime, title: Uptime, owner: sre, unit: percent, direction: higher_is_better,
   promql: 'avg(up)'}
"""
GOOD = """\
title: Shop
audience: operations
refresh: 1m
time_range: 7d
sections:
  - title: Orders
    widgets:
      - type: metric_card
        kpi: orders
      - type: trend_chart
        id: trend
        kpis: [orders, daily_revenue]
        queries: [{expr: 'sum(up)', legend: up}]
  - title: Notes
    widgets:
      - {type: text, markdown: '*hello*'}
"""
SEED = {
    "dashboard_config": {
        "refresh_interval": 300,
        "sections": [
            {
                "name": "Revenue Overview",
                "widgets": [
                    {"type": "metric_card", "metric": "orders", "comparison": "previous_month"},
                    {"type": "trend_chart", "metric": "daily_revenue", "timeframe": "30_days"},
                ],
            },
            {
                "name": "Operational Health",
                "widgets": [
                    {
                        "type": "gauge",
                        "metric": "system_uptime",
                        "thresholds": {"good": 99.5, "warning": 99.0, "critical": 98.0},
                    },
                    {"type": "status_grid", "metrics": ["orders", "system_uptime"]},
                ],
            },
        ],
    }
}


def config(root: Path, **files: str) -> Path:
    (root / "kpis").mkdir(parents=True, exist_ok=True)
    (root / "dashboards").mkdir(exist_ok=True)
    (root / "kpis" / "k.yaml").write_text(KPIS)
    for name, text in files.items():
        (root / "dashboards" / name.replace("__", ".")).write_text(text)
    return root


def catalog(root: Path) -> Catalog:
    return load_catalog(root)


def problems_of(tmp_path: Path, text: str, name: str = "bad__yaml") -> list[str]:
    root = config(tmp_path / "c", **{name: text})
    return read_dashboards(root, catalog(root))[1]


# --- loading --------------------------------------------------------------------------------
def test_yaml_loads_with_ids_defaults_and_lineage(tmp_path: Path) -> None:
    root = config(tmp_path, shop__yaml=GOOD)
    found = load_dashboards(root, catalog(root))
    shop = found.get("shop")
    assert shop.title == "Shop" and shop.spec.refresh == 60_000
    assert shop.spec.time_range == 7 * 86_400_000
    assert [wid for wid, _ in shop.widgets()] == ["s0w0", "trend", "s1w0"]
    assert shop.kpis() == ["orders", "daily_revenue"]
    deps = found.dependents_of("daily_revenue")
    assert [(d.kind, d.name) for d in deps] == [("dashboard", "shop")]
    assert found.dependents_of("system_uptime") == []
    lineage = catalog(root).lineage("orders", [found])
    assert ("dashboard", "shop") in [(d.kind, d.name) for d in lineage.dependents]


def test_json_and_the_seed_form_load(tmp_path: Path) -> None:
    widget = {"type": "gauge", "kpi": "orders"}
    as_json = json.dumps({"title": "J", "sections": [{"widgets": [widget]}]})
    root = config(tmp_path, j__json=as_json, seed__json=json.dumps(SEED, indent=2))
    found = load_dashboards(root, catalog(root))
    assert sorted(found.dashboards) == ["j", "seed"]
    seed = found.get("seed")
    assert seed.spec.refresh == 300_000 and seed.title == "Seed"
    assert [s.title for s in seed.spec.sections] == ["Revenue Overview", "Operational Health"]
    widgets = dict(seed.widgets())
    assert widgets["s0w0"].kpi == "orders" and widgets["s0w0"].compare == "previous_period"
    assert widgets["s0w1"].kpis == ["daily_revenue"] and widgets["s0w1"].range == 30 * 86_400_000
    assert widgets["s1w0"].thresholds.good == 99.5
    assert widgets["s1w1"].kpis == ["orders", "system_uptime"]


def test_seed_problems_point_at_the_line_written(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(SEED))
    broken["dashboard_config"]["sections"][1]["widgets"][1]["metrics"] = ["ordrs"]
    text = json.dumps(broken, indent=2)
    (line,) = problems_of(tmp_path, text, "seed__json")
    number = next(i for i, t in enumerate(text.splitlines(), 1) if '"ordrs"' in t)
    assert line == (
        f"{tmp_path}/c/dashboards/seed.json:{number}: sections[1].widgets[1].kpis[0]: "
        "unknown KPI 'ordrs'; did you mean 'orders'?"
    )


@pytest.mark.parametrize(
    ("widget", "line", "field", "message"),
    [
        ("{type: metric_card, kpi: ordes}", 5, "sections[0].widgets[0].kpi",
         "unknown KPI 'ordes'; did you mean 'orders'?"),
        ("{type: pie, kpi: orders}", 5, "sections[0].widgets[0].type",
         "unknown widget type 'pie'; valid types: metric_card, trend_chart, gauge"),
        ("{type: trend_chart, queries: [{expr: 'sum(rate(x[5m])'}]}", 5,
         "sections[0].widgets[0].queries[0].expr", "invalid PromQL"),
        ("{type: funnel, steps: [a, b], within: soon}", 5, "sections[0].widgets[0].within",
         "'soon' is not a duration"),
        ("{type: metric_card, kpi: orders, colour: red}", 5, "sections[0].widgets[0].colour",
         "unknown field"),
        ("{type: metric_card}", 5, "sections[0].widgets[0]", "give exactly one of `kpi` or"),
        ("{type: funnel, kpi: orders}", 5, "sections[0].widgets[0].kpi",
         "KPI 'orders' is not a conversion KPI"),
        ("{type: experiment, experiment: nope}", 5, "sections[0].widgets[0].experiment",
         "unknown experiment 'nope'; experiments: none"),
    ],
)  # fmt: skip
def test_each_problem_has_file_line_and_field(
    tmp_path: Path, widget: str, line: int, field: str, message: str
) -> None:
    text = f"title: T\nsections:\n  - title: S\n    widgets:\n      - {widget}\n"
    (problem,) = problems_of(tmp_path, text)
    where = f"{tmp_path}/c/dashboards/bad.yaml:{line}: {field}: "
    assert problem.startswith(where), problem
    assert message in problem


def test_bad_document_level_values(tmp_path: Path) -> None:
    text = "title: T\ntime_range: forever\nrefresh: sometimes\nsections: []\n"
    found = problems_of(tmp_path, text)
    assert [p.split(": ", 2)[1] for p in found] == ["time_range", "refresh", "sections"]
    assert found[0].startswith(f"{tmp_path}/c/dashboards/bad.yaml:2: ")
    assert "not a duration" in found[1]


def test_load_raises_config_error_and_unknown_names_404(tmp_path: Path) -> None:
    root = config(tmp_path, shop__yaml=GOOD.replace("kpi: orders", "kpi: nope"))
    with pytest.raises(ConfigError, match=r"shop\.yaml:9: sections\[0\]\.widgets\[0\]\.kpi"):
        load_dashboards(root, catalog(root))
    good = config(tmp_path / "g", shop__yaml=GOOD)
    with pytest.raises(NotFoundError, match="did you mean 'shop'"):
        load_dashboards(good, catalog(good)).get("shp")


def test_example_dashboards_validate() -> None:
    assert validate_config_dir(EXAMPLE_CONFIG) == []
    found = load_dashboards(EXAMPLE_CONFIG, load_catalog(EXAMPLE_CONFIG))
    assert {"executive", "operations", "engineering"} <= set(found.dashboards)
    kinds = {w.type for d in found for _, w in d.widgets()}
    assert {"scatter", "alert_list", "trend_chart", "funnel"} <= kinds


def test_validate_cli_prints_file_line_problems(tmp_path: Path) -> None:
    root = config(tmp_path, ops__yaml=GOOD.replace("kpi: orders", "kpi: ordrs"))
    done = subprocess.run(
        [sys.executable, "-m", "opsmetrics", "validate", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout.strip() == (
        f"{root}/dashboards/ops.yaml:9: sections[0].widgets[0].kpi: "
        "unknown KPI 'ordrs'; did you mean 'orders'?"
    )


# --- HTTP, end to end -----------------------------------------------------------------------
@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServerProcess]:
    root = config(tmp_path / "config", shop__yaml=GOOD)
    srv = ServerProcess(tmp_path / "data", root).start()
    try:
        now = int(time.time() * 1000)
        events = [{"name": "purchase", "ts": now - 60_000 * (i + 1), "entity": f"u{i}",
                   "value": 10.0} for i in range(3)]  # fmt: skip
        assert httpx.post(srv.url + "/api/v1/events", json=events, timeout=10).status_code == 200
        yield srv
    finally:
        srv.kill()


@pytest.mark.clock
@pytest.mark.e2e
def test_routes_list_show_and_data(live: ServerProcess) -> None:
    listed = httpx.get(live.url + "/api/v1/dashboards", timeout=10).json()
    assert listed["data"] == [{"name": "shop", "title": "Shop", "audience": "operations",
                               "description": "", "refresh": 60.0, "time_range": 604800.0,
                               "widgets": 3}]  # fmt: skip
    shown = httpx.get(live.url + "/api/v1/dashboards/shop", timeout=10).json()["data"]
    card = shown["sections"][0]["widgets"][0]
    assert (card["id"], card["type"], card["title"], card["width"]) == (
        "s0w0", "metric_card", "Orders", 3)  # fmt: skip
    params = {"start": "now-1d", "end": "now"}
    url = live.url + "/api/v1/dashboards/shop/data"
    data = httpx.get(url, params=params, timeout=30).json()["data"]
    assert data["range"]["end"] - data["range"]["start"] == 86_400_000
    assert set(data["widgets"]) == {"s0w0", "trend", "s1w0"}
    trend = data["widgets"]["trend"]
    orders = next(s for s in trend["series"] if s["name"] == "orders")
    assert sum(v or 0 for _, v in orders["points"]) == 3
    assert data["widgets"]["s1w0"]["html"] == "<p><em>hello</em></p>\n"


@pytest.mark.clock
@pytest.mark.e2e
def test_routes_widget_filter_and_errors(live: ServerProcess) -> None:
    got = httpx.get(live.url + "/api/v1/dashboards/shop/data",
                    params=[("widget", "trend"), ("widget", "s1w0")], timeout=30)  # fmt: skip
    assert got.status_code == 200 and set(got.json()["data"]["widgets"]) == {"trend", "s1w0"}
    missing = httpx.get(live.url + "/api/v1/dashboards/shpo/data", timeout=10)
    assert missing.status_code == 404 and "did you mean 'shop'" in missing.json()["error"]
    bad = httpx.get(live.url + "/api/v1/dashboards/shop/data", params={"start": "yesterday"})
    assert bad.status_code == 400 and 'invalid parameter "start"' in bad.json()["error"]
    wrong = httpx.get(live.url + "/api/v1/dashboards/shop/data", params={"widget": "zz"})
    assert wrong.status_code == 400 and "s0w0, s1w0, trend" in wrong.json()["error"]


@pytest.mark.e2e
def test_serve_fails_on_a_bad_dashboard(tmp_path: Path) -> None:
    text = GOOD.replace("type: text", "type: txt")
    root = config(tmp_path / "config", shop__yaml=text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "type: txt" in t)
    srv = ServerProcess(tmp_path / "data", root)
    with pytest.raises(RuntimeError) as failed:
        srv.start(timeout=30)
    where = f"{root}/dashboards/shop.yaml:{line}: sections[1].widgets[0].type: unknown widget"
    assert where in str(failed.value)
