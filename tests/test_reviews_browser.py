"""Reviews in Chromium: the KPI page marks a KPI reviewed with its form (CSP: no inline script),
the overview marks tiles whose review is overdue, and /hygiene lists the findings."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page

from opsmetrics.clock import FakeClock
from opsmetrics.services import open_services
from opsmetrics.settings import Settings
from tests.conftest import FIXED_NOW
from tests.server import ServerProcess, wait_until
from tests.test_reviews import DAY, review, write_config
from tests.ui_helpers import chromium_page, visit


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("reviews-ui")
    config = write_config(root)
    services = open_services(
        Settings(data_dir=root / "data", config_dir=config), FakeClock(FIXED_NOW)
    )
    try:
        services.storage.record_review(review("weekly_old", FIXED_NOW - 8 * DAY))
        services.storage.record_review(review("weekly_fresh", FIXED_NOW - 2 * DAY))
        services.storage.record_review(review("signups", FIXED_NOW - 100 * DAY))
    finally:
        services.close()
    server = ServerProcess(root / "data", config_dir=config, now_ms=FIXED_NOW).start(timeout=120)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(srv: ServerProcess) -> Iterator[Page]:
    with chromium_page(srv.clock_ms()) as opened:
        yield opened
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_the_kpi_page_marks_a_kpi_reviewed(page: Page, srv: ServerProcess) -> None:
    watch = visit(page, f"{srv.url}/kpis/weekly_old")
    standing = page.locator("#kpi-review [data-review]")
    assert standing.get_attribute("data-review") == "overdue"
    assert standing.inner_text() == "overdue by 1 day"
    page.fill("#kpi-review-form [name=author]", "browser")
    page.fill("#kpi-review-form [name=note]", "looked at it in Chromium")
    page.click("#kpi-review-form button[type=submit]")
    page.wait_for_selector("#kpi-review [data-review=reviewed]")
    assert page.locator("#kpi-review-result").inner_text() == "Marked reviewed."
    card = page.locator("#kpi-review").inner_text()
    assert "by browser" in card and "looked at it in Chromium" in card
    assert watch.problems == []
    stored = httpx.get(f"{srv.url}/api/v1/kpis/weekly_old/reviews", timeout=30).json()["data"]
    assert stored["reviews"][0]["author"] == "browser"


def test_the_overview_marks_kpis_whose_review_is_due(page: Page, srv: ServerProcess) -> None:
    watch = visit(page, f"{srv.url}/")
    marker = '[data-kpi="orphan"] [data-review]'
    wait_until(lambda: page.locator(marker).count() == 1, "the orphan's review marker")
    assert page.locator(marker).inner_text() == "Review due"
    overdue = page.locator('[data-kpi="signups"] [data-review]')
    assert overdue.inner_text() == "Review overdue by 9 days"  # a quarter after 26 September
    assert page.locator('[data-kpi="weekly_fresh"] [data-review]').count() == 0
    assert watch.problems == []


def test_the_hygiene_page_lists_findings_with_fixes(page: Page, srv: ServerProcess) -> None:
    watch = visit(page, f"{srv.url}/hygiene")
    row = page.locator('#hygiene-findings tr[data-kind="unused"][data-subject="signups"]')
    assert "add signups to a dashboard" in row.locator("td.fix").inner_text()
    owners = page.locator("#hygiene-reviews section[data-owner]")
    assert "(no owner)" in owners.last.inner_text()
    assert watch.problems == []
