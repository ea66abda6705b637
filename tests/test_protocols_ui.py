"""The alerts page's timeline panel in Debian's Chromium: open it for a firing alert, see the
protocol checklist, mark a step done, run a manual action against a local receiver."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.receivers import Receiver, receiver
from tests.server import ServerProcess, wait_until
from tests.ui_helpers import UI_NOW, Watch, browser_env, chromium_path, screenshot, wait_loaded

pytestmark = pytest.mark.e2e
CHROMIUM = chromium_path()
RULES = """
groups:
  - name: ui
    interval: 1s
    rules:
      - alert: UiCheckoutDown
        expr: vector(1) > 0
        labels: {severity: critical, service: checkout}
        annotations: {summary: "checkout is down"}
"""
PROTOCOLS = """
protocols:
  - name: checkout-down
    title: Checkout is down
    match: {alertname: UiCheckoutDown}
    team: payments
    response_time: {critical: 10m}
    steps:
      - {title: Look at the errors, query: 'vector(1)'}
      - {title: Open the dashboard, link: /dashboards/engineering}
    actions:
      - {name: restart-checkout, url: "%s/restart", body: '{"service": "{{ $labels.service }}"}'}
"""


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


@pytest.fixture
def ui_server(tmp_path: Path, hook: Receiver) -> Iterator[ServerProcess]:
    config = tmp_path / "config"
    (config / "rules").mkdir(parents=True)
    (config / "protocols").mkdir()
    (config / "rules" / "ui.yaml").write_text(RULES)
    (config / "protocols" / "ui.yaml").write_text(PROTOCOLS % hook.url)
    srv = ServerProcess(tmp_path / "data", config_dir=config, now_ms=UI_NOW)
    try:
        srv.start(timeout=120)
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def page(ui_server: ServerProcess) -> Iterator[Page]:
    assert CHROMIUM is not None, "Debian's chromium is not installed: run `make test`"
    with sync_playwright() as pw:
        browser: Browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], env=browser_env()
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.clock.install(time=ui_server.clock_ms() / 1000)
        yield context.new_page()
        browser.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _fired(srv: ServerProcess) -> bool:
    alerts = httpx.get(srv.url + "/api/v1/alerts").json()["data"]["alerts"]
    fps = [a["fingerprint"] for a in alerts if a["state"] == "firing"]
    return bool(fps) and httpx.get(srv.url + f"/api/v1/alerts/{fps[0]}/timeline").is_success


def test_the_timeline_panel_marks_steps_and_runs_actions(
    ui_server: ServerProcess, page: Page, hook: Receiver
) -> None:
    wait_until(lambda: _fired(ui_server), "the alert firing with a timeline")
    watch = Watch().attach(page)
    page.goto(ui_server.url + "/alerts")
    wait_loaded(page)
    page.get_by_role("button", name="Timeline of UiCheckoutDown").click()
    panel = page.locator("#timeline-panel")
    expect(panel).to_contain_text("Checkout is down")
    expect(panel).to_contain_text("team payments")
    expect(panel.locator("tr[data-kind=fired]")).to_have_count(1)

    page.get_by_label("You").fill("ann")
    page.get_by_label("Note").fill("errors everywhere")
    page.get_by_role("button", name="Mark step 1 done").click()
    expect(panel.locator("li[data-step='1']")).to_contain_text("done by ann")
    expect(panel.locator("tr[data-kind=step]")).to_contain_text("errors everywhere")

    panel.get_by_role("button", name="Run restart-checkout").click()
    expect(panel.locator("tr[data-kind=action]", has_text="succeeded")).to_have_count(1)
    [restart] = hook.wait_for(1)
    assert restart.path == "/restart" and restart.json() == {"service": "checkout"}
    screenshot(page, "alerts-timeline")
    assert watch.problems == []
