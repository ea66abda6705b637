"""The initiative pages in Chromium: /initiatives lists them, /initiatives/{name} shows the
verdict and draws the KPI against its counterfactual; the KPI page still loads cleanly with
the initiative's start marked on its chart."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from opsmetrics.clock import FakeClock
from opsmetrics.services import open_services
from opsmetrics.settings import Settings
from tests.conftest import FIXED_NOW
from tests.server import ServerProcess
from tests.test_initiatives_api import _values, write_config
from tests.ui_helpers import CANVAS_PIXELS_JS, chromium_page, visit

#: The names of the marked lines of the KPI chart (annotations and the target).
MARKS_JS = """
() => echarts.getInstanceByDom(document.getElementById('kpi-chart'))
  .getOption().series[0].markLine.data.map((d) => d.name)
"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("initiative-ui")
    config = write_config(root)
    settings = Settings(data_dir=root / "data", config_dir=config)
    services = open_services(settings, FakeClock(FIXED_NOW))
    try:
        for v in [*_values("signup_rate", 0.10, 1), *_values("other_rate", 0.0, 2)]:
            services.storage.record_manual_kpi_value(v)
    finally:
        services.close()
    srv = ServerProcess(root / "data", config_dir=config, now_ms=FIXED_NOW).start(timeout=120)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(ui: ServerProcess) -> Iterator[Page]:
    with chromium_page(ui.clock_ms()) as opened:
        yield opened
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_the_list_links_to_the_impact_page(page: Page, ui: ServerProcess) -> None:
    watch = visit(page, f"{ui.url}/initiatives")
    link = page.locator("#initiatives a", has_text="onboarding_emails")
    assert link.get_attribute("href") == "/initiatives/onboarding_emails"
    assert watch.problems == []


def test_the_impact_page_shows_the_verdict_and_draws_the_chart(
    page: Page, ui: ServerProcess
) -> None:
    watch = visit(page, f"{ui.url}/initiatives/onboarding_emails")
    card = page.locator('section[data-kpi="signup_rate"]')
    assert card.locator("[data-verdict]").inner_text().strip() == "improved"
    assert "Expected +10.0%" in card.inner_text()
    drawn: list[int] = page.evaluate(CANVAS_PIXELS_JS)
    assert drawn and all(n > 1000 for n in drawn), drawn
    assert watch.problems == []


def test_the_kpi_page_loads_with_the_initiative(page: Page, ui: ServerProcess) -> None:
    watch = visit(page, f"{ui.url}/kpis/signup_rate?from=now-60d")
    assert watch.problems == []
    drawn: list[int] = page.evaluate(CANVAS_PIXELS_JS)
    assert drawn and drawn[0] > 1000, drawn
    marks = page.evaluate(MARKS_JS)
    assert "Initiative: Onboarding emails" in marks, marks
