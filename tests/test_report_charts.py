"""Report charts without a browser: the UI's option builders (chart_options.js) drawn by the
vendored ECharts in QuickJS (opsmetrics/reports/charts_ssr.py)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

from opsmetrics.reports.charts_ssr import MODULES, UNAVAILABLE, ChartRenderer, ChartSvg, bundle

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
DAY = 86_400_000


def _trend() -> dict[str, Any]:
    points = [[NOW - (30 - i) * DAY, 100.0 + 3 * i] for i in range(30)]
    return {
        "unit": "count",
        "series": [{"name": "orders", "label": "Orders", "points": points}],
        "target": 150.0,
        "thresholds": {"warning": 120.0, "critical": 100.0, "direction": "higher_is_better"},
        "annotations": [{"ts": NOW - 10 * DAY, "title": "v1.42", "kind": "deploy"}],
        "forecast": {"points": [[NOW + i * DAY, 190.0, 180.0, 200.0] for i in range(3)]},
        "anomalies": [],
    }


@pytest.fixture(scope="module")
def renderer() -> ChartRenderer:
    return ChartRenderer()


def _texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_trend_chart_has_ticks_target_bands_and_no_text_outlines(renderer: ChartRenderer) -> None:
    chart = renderer.render("trend", _trend(), 640, 280)
    assert chart.error is None and chart.svg.startswith("<svg")
    texts = _texts(chart.svg)
    assert {"120", "140", "160", "180"} <= set(texts)  # value axis ticks
    assert {"Target", "Warning", "Critical", "v1.42", "Orders", "Forecast"} <= set(texts)
    # WeasyPrint ignores paint-order: an outlined label would print white on white.
    outlined = [t for t in re.findall(r"<text[^>]*>", chart.svg) if "stroke=" in t]
    assert outlined == []


def test_a_line_of_more_points_than_pixels_is_sampled_and_a_short_one_is_not(
    renderer: ChartRenderer,
) -> None:
    hourly = [[NOW - (5000 - i) * DAY // 24, 100.0 + (i % 24) * (i % 7)] for i in range(5000)]
    nodes = []
    for points in (hourly, hourly[-30:]):
        payload = {**_trend(), "series": [{"name": "o", "label": "Orders", "points": points}]}
        svg = renderer.render("trend", payload, 680, 210).svg
        line = max(re.findall(r'<path d="([^"]*)"[^>]*stroke="#0072B2"', svg), key=len)
        nodes.append(len(re.findall(r"[ML]", line)))
    assert nodes[0] <= 2 * 680 and nodes[1] == 30  # one node a point below the chart's width


def test_a_released_renderer_loads_echarts_again_for_the_next_chart(
    renderer: ChartRenderer,
) -> None:
    # A lone report lets the JS context go before its PDF (render.py); the next one draws.
    renderer.release()
    chart = renderer.render("trend", {**_trend(), "target": 170.0}, 640, 280)
    assert chart.error is None and "Target" in _texts(chart.svg)


def test_every_builder_the_ui_has_renders(renderer: ChartRenderer) -> None:
    bars: dict[str, Any] = {
        "unit": "count",
        "bars": [
            {"label": "eu-west", "value": 30, "formatted": "30"},
            {"label": "us-east", "value": 12, "formatted": "12"},
        ],
    }
    limits = {"warning": 0.3, "critical": 0.2, "direction": "higher_is_better"}
    gauge: dict[str, Any] = {"unit": "percent", "value": 0.42, "min": 0, "max": 1,
                             "formatted": "42 %", "thresholds": limits}  # fmt: skip
    steps = [{"name": "visit", "count": 100}, {"name": "buy", "count": 7}]
    funnel: dict[str, Any] = {"steps": steps}
    for kind, payload, word in [("bar", bars, "eu-west"), ("gauge", gauge, "42 %"),
                                ("funnel", funnel, "buy: 7")]:  # fmt: skip
        chart = renderer.render(kind, payload, 400, 240)
        assert chart.error is None, kind
        assert word in _texts(chart.svg), (kind, _texts(chart.svg))


def test_numbers_are_formatted_without_intl(renderer: ChartRenderer) -> None:
    """QuickJS has no Intl: value_format.js falls back to an English number format."""
    points = [[NOW + i * DAY, 1_000_000.0 + 250_000 * i] for i in range(5)]
    payload = {"unit": "currency", "series": [{"name": "mrr", "label": "MRR", "points": points}]}
    texts = _texts(renderer.render("trend", payload, 500, 240).svg)
    assert any(re.fullmatch(r"\d+(\.\d+)?M", t) for t in texts), texts


def test_unknown_kind_and_a_failing_builder_give_a_marked_placeholder(
    renderer: ChartRenderer,
) -> None:
    missing = renderer.render("nope", {}, 300, 200)
    assert missing.error == 'Error: no chart kind "nope"'
    assert UNAVAILABLE in missing.svg and 'width="300"' in missing.svg
    # The renderer is still usable afterwards (the context was made again).
    assert renderer.render("trend", _trend(), 300, 200).error is None


def test_a_builder_that_never_returns_is_stopped_by_the_time_limit(tmp_path: Path) -> None:
    looping = tmp_path / "looping.js"
    looping.write_text("export function loopOption(p, c) { while (true) {} }\n")
    renderer = ChartRenderer((*MODULES, looping), time_limit_s=0.5)
    got: list[ChartSvg] = []
    worker = threading.Thread(target=lambda: got.append(renderer.render("loop", {}, 300, 200)))
    worker.start()
    worker.join(60)  # a hang guard, not a measure: the limit is 0.5 s of CPU
    assert not worker.is_alive() and len(got) == 1
    chart = got[0]
    assert chart.error == "it took too long to draw"
    assert f"{UNAVAILABLE}: it took too long to draw" in chart.svg
    assert renderer.render("trend", _trend(), 300, 200).error is None


def test_a_builder_that_eats_memory_is_stopped_by_the_memory_limit(tmp_path: Path) -> None:
    hungry = tmp_path / "hungry.js"
    hungry.write_text(
        "export function hogOption(p, c) {\n"
        "  const a = []; while (true) a.push(new Array(1e5).fill(1));\n}\n"
    )
    renderer = ChartRenderer((*MODULES, hungry), memory_limit_bytes=96 * 1024 * 1024)
    chart = renderer.render("hog", {}, 300, 200)
    assert chart.error == "it needed too much memory"
    assert renderer.render("trend", _trend(), 300, 200).error is None


def test_bundle_turns_imports_into_reads_of_the_exports(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text(
        "export const X = 2;\nexport function twice(v) { return v * X; }\n"
    )
    (tmp_path / "b.js").write_text(
        'import { twice } from "./a.js";\nimport * as a from "./a.js";\n'
        "export function both() { return twice(a.X); }\n"
    )
    script = bundle([tmp_path / "a.js", tmp_path / "b.js"])
    assert "export" not in script and "import" not in script
    import quickjs

    assert quickjs.Context().eval(script + '\n__modules["b.js"].both()') == 4
