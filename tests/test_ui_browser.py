"""The web UI in a real browser (Debian's Chromium via Playwright) against a real server on a
short demo history: every page and example dashboard draws without errors, the time range
drives the data, and an alert can be acknowledged from the page."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect, sync_playwright

from opsmetrics.auth import new_token
from opsmetrics.catalog.validate import EXAMPLE_CONFIG
from opsmetrics.clock import FakeClock
from opsmetrics.services import open_services
from opsmetrics.settings import Settings
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.app import create_app
from opsmetrics.web.routers.ui import module_imports, relative_for
from tests.server import ServerProcess, wait_until
from tests.ui_helpers import (
    CANVAS_PIXELS_JS,
    UI_NOW,
    Watch,
    browser_env,
    chromium_path,
    contract_payloads,
    demo_dirs,
    screenshot,
    wait_loaded,
)

pytestmark = pytest.mark.e2e
CHROMIUM = chromium_path()
DASHBOARDS = ["executive", "operations", "engineering"]
#: Page → the least number of chart canvases and of SVG sparklines it must draw.
PAGES = {
    "/": (0, 5),
    "/kpis/signups": (2, 0),  # values chart + breakdown by dimension
    "/kpis/checkout_conversion_rate": (1, 0),
    "/alerts": (0, 0),
    "/explore?query=sum%20by%20(service)%20(rate(http_requests_total%5B5m%5D))": (1, 0),
}
#: Every sparkline on the page: its label and the coordinate pairs of its drawn line(s).
SPARKLINES_JS = """
() => [...document.querySelectorAll('.spark')].map((box) => ({
  label: box.getAttribute('aria-label') || '',
  role: box.getAttribute('role'),
  pairs: [...box.querySelectorAll('svg path.spark-line')]
    .map((p) => (p.getAttribute('d').match(/-?[0-9.]+ -?[0-9.]+/g) || []).length)
    .reduce((a, b) => a + b, 0),
  widget: box.closest('[data-widget]')?.dataset.widget ?? null,
}))
"""
TREND_LABEL = re.compile(
    r"trend: (?:(?:rising|falling|flat), from .+ to .+ \((?P<n>\d+) points\)|a single value, .+)$"
)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config, data = demo_dirs(tmp_path_factory.mktemp("ui"), UI_NOW)
    srv = ServerProcess(data, config_dir=config, now_ms=UI_NOW)
    try:
        # Generous: the machine may be busy, and a late start is not what this file tests.
        srv.start(timeout=120)
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # A missing browser fails rather than skips: `make test` installs Debian's chromium.
    assert CHROMIUM is not None, (
        "Debian's chromium is not installed: run `make test` (or `apt-get install chromium`)"
    )
    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], env=browser_env()
        )
        yield launched
        launched.close()
    # The Playwright driver's process object may be collected late; collect it now, quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def page(browser: Browser, ui_server: ServerProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # The UI computes its ranges (and a silence's start) from Date.now(): let the page's clock
    # run from the server's current time, not from the machine's.
    context.clock.install(time=ui_server.clock_ms() / 1000)
    opened = context.new_page()
    yield opened
    context.close()


def _visit(page: Page, url: str) -> Watch:
    watch = Watch().attach(page)
    page.goto(url)
    wait_loaded(page)
    return watch


def _drawn_canvases(page: Page) -> list[int]:
    counts: list[int] = page.evaluate(CANVAS_PIXELS_JS)
    return counts


def _sparklines(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate(SPARKLINES_JS)
    return found


def _assert_drawn_sparklines(sparks: list[dict[str, Any]], least_points: int = 1) -> None:
    """Every sparkline says its trend in words and drew a point for every value it names
    (a KPI with one value in the range draws a dot)."""
    unlabelled = [s for s in sparks if s["role"] != "img" or not TREND_LABEL.search(s["label"])]
    assert unlabelled == [], unlabelled
    for spark in sparks:
        named = TREND_LABEL.search(spark["label"])
        values = int(named["n"]) if named and named["n"] else 1
        assert spark["pairs"] == values >= least_points, spark


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", urlparse(path).path.lower()).strip("-") or "overview"


@pytest.mark.parametrize("path", list(PAGES))
def test_page_loads_and_draws(ui_server: ServerProcess, page: Page, path: str) -> None:
    watch = _visit(page, ui_server.url + path)
    page.wait_for_load_state("networkidle")
    counts = _drawn_canvases(page)
    sparks = _sparklines(page)
    screenshot(page, _slug(path))
    assert watch.problems == []
    assert page.locator("#page-error").is_hidden()
    least_canvases, least_sparks = PAGES[path]
    assert len(counts) >= least_canvases
    assert all(n > 0 for n in counts), counts
    assert len(sparks) >= least_sparks
    _assert_drawn_sparklines(sparks)


#: Dashboard sections drawn from live collectors only (no simulated history).
LIVE_ONLY = {"Host (node_exporter series)"}

#: The widget ids of trend charts none of whose series has a value.
EMPTY_TRENDS_JS = """
() => [...document.querySelectorAll('.widget-trend_chart')].filter((card) => {
  const chart = echarts.getInstanceByDom(card.querySelector('.chart'));
  return !chart.getOption().series.some((s) => (s.data || []).some((p) => p && p[1] != null));
}).map((card) => card.dataset.widget)
"""


@pytest.mark.parametrize("name", DASHBOARDS)
def test_example_dashboard_renders_every_widget(
    ui_server: ServerProcess, page: Page, name: str
) -> None:
    watch = _visit(page, f"{ui_server.url}/dashboards/{name}")
    counts = _drawn_canvases(page)
    screenshot(page, f"dashboard-{name}")
    definition = httpx.get(f"{ui_server.url}/api/v1/dashboards/{name}").json()["data"]
    ids = [w["id"] for s in definition["sections"] for w in s["widgets"]]
    assert watch.problems == []
    assert page.locator(".widget").count() == len(ids)
    errors = page.locator(".widget-error").all_inner_texts()
    assert errors == [], errors
    assert counts and all(n > 0 for n in counts), counts
    # The host collector's section shows this machine live (the demo history has no node_*
    # series; tests/test_host_collector.py checks that section draws from a running collector).
    live = {
        w["id"] for s in definition["sections"] if s["title"] in LIVE_ONLY for w in s["widgets"]
    }
    # Every trend chart drew some series with values, not just axes.
    empty = [w for w in page.evaluate(EMPTY_TRENDS_JS) if w not in live]
    assert empty == [], f"trend charts without values: {empty}"
    # Every metric card drew its sparkline (inline SVG, no chart instance of its own).
    widgets = [w for s in definition["sections"] for w in s["widgets"] if w["id"] not in live]
    cards = [w["id"] for w in widgets if w["type"] == "metric_card"]
    sparks = _sparklines(page)
    assert cards and sorted(s["widget"] for s in sparks) == sorted(cards)
    _assert_drawn_sparklines(sparks, least_points=2)


#: Every Content-Security-Policy violation the page reports, from its first script on.
CSP_WATCH_JS = """
window.cspViolations = [];
window.cspWatched = true;
document.addEventListener('securitypolicyviolation', (e) => {
  window.cspViolations.push(`${e.violatedDirective}: ${e.blockedURI || 'inline'} ${e.sample}`);
});
"""


@pytest.mark.parametrize("path", ["/", "/kpis/signups", "/alerts", "/dashboards/executive"])
def test_pages_draw_under_the_csp_without_violations(
    ui_server: ServerProcess, page: Page, path: str
) -> None:
    page.add_init_script(CSP_WATCH_JS)
    watch = _visit(page, ui_server.url + path)
    response = httpx.get(ui_server.url + path)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    charts = page.locator(".chart canvas")
    if charts.count():  # a tooltip: ECharts writes its HTML with inline style attributes
        box = charts.first.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
        page.wait_for_timeout(300)
    assert page.evaluate("window.cspViolations") == []
    assert watch.problems == []
    counts = _drawn_canvases(page)  # the charts still draw
    assert all(n > 0 for n in counts), counts
    assert page.evaluate("window.cspWatched") is True  # the listener did run


def test_unknown_dashboard_is_a_404_page(ui_server: ServerProcess, page: Page) -> None:
    response = page.goto(f"{ui_server.url}/dashboards/no-such-board")
    assert response is not None and response.status == 404
    expect(page.locator("main")).to_contain_text("no dashboard named 'no-such-board'")


def _data_start(url: str) -> str:
    return parse_qs(urlparse(url).query)["start"][0]


#: The x values (ms) of the first series of every trend chart, as ECharts holds them.
TREND_X_JS = """
() => [...document.querySelectorAll('.widget-trend_chart .chart')].map((el) => {
  const series = echarts.getInstanceByDom(el).getOption().series;
  return (series[0].data || []).map((p) => p[0]);
})
"""


#: The ECharts instance id of every chart box, by widget.
CHART_IDS_JS = """
() => [...document.querySelectorAll('.widget .chart')].map((el) =>
  [el.closest('.widget').dataset.widget, echarts.getInstanceByDom(el)?.id ?? null])
"""


def _trend_xs(page: Page) -> list[list[float]]:
    xs: list[list[float]] = page.evaluate(TREND_X_JS)
    return xs


def test_time_range_picker_changes_the_data(ui_server: ServerProcess, page: Page) -> None:
    base = f"{ui_server.url}/dashboards/executive"
    # Without `from`, the dashboard's own time_range applies.
    with page.expect_response(lambda r: "/data?" in r.url) as default:
        page.goto(base)
    definition = httpx.get(f"{ui_server.url}/api/v1/dashboards/executive").json()["data"]
    assert _data_start(default.value.url) == f"now-{int(definition['time_range']) // 86400}d"
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url) if "/api/" in r.url else None)
    with page.expect_response(lambda r: "/data?" in r.url) as first:
        page.goto(base + "?from=now-7d&to=now")
    wait_loaded(page)
    # The definition comes with the page: one API request, for the data, asked once.
    assert len(requested) == 1 and "/api/v1/dashboards/executive/data?" in requested[0], requested
    before = _trend_xs(page)
    charts_before = page.evaluate(CHART_IDS_JS)
    with page.expect_response(lambda r: "/data?" in r.url) as second:
        page.get_by_role("button", name="Last 1 hour").click()
    page.wait_for_function("() => !document.getElementById('dashboard').ariaBusy")
    page.wait_for_timeout(100)
    assert _data_start(first.value.url) == "now-7d"
    assert _data_start(second.value.url) == "now-1h"
    assert "from=now-1h" in page.url
    pressed = "aria-pressed"
    expect(page.get_by_role("button", name="Last 1 hour")).to_have_attribute(pressed, "true")
    expect(page.get_by_role("button", name="Last 7 days")).to_have_attribute(pressed, "false")
    after = _trend_xs(page)
    assert len(after) == len(before) > 0
    # The charts were updated in place (the same ECharts instances), not made anew.
    assert page.evaluate(CHART_IDS_JS) == charts_before
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if a and b]
    assert pairs
    # Every drawn trend now starts later (a shorter range ending now).
    assert all(min(a) > min(b) for b, a in pairs), pairs
    # Links keep the range.
    assert "from=now-1h" in (page.locator("a.brand").get_attribute("href") or "")


def test_custom_range_form_appears_on_opening(ui_server: ServerProcess, page: Page) -> None:
    _visit(page, f"{ui_server.url}/dashboards/operations?from=now-6h&to=now")
    # Made on first opening only (date inputs are costly): closed, there is no form.
    assert page.locator("form.range-custom").count() == 0
    page.locator("summary", has_text="Custom").click()
    form = page.locator("form.range-custom")
    expect(form).to_be_visible()
    assert form.locator("input[name=from]").input_value()  # filled with the current range
    form.locator("input[name=from]").fill("2026-01-01T00:00")
    form.locator("input[name=to]").fill("2026-01-02T00:00")
    with page.expect_response(lambda r: "/data?" in r.url) as answer:
        form.get_by_role("button", name="Apply").click()
    # The local times, sent as RFC 3339 (UTC) and kept in the URL.
    expected = page.evaluate("new Date('2026-01-01T00:00').toISOString()")
    assert _data_start(answer.value.url) == expected
    assert parse_qs(urlparse(page.url).query)["from"] == [expected]


def test_alert_can_be_acknowledged_from_the_page(ui_server: ServerProcess, page: Page) -> None:
    watch = _visit(page, ui_server.url + "/alerts")
    firing = page.locator('section[data-group="firing"] tr', has_text="UiTestAlwaysFiring")
    # The rule evaluates every second: reload until the alert shows up as firing.
    for _ in range(20):
        if firing.count():
            break
        page.wait_for_timeout(500)
        page.reload()
        wait_loaded(page)
    firing.get_by_role("button", name="Acknowledge UiTestAlwaysFiring").click()
    acked = page.locator('section[data-group="acknowledged"] tr', has_text="UiTestAlwaysFiring")
    expect(acked).to_have_count(1)
    screenshot(page, "alerts-acknowledged")
    alerts = httpx.get(ui_server.url + "/api/v1/alerts").json()["data"]["alerts"]
    ours = [a for a in alerts if a["labels"]["alertname"] == "UiTestAlwaysFiring"]
    assert ours and ours[0]["status"]["acknowledged"] is True
    assert watch.problems == []


def test_explore_shows_query_errors_inline(ui_server: ServerProcess, page: Page) -> None:
    watch = Watch(allow_status={400}).attach(page)
    page.goto(ui_server.url + "/explore")
    wait_loaded(page)
    page.get_by_label("PromQL expression").fill("sum(rate(http_requests_total[5m])")
    page.get_by_role("button", name="Run query").click()
    error = page.locator("#query-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("unclosed")
    assert [p for p in watch.problems if "console error" not in p] == []


def test_theme_toggle_is_remembered(ui_server: ServerProcess, page: Page) -> None:
    page.emulate_media(color_scheme="light")
    _visit(page, ui_server.url + "/alerts")
    page.locator("#theme-toggle").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.reload()
    wait_loaded(page)
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 20, 24)"
    screenshot(page, "alerts-dark")


def test_keyboard_reaches_the_skip_link_first(ui_server: ServerProcess, page: Page) -> None:
    _visit(page, ui_server.url + "/alerts")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


# --- in-process checks of the page router (no browser) ----------------------------------
class Client:
    """GET against the app in this process (httpx's ASGI transport), on a thread of its own:
    Playwright's sync API keeps an event loop running on this one."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await http.get(url, **kwargs)

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, send()).result()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[Client, dict[Scope, str]]]:
    services = open_services(
        Settings(data_dir=tmp_path / "data", config_dir=EXAMPLE_CONFIG), FakeClock()
    )
    secrets = {}
    for scope in (Scope.READ, Scope.INGEST):
        token = new_token(scope.value, scope, 0)
        services.tokens.add(token.record)
        secrets[scope] = token.secret
    try:
        yield Client(create_app(services)), secrets
    finally:
        services.close()


def test_pages_need_a_read_token_by_header_or_cookie(
    client: tuple[Client, dict[Scope, str]],
) -> None:
    http, secrets = client
    anonymous = http.get("/")
    assert anonymous.status_code == 401
    assert 'id="login-form"' in anonymous.text
    ingest_only = {"Authorization": f"Bearer {secrets[Scope.INGEST]}"}
    assert http.get("/", headers=ingest_only).status_code == 403
    by_cookie = http.get("/alerts", headers={"Cookie": f"opsmetrics_token={secrets[Scope.READ]}"})
    assert by_cookie.status_code == 200 and "pages/alerts.js" in by_cookie.text
    by_header = http.get(
        "/dashboards/executive", headers={"Authorization": f"Bearer {secrets[Scope.READ]}"}
    )
    assert by_header.status_code == 200 and 'data-dashboard="executive"' in by_header.text


def test_dashboard_page_carries_its_definition_and_preloads_its_modules(
    client: tuple[Client, dict[Scope, str]],
) -> None:
    http, secrets = client
    auth = {"Authorization": f"Bearer {secrets[Scope.READ]}"}
    page = http.get("/dashboards/executive", headers=auth).text
    api = http.get("/api/v1/dashboards/executive", headers=auth).json()["data"]
    embedded = re.search(
        r'<script type="application/json" id="dashboard-definition">(.*?)</script>', page, re.S
    )
    assert embedded is not None and json.loads(embedded.group(1)) == api
    # The early data request asks for the dashboard's own range by default.
    assert 'data-default-from="now-30d"' in page and api["time_range"] == 30 * 86400
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/js/([^"]+)">', page))
    # Every module the page imports, also indirectly (format.js through charts.js).
    assert {"api.js", "charts.js", "widgets.js", "format.js", "spark.js"} <= preloaded
    for module in preloaded:
        assert http.get(f"/static/js/{module}").status_code == 200, module
    # The chart library runs after the page's module; pages without charts leave it out.
    assert page.index("pages/dashboard.js") < page.index('defer id="echarts-script"')
    assert "echarts.min.js" not in http.get("/alerts", headers=auth).text


def test_relative_for_and_module_imports() -> None:
    assert relative_for(30 * 86400) == "now-30d"
    assert relative_for(21600.0) == "now-6h"
    assert relative_for(90 * 60) == "now-90m"
    assert relative_for(90) == "now-90s"
    assert relative_for(None) == "now-24h"
    imports = module_imports("pages/overview.js")
    assert "spark.js" in imports and "format.js" in imports and "charts.js" not in imports
    assert module_imports("pages/no-such-page.js") == ()


def test_unknown_kpi_page_is_404_and_static_files_are_cached(
    client: tuple[Client, dict[Scope, str]],
) -> None:
    http, secrets = client
    auth = {"Authorization": f"Bearer {secrets[Scope.READ]}"}
    missing = http.get("/kpis/ordrs", headers=auth)
    assert missing.status_code == 404 and "did you mean" in missing.text
    module = http.get("/static/js/format.js")
    assert module.status_code == 200
    assert module.headers["cache-control"] == "public, max-age=300"
    assert "javascript" in module.headers["content-type"]
    vendor = http.get("/static/vendor/echarts.min.js")
    assert vendor.headers["cache-control"] == "public, max-age=604800"
    assert http.get("/static/js/nope.js").status_code == 404


def test_silence_can_be_created_from_the_page(ui_server: ServerProcess, page: Page) -> None:
    watch = _visit(page, ui_server.url + "/alerts")
    page.get_by_label("Value").fill("UiTestNoSuchAlert")
    page.get_by_label("Created by").fill("ui-test")
    page.get_by_label("Comment").fill("browser test")
    page.get_by_role("button", name="Create silence").click()
    expect(page.locator("#silence-result")).to_contain_text("created")
    expect(page.locator("#silence-list")).to_contain_text('alertname="UiTestNoSuchAlert"')
    silences = httpx.get(ui_server.url + "/api/v1/silences").json()["data"]
    ours = [s for s in silences if s["createdBy"] == "ui-test"]
    assert len(ours) == 1 and ours[0]["comment"] == "browser test"
    assert ours[0]["matchers"][0]["value"] == "UiTestNoSuchAlert"
    assert watch.problems == []


#: Render every contract payload with the page's own modules; report what each drew.
RENDER_ALL_JS = """
async (payloads) => {
  const { renderWidget } = await import('/static/js/widgets.js');
  const root = document.getElementById('main');
  const grid = document.createElement('div');
  grid.className = 'grid';
  root.replaceChildren(grid);
  const out = {};
  for (const [type, payload] of Object.entries(payloads)) {
    const { card, draw } = renderWidget({ id: type, type, width: 6 }, payload);
    grid.append(card);
    draw();
    const chart = card.querySelector('.chart');
    const instance = chart && echarts.getInstanceByDom(chart);
    const line = card.querySelector('.spark svg path.spark-line');
    out[type] = {
      text: card.innerText,
      series: instance ? instance.getOption().series.length : 0,
      spark: line ? (line.getAttribute('d').match(/-?[0-9.]+ -?[0-9.]+/g) || []).length : 0,
      sparkLabel: card.querySelector('.spark')?.getAttribute('aria-label') ?? null,
    };
  }
  out.errored = renderWidget({ id: 'x', type: 'bar' }, { type: 'bar', error: 'boom: bad query' })
    .card.innerText;
  return out;
}
"""


def test_every_widget_type_renders_a_contract_payload(ui_server: ServerProcess, page: Page) -> None:
    watch = _visit(page, ui_server.url + "/explore")
    payloads = contract_payloads(1_795_000_000_000)
    drawn = page.evaluate(RENDER_ALL_JS, payloads)
    page.wait_for_timeout(100)
    counts = _drawn_canvases(page)
    screenshot(page, "widgets-contract")
    assert watch.problems == []
    # trend, gauge, funnel, cohort, bar, scatter (the metric card's sparkline is an SVG)
    assert all(n > 0 for n in counts) and len(counts) >= 6, counts
    # trend: value + previous + 3 forecast layers + anomalies
    assert drawn["trend_chart"]["series"] == 6
    assert "On target" in drawn["metric_card"]["text"]
    points = payloads["metric_card"]["sparkline"]
    assert drawn["metric_card"]["spark"] == len(points)  # one line through every point
    assert drawn["metric_card"]["series"] == 0  # no chart instance for a sparkline
    assert TREND_LABEL.search(drawn["metric_card"]["sparkLabel"]), drawn["metric_card"]
    assert "trend: rising, from" in drawn["metric_card"]["sparkLabel"]
    assert "Warning: below 99.9 %" in drawn["gauge"]["text"]
    assert "Critical: down" in drawn["status_grid"]["text"]
    assert "Slower pages convert less." in drawn["scatter"]["text"]
    assert drawn["scatter"]["series"] == 2  # points + regression line
    assert "HighLatency" in drawn["alert_list"]["text"]
    assert "Read me" in drawn["text"]["text"]
    assert "No result yet." in drawn["experiment"]["text"]
    assert "boom: bad query" in drawn["errored"]


def test_kpi_page_lineage_names_its_sql_source(ui_server: ServerProcess, page: Page) -> None:
    """The refunds KPI comes from the demo's shop database (issue 19): its page names the SQL
    source with a link to /sources, its driver, the table it reads and its last run."""

    def ran() -> bool:
        sources = httpx.get(f"{ui_server.url}/api/v1/sources").json()["data"]
        return any(s["name"] == "shop_refunds" and s["rows_total"] > 0 for s in sources)

    wait_until(ran, "the shop_refunds source to store rows", timeout_s=60)
    watch = _visit(page, ui_server.url + "/kpis/refunds")
    item = page.locator('#kpi-lineage-sources li[data-source="shop_refunds"]')
    text = item.inner_text()
    screenshot(page, "kpi-refunds")
    assert watch.problems == []
    assert "(sqlite) reads refunds into refund" in text and "up · last success" in text, text
    assert item.locator("a").get_attribute("href") == "/sources"


# --- /reports (issue 18) ------------------------------------------------------------------
DEMO_REPORTS = {"executive-daily", "operations-hourly", "engineering-daily"}
#: An instant as the report's period names it: "Sun 6 Dec 2026, 13:00" in Europe/Berlin.
BERLIN_JS = """
(at) => {
  const format = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', weekday: 'short',
    day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit',
    hourCycle: 'h23' });
  const p = Object.fromEntries(format.formatToParts(new Date(at)).map((x) => [x.type, x.value]));
  return `${p.weekday} ${p.day} ${p.month} ${p.year}, ${p.hour}:${p.minute}`;
}
"""


def test_reports_page_lists_previews_and_sends_the_demo_reports(
    ui_server: ServerProcess, page: Page
) -> None:
    page.add_init_script(CSP_WATCH_JS)
    watch = _visit(page, ui_server.url + "/reports")
    listed = httpx.get(ui_server.url + "/api/v1/reports").json()["data"]
    assert {r["name"] for r in listed} == DEMO_REPORTS
    expect(page.locator("#reports-table tbody tr")).to_have_count(3)
    for report in listed:  # the next slot as the API gives it, in the report's time zone
        row = page.locator(f'tr[data-report="{report["name"]}"]')
        assert row.locator("time").get_attribute("data-ms") == str(report["next"][0]["ms"])
        expect(row).to_contain_text(report["timezone"])
        expect(row).to_contain_text(report["title"])
    expect(page.locator('nav a[aria-current="page"]')).to_have_text("Reports")
    kpis = httpx.get(ui_server.url + "/api/v1/kpis?values=false").json()["data"]
    # Previewed for another instant: the `at` input is local time, sent in UTC, and the window
    # (the hour before it) is told in the report's zone.
    page.get_by_label("Preview as of (your local time; empty for now)").fill("2026-12-06T12:00")
    page.get_by_role("button", name="Preview Operations, last hour").click()
    frame = page.frame_locator("#preview-frame")
    expect(frame.locator("h1")).to_have_text("Operations, last hour", timeout=30_000)
    at = parse_qs(urlparse(page.locator("#preview-frame").get_attribute("src") or "").query)["at"]
    assert at == [page.evaluate("new Date('2026-12-06T12:00').toISOString()")]
    berlin = page.evaluate(BERLIN_JS, at[0])
    expect(frame.locator(".period")).to_contain_text(f"– {berlin} (Europe/Berlin)")
    shown = set(frame.locator(".kpi h3").all_inner_texts())  # the KPIs', then the charts'
    assert len(shown & {k["title"] for k in kpis}) >= 3, shown
    assert page.locator("#preview-frame").get_attribute("sandbox") == ""
    assert parse_qs(urlparse(page.url).query)["report"] == ["operations-hourly"]
    assert "format=pdf" in (page.locator("#preview-pdf").get_attribute("href") or "")
    screenshot(page, "reports-preview")
    # Nothing was sent by the preview; "Send now" (no tokens here: everyone is admin) is.
    assert httpx.get(ui_server.url + "/api/v1/reports/operations-hourly/runs").json()["data"] == []
    page.get_by_role("button", name="Send now").click()
    run_id = page.locator("#send-result code[data-run-id]")
    expect(run_id).to_be_visible(timeout=30_000)
    runs = httpx.get(ui_server.url + "/api/v1/reports/operations-hourly/runs").json()["data"]
    assert [r["run_id"] for r in runs] == [run_id.inner_text()]
    assert runs[0]["trigger"] == "manual"
    row = page.locator('tr[data-report="operations-hourly"]')
    expect(row.locator("[data-deliveries]")).to_contain_text("slack: skipped")
    expect(page.locator(f'#runs-table tr[data-run="{runs[0]["run_id"]}"]')).to_have_count(1)
    screenshot(page, "reports-sent")
    assert page.evaluate("window.cspViolations") == []
    # The test's own CSP watcher is injected into every frame: the preview's sandbox stops it.
    sandboxed = "because the document's frame is sandboxed and the 'allow-scripts' permission"
    assert [p for p in watch.problems if sandboxed not in p] == []
