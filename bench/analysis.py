"""Series-analysis benchmark: speed of forecasts and anomaly scans, and detector quality.

1. Forecast of a 2,000-point daily series (trend + weekly season + noise), with the
   rolling-origin backtest that picks the method.
2. Anomaly scan (seasonal baseline, flags, level shifts) of 50 synthetic series of 30 days at
   1-minute resolution (43,200 points each), in memory.
3. Interactive requests: GET /api/v1/analysis/{trend,anomalies,forecast,capacity} on 30 days
   of 5-minute data stored in DuckDB, through the real app in process (ASGI).
4. Quality: precision/recall of anomalies and level shifts on the labelled synthetic set, and
   on the demo's planted incidents (`--demo-days` of history, 5-minute steps); MASE of
   forecasts of demo series.

Median of `--runs` (default 3). Writes the `### Series (bench/analysis.py)` part of the
`## Analysis` section of BENCHMARKS.md (other text is left alone).

    .venv/bin/python bench/analysis.py [--runs 3] [--demo-days 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opsmetrics.analysis.anomalies import DEFAULT_THRESHOLD, detect  # noqa: E402
from opsmetrics.analysis.changepoints import change_points  # noqa: E402
from opsmetrics.analysis.forecast import forecast  # noqa: E402
from opsmetrics.analysis.labelled import (  # noqa: E402
    Labelled,
    Score,
    score_points,
    score_shifts,
    seasonal_values,
    synthetic_set,
)
from opsmetrics.analysis.series import DAY_MS, HOUR_MS, Series, fetch_series  # noqa: E402
from opsmetrics.catalog.validate import EXAMPLE_CONFIG  # noqa: E402
from opsmetrics.clock import FakeClock  # noqa: E402
from opsmetrics.demo.incidents import plan_story  # noqa: E402
from opsmetrics.demo.runner import DEFAULT_SEED, load_history  # noqa: E402
from opsmetrics.ingest.decoded import DecodedSamples  # noqa: E402
from opsmetrics.ingest.pipeline import WriteRequest  # noqa: E402
from opsmetrics.model import SampleBatchBuilder  # noqa: E402
from opsmetrics.services import Services, open_services  # noqa: E402
from opsmetrics.settings import Limits, Settings  # noqa: E402
from opsmetrics.web.app import create_app  # noqa: E402

MINUTE = 60_000
NOW = 1_793_858_400_000  # Thursday 2026-11-05 06:00 UTC (as in tests/test_demo.py)
LATENCY = (
    "histogram_quantile(0.95, sum by (le) "
    '(rate(http_request_duration_seconds_bucket{service="checkout"}[15m])))'
)
ERRORS = (
    'sum(rate(http_requests_total{service="checkout",code=~"5.."}[15m]))'
    ' / sum(rate(http_requests_total{service="checkout"}[15m]))'
)
MEMORY = 'sum(process_resident_memory_bytes{service="api"})'
FORECAST_SERIES = {
    "checkout requests/s (1h)": ('sum(rate(http_requests_total{service="checkout"}[1h]))', HOUR_MS),
    "api memory (1h)": (MEMORY, HOUR_MS),
    "checkout p95 latency (1h)": (LATENCY.replace("[15m]", "[1h]"), HOUR_MS),
}


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def cpu_timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median wall and median CPU (this process) seconds."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def daily_series() -> Series:
    rng = np.random.default_rng(1)
    t = np.arange(2000)
    y = 500 + 0.3 * t + 40 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 10, len(t))
    return Series.of(y, DAY_MS, NOW - 2000 * DAY_MS, name="daily")


def minute_series(count: int) -> list[Series]:
    n = 30 * DAY_MS // MINUTE
    out = []
    for i in range(count):
        values = seasonal_values(n, MINUTE, np.random.default_rng([i, 9]), 1000.0)
        ts = NOW - n * MINUTE + np.arange(n, dtype=np.int64) * MINUTE
        out.append(Series(ts, values, name=f"m{i}", step_ms=MINUTE))
    return out


def interactive(runs: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU time of each GET route on 30 days of 5-minute data in DuckDB."""
    with tempfile.TemporaryDirectory() as tmp:
        limits = Limits(samples_late_window_ms=60 * DAY_MS)
        svc = open_services(Settings(data_dir=Path(tmp), limits=limits), FakeClock(NOW))
        try:
            _write_traffic(svc)
            app = create_app(svc)
            routes = {
                "trend": {"view": "short"},
                "anomalies": {},
                "forecast": {"horizon": "1d"},
                "capacity": {"limit": "5000", "horizon": "1d"},
            }
            base = {"query": "shop_orders", "step": "5m"}
            _get(app, "/api/v1/analysis/forecast", base)  # imports statsmodels once
            return {
                name: cpu_timed(lambda n=name, p=p: _get(app, f"/api/v1/analysis/{n}", base | p),
                                runs)
                for name, p in routes.items()
            }  # fmt: skip
        finally:
            svc.close()


def _write_traffic(svc: Services) -> None:
    n = 30 * DAY_MS // (5 * MINUTE)
    ts = (NOW - n * 5 * MINUTE + np.arange(n) * 5 * MINUTE).tolist()
    values = seasonal_values(n, 5 * MINUTE, np.random.default_rng(3), 1500.0)
    b = SampleBatchBuilder()
    b.add_many(b.series_index((("__name__", "shop_orders"),)), ts, values.tolist())
    svc.ingestor.write(WriteRequest("bench", samples=DecodedSamples(b.build())))


def _get(app: Any, path: str, params: dict[str, str]) -> Any:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
            return await c.get(path, params=params)

    response = asyncio.run(send())
    assert response.status_code == 200, response.text
    return response.json()


def synthetic_quality() -> tuple[Score, Score]:
    points = shifts = Score(0, 0, 0)
    for item in synthetic_set(range(10)):
        report = detect(item.series)
        if item.windows:
            found = [a.ts for a in report.anomalies]
            points = points + score_points(found, item, item.series.step_ms)
        cps = [c.ts for c in report.change_points]
        shifts = shifts + score_shifts(cps, item, 12 * HOUR_MS)
    return points, shifts


def demo_quality(days: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), config_dir=EXAMPLE_CONFIG)
        svc = open_services(settings, FakeClock(NOW))
        try:
            started = time.perf_counter()
            load_history(svc, days=days, step_s=300)
            loaded = time.perf_counter() - started
            return {"load_s": loaded, **_demo_scores(svc, days)}
        finally:
            svc.close()


def _demo_scores(svc: Services, days: int) -> dict[str, Any]:
    start = NOW - days * DAY_MS
    plan = plan_story(start, NOW, DEFAULT_SEED)
    windows = [(s.start, s.end) for s in plan.incidents]
    out: dict[str, Any] = {"incidents": len(windows)}
    for label, query in (("checkout p95 latency", LATENCY), ("checkout 5xx ratio", ERRORS)):
        s = fetch_series(svc.storage, svc.catalog, svc.clock, query, start, NOW, 5 * MINUTE)
        for threshold in (4.0, 5.0, 8.0):
            report = detect(s, threshold=threshold, with_change_points=False)
            found = [a.ts for a in report.anomalies]
            out[(label, threshold)] = score_points(found, Labelled(s, windows=windows), s.step_ms)
    mem = fetch_series(svc.storage, svc.catalog, svc.clock, MEMORY, start, NOW, 5 * MINUTE)
    regression = plan.memory_regression
    truth = [regression.start, regression.end] if regression else []
    truth = [t for t in truth if t < NOW]
    found = [c.ts for c in change_points(mem)]
    out["memory shifts"] = score_shifts(found, Labelled(mem, shifts=truth), 6 * HOUR_MS)
    for label, (query, step) in FORECAST_SERIES.items():
        s = fetch_series(svc.storage, svc.catalog, svc.clock, query, start, NOW, step)
        fc = forecast(s, 24)
        out[("mase", label)] = (fc.method, fc.mase)
    return out


def report(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    pts, shifts = figures["synthetic"]
    demo = figures["demo"]
    lines = [
        "### Series (bench/analysis.py)",
        "",
        f"Command: `.venv/bin/python bench/analysis.py --runs {args.runs} "
        f"--demo-days {args.demo_days}`. Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load average at start "
        f"{figures['load']:.1f} (the machine is shared). Wall-clock medians of {args.runs}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| forecast, 2,000-point daily series, backtest of 4 methods × 3 folds "
        f"| {figures['forecast'][0]:.2f} s ({figures['forecast'][1]}) |",
        f"| anomaly scan, 50 series × 30 d × 1 min (43,200 points each) "
        f"| {figures['scan']:.2f} s ({figures['scan'] / 50 * 1000:.0f} ms per series) |",
    ]
    for route, (wall, cpu) in figures["interactive"].items():
        lines.append(
            f"| GET /api/v1/analysis/{route}, 30 d × 5 min in DuckDB (wall / CPU) "
            f"| {wall:.3f} s / {cpu:.3f} s |"
        )
    lines += [
        "",
        "Detector quality (event level: an injected window is found when a flagged point falls "
        "in it; a flagged run is a false positive when it touches none):",
        "",
        "| data | precision | recall |",
        "|---|---|---|",
        f"| synthetic spikes/dips, 10 series × 28 d × 15 min, threshold {DEFAULT_THRESHOLD:g} "
        f"| {pts.precision:.2f} ({pts.true_pos}/{pts.true_pos + pts.false_pos}) "
        f"| {pts.recall:.2f} ({pts.true_pos}/{pts.true_pos + pts.false_neg}) |",
        f"| synthetic level shifts (±12 h), 20 series | {shifts.precision:.2f} "
        f"| {shifts.recall:.2f} |",
    ]
    for key, score in demo.items():
        if isinstance(key, tuple) and key[0] != "mase":
            label, threshold = key
            lines.append(
                f"| demo {label}, {demo['incidents']} planted incidents, threshold "
                f"{threshold:g} | {score.precision:.2f} | {score.recall:.2f} |"
            )
    mem = demo["memory shifts"]
    lines.append(f"| demo api memory regression (start and rollback, ±6 h) | "
                 f"{mem.precision:.2f} | {mem.recall:.2f} |")  # fmt: skip
    lines += ["", "MASE of the chosen forecast (24 steps ahead, backtest) on demo series:", ""]
    lines += ["| series | method | MASE |", "|---|---|---|"]
    for key, value in demo.items():
        if isinstance(key, tuple) and key[0] == "mase":
            method, mase = value
            lines.append(f"| {key[1]} | {method} | {mase:.2f} |")
    lines.append(f"\nDemo history: {args.demo_days} days loaded in {demo['load_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def write_section(path: Path, part: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = re.search(r"^## Analysis\n.*?(?=^## |\Z)", text, re.S | re.M)
    if section is None:
        text = text.rstrip("\n") + "\n\n## Analysis\n\n" + part
    else:
        body = section.group(0)
        mine = re.compile(r"^### Series \(bench/analysis.py\)\n.*?(?=^##|\Z)", re.S | re.M)
        new = (
            mine.sub(lambda _: part + "\n", body)
            if mine.search(body)
            else (body.rstrip("\n") + "\n\n" + part + "\n")
        )
        text = text[: section.start()] + new + text[section.end() :]
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--demo-days", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    figures: dict[str, Any] = {"load": os.getloadavg()[0]}
    series = daily_series()
    forecast(series, 30)  # imports statsmodels outside the timing
    secs, fc = timed(lambda: forecast(series, 30), args.runs)
    figures["forecast"] = (secs, f"{fc.method}, MASE {fc.mase:.2f}")
    print(f"forecast: {secs:.2f} s", flush=True)
    many = minute_series(50)
    figures["scan"] = timed(lambda: [detect(s) for s in many], args.runs)[0]
    print(f"scan: {figures['scan']:.2f} s", flush=True)
    figures["interactive"] = interactive(args.runs)
    print(f"interactive: {figures['interactive']}", flush=True)
    figures["synthetic"] = synthetic_quality()
    figures["demo"] = demo_quality(args.demo_days)
    part = report(args, figures)
    print(part)
    write_section(args.out, part)


if __name__ == "__main__":
    main()
