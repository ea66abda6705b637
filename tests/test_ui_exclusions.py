"""The KPI page and the KPI card show the events a KPI's evaluation left out (issue 17), in a
real browser (Debian's Chromium via Playwright) against a real server on a fixed clock: NPS
responses that carry the score as their value, read by an `nps` that expects `props.score`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import FIXED_NOW
from tests.server import ServerProcess
from tests.ui_helpers import Watch, browser_env, chromium_path, wait_loaded

pytestmark = pytest.mark.e2e
DAY = 86_400_000
YESTERDAY = FIXED_NOW - FIXED_NOW % DAY - DAY
CATALOG = """\
- name: nps
  title: Net promoter score
  owner: cx
  unit: score
  direction: higher_is_better
  use: nps
  params: {event: nps_response}
"""
WARNING = "4 of 4 nps_response events excluded: 4 without props.score"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("ui-exclusions")
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "kpis" / "voice.yaml").write_text(CATALOG)
    server = ServerProcess(root / "data", root / "config", now_ms=FIXED_NOW).start()
    try:
        responses = [
            {"name": "nps_response", "ts": YESTERDAY + 60_000 * i, "entity": f"u{i}", "value": s}
            for i, s in enumerate([10, 9, 3, 8])
        ]
        posted = httpx.post(server.url + "/api/v1/events", json=responses, timeout=10)
        assert posted.status_code == 200, posted.text
        yield server
    finally:
        server.kill()


@pytest.fixture
def page(srv: ServerProcess) -> Iterator[Page]:
    chromium = chromium_path()
    assert chromium is not None, "Debian's chromium is not installed: run `make test`"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, args=["--no-sandbox"], env=browser_env()
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.clock.install(time=srv.clock_ms() / 1000)
        yield context.new_page()
        context.close()
        browser.close()


def test_the_kpi_page_shows_the_excluded_events_and_why_there_is_no_value(
    srv: ServerProcess, page: Page
) -> None:
    watch = Watch().attach(page)
    page.goto(f"{srv.url}/kpis/nps")
    wait_loaded(page)
    warnings = page.locator("#kpi-excluded [data-warning=excluded]")
    expect(warnings.first).to_have_text(WARNING)
    expect(warnings.nth(1)).to_contain_text("no value: all 4 nps_response events in the period")
    expect(page.locator("#kpi-summary")).to_contain_text("No values in this range")
    assert not watch.problems, watch.problems


def test_the_kpi_card_shows_the_warning(srv: ServerProcess, page: Page) -> None:
    page.goto(srv.url + "/")
    wait_loaded(page)
    card = page.locator("article.kpi-tile[data-kpi=nps]")
    expect(card.locator("[data-warning=excluded]").first).to_have_text(WARNING)
