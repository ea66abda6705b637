"""Helpers for the browser tests: a demo data directory, Chromium, and a watched page."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import ConsoleMessage, Page, Request, Response, sync_playwright

from opsmetrics.catalog.validate import EXAMPLE_CONFIG
from opsmetrics.clock import FakeClock
from opsmetrics.demo.runner import load_history
from opsmetrics.services import open_services
from opsmetrics.settings import Settings

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
#: The demo history ends here, and the server and the browser start their clocks here: the
#: "last 24 hours" and "today" straddle midnight UTC, and the week starts today.
UI_NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
#: Two days at a 2-minute step: every dashboard has data (rate(x[5m]) needs two samples in
#: five minutes), and it loads in seconds.
HISTORY_DAYS = 2
HISTORY_STEP_S = 120
ALWAYS_FIRING = """\
groups:
  - name: ui-test
    interval: 1s
    rules:
      - alert: UiTestAlwaysFiring
        expr: vector(1) > 0
        for: 0s
        labels: {severity: warning, team: ui}
        annotations: {summary: "always firing, for the UI test"}
"""

#: Count the drawn (non-transparent) pixels of every chart canvas on the page.
CANVAS_PIXELS_JS = """
() => [...document.querySelectorAll('.chart canvas, .spark canvas')].map((c) => {
  const ctx = c.getContext('2d');
  if (!ctx || !c.width || !c.height) return 0;
  const data = ctx.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
  return n;
})
"""


def chromium_path() -> str | None:
    """Debian's Chromium (never a downloaded browser)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_env() -> dict[str, str]:
    """This environment without libfaketime, for Chromium. Under it (the faketime runs,
    tests/README.md) Chromium crawls (a data: URL took 12 s to load) and, with Playwright's
    clock installed pages never finish loading. The pages' time comes from Playwright's clock,
    set from the server's, so the machine's clock does not reach the UI either way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKETIME")}
    kept = [lib for lib in re.split(r"[:\s]+", env.pop("LD_PRELOAD", "")) if lib]
    kept = [lib for lib in kept if "libfaketime" not in lib]
    if kept:
        env["LD_PRELOAD"] = " ".join(kept)
    return env


def demo_dirs(root: Path, now_ms: int) -> tuple[Path, Path]:
    """A copy of the demo config (no scraping, plus an always-firing rule) and a data dir
    holding a short demo history ending at `now_ms`."""
    config = root / "config"
    shutil.copytree(EXAMPLE_CONFIG, config)
    (config / "scrape.yaml").unlink(missing_ok=True)
    (config / "rules" / "ui_test.yaml").write_text(ALWAYS_FIRING)
    data = root / "data"
    services = open_services(Settings(data_dir=data), FakeClock(now_ms))
    try:
        load_history(services, days=HISTORY_DAYS, step_s=HISTORY_STEP_S)
    finally:
        services.close()
    return config, data


@dataclass
class Watch:
    """What went wrong while a page was open: console errors, page errors, failed requests."""

    problems: list[str] = field(default_factory=list)
    allow_status: set[int] = field(default_factory=set)

    def attach(self, page: Page) -> Watch:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        return self

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.problems.append(f"console error: {msg.text}")

    def _failed(self, request: Request) -> None:
        self.problems.append(f"request failed: {request.url} ({request.failure})")

    def _response(self, response: Response) -> None:
        if response.status >= 400 and response.status not in self.allow_status:
            self.problems.append(f"HTTP {response.status}: {response.url}")


def wait_loaded(page: Page, timeout_ms: float = 30_000) -> None:
    """Wait until the page module says it has drawn (body[data-loaded])."""
    page.wait_for_selector("body[data-loaded]", state="attached", timeout=timeout_ms)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def contract_payloads(now_ms: int) -> dict[str, dict[str, Any]]:
    """One payload per widget type, in the shapes of the dashboard data contract."""
    hour = 3_600_000
    ts = [now_ms - (24 - i) * hour for i in range(24)]
    points = [[t, 100 + i * 3 + (i % 5)] for i, t in enumerate(ts)]
    return {
        "metric_card": {
            "type": "metric_card",
            "title": "MRR",
            "unit": "currency",
            "value": 1234.5,
            "formatted": "€1,234.50",
            "delta": {"value": 34.5, "formatted": "+€34.50", "pct": 0.029, "good": True},
            "target": 1200,
            "target_formatted": "€1,200",
            "attainment": 1.03,
            "status": "ok",
            "status_text": "On target",
            "sparkline": points,
            "link": "/kpis/mrr",
        },
        "trend_chart": {
            "type": "trend_chart",
            "title": "Revenue",
            "unit": "count",
            "series": [
                {
                    "name": "revenue",
                    "label": "Revenue",
                    "unit": "count",
                    "points": points,
                    "compare_points": [[t, v - 10] for t, v in points],
                    "link": None,
                }
            ],
            "target": 150,
            "thresholds": {"warning": 120, "critical": 110, "direction": "higher_is_better"},
            "annotations": [
                {"ts": ts[5], "end_ts": None, "title": "deploy", "kind": "deploy", "text": ""},
                {
                    "ts": ts[8],
                    "end_ts": ts[10],
                    "title": "incident",
                    "kind": "incident",
                    "text": "",
                },
            ],
            "forecast": {
                "points": [[ts[-1] + i * hour, 180 + i, 170, 190 + 2 * i] for i in range(1, 6)],
                "method": "ets",
                "mase": 0.8,
            },
            "anomalies": [
                {
                    "ts": ts[12],
                    "value": points[12][1],
                    "expected_low": 90,
                    "expected_high": 120,
                    "explanation": "above the expected band",
                }
            ],
        },
        "gauge": {
            "type": "gauge",
            "title": "Availability",
            "unit": "percent",
            "value": 0.997,
            "formatted": "99.7 %",
            "min": 0.95,
            "max": 1,
            "thresholds": {
                "good": 0.999,
                "warning": 0.995,
                "critical": 0.99,
                "direction": "higher_is_better",
            },
            "status": "warning",
            "status_text": "Warning: below 99.9 %",
        },
        "status_grid": {
            "type": "status_grid",
            "title": "Health",
            "items": [
                {
                    "name": "a",
                    "title": "API",
                    "value": 1,
                    "formatted": "1",
                    "status": "critical",
                    "status_text": "Critical: down",
                    "link": None,
                }
            ],
        },
        "funnel": {
            "type": "funnel",
            "title": "Shop",
            "steps": [
                {"name": "view", "count": 1000, "rate_from_start": 1, "rate_from_previous": 1},
                {"name": "buy", "count": 40, "rate_from_start": 0.04, "rate_from_previous": 0.04},
            ],
        },
        "cohort": {
            "type": "cohort",
            "title": "Retention",
            "period": "week",
            "cohorts": [
                {"start": ts[0], "size": 100, "retention": [1, 0.5, 0.3]},
                {"start": ts[7], "size": 80, "retention": [1, 0.4]},
            ],
        },
        "table": {
            "type": "table",
            "title": "Scorecard",
            "columns": ["KPI", "Value"],
            "rows": [["MRR", "€1,234"]],
            "links": ["/kpis/mrr"],
        },
        "bar": {
            "type": "bar",
            "title": "Queues",
            "unit": "count",
            "bars": [
                {"label": "orders", "value": 10, "formatted": "10"},
                {"label": "emails", "value": 6, "formatted": "6"},
            ],
        },
        "scatter": {
            "type": "scatter",
            "title": "Latency vs conversion",
            "x": {"name": "latency", "unit": "ms"},
            "y": {"name": "conv", "unit": "percent"},
            "points": [[100 + i, 0.03 - i / 10000] for i in range(10)],
            "regression": {"slope": -0.0001, "intercept": 0.04, "r": -0.9, "p_value": 0.001},
            "finding": "Slower pages convert less.",
        },
        "alert_list": {
            "type": "alert_list",
            "title": "Alerts",
            "alerts": [
                {
                    "fingerprint": "f",
                    "name": "HighLatency",
                    "severity": "critical",
                    "state": "firing",
                    "summary": "p95 high",
                    "active_at": ts[0],
                    "acknowledged": False,
                }
            ],
        },
        "text": {"type": "text", "title": "Notes", "html": "<p><strong>Read me</strong></p>"},
        "experiment": {"type": "experiment", "title": "Test", "result": None},
    }


@contextmanager
def chromium_page(clock_ms: int) -> Iterator[Page]:
    """A page in Debian's Chromium (1400×1000) whose clock runs from `clock_ms`."""
    executable = chromium_path()
    assert executable is not None, "Debian's chromium is not installed: run `make test`"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, args=["--no-sandbox"], env=browser_env()
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.clock.install(time=clock_ms / 1000)
        try:
            yield context.new_page()
        finally:
            browser.close()


def visit(page: Page, url: str) -> Watch:
    """Open `url`, watched, and wait until the page module has drawn."""
    watch = Watch().attach(page)
    page.goto(url)
    wait_loaded(page)
    return watch
