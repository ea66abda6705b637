"""Report rendering: an executive PDF of 30 KPIs (30 charts, about 10 pages), render time and
peak RSS, median of 5 runs, each in a fresh process (so the ECharts load in QuickJS and the
WeasyPrint import are paid every time, as after a restart).

    .venv/bin/python bench/reports.py [--runs 5] [--out BENCHMARKS.md]

The data: 30 count KPIs over 30 days of hourly events, written once through the ingestor into
a DuckDB store in a temporary directory. Goal (issue 18): at most 3 s and 200 MB.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.facts import machine_facts, write_section
from opsmetrics.catalog.reports import CatchUp, ReportSources, ReportSpec
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.model import Event
from opsmetrics.services import open_services
from opsmetrics.settings import Limits, Settings

HOUR = 3_600_000
DAY = 24 * HOUR
SLOT = 1_796_626_800_000  # Monday 2026-12-07 07:00 UTC = 08:00 Europe/Berlin
KPIS = 30
HEADING = "Reports"


def kpi_yaml() -> str:
    return "".join(
        f"- {{name: k{i:02d}, title: KPI number {i}, owner: bench, level: strategic, "
        f"unit: count, "
        f"direction: higher_is_better, grain: day, event: {{name: e{i:02d}, agg: count}}, "
        f"target: {100 + 5 * i}, thresholds: {{warning: {80 + 4 * i}, critical: {50 + 2 * i}}}}}\n"
        for i in range(KPIS)
    )


def make_data(root: Path) -> None:
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "kpis" / "k.yaml").write_text(kpi_yaml())
    services = open_services(settings(root), FakeClock(SLOT))
    rng = np.random.default_rng(1)
    for i in range(KPIS):
        events = [Event(f"e{i:02d}", ts + j, "x") for ts in range(SLOT - 30 * DAY, SLOT, HOUR)
                  for j in range(rng.poisson(4 + i % 5))]  # fmt: skip
        services.ingestor.write(WriteRequest("bench", None, events, []))
    services.close()


def settings(root: Path) -> Settings:
    limits = Limits(events_late_window_ms=60 * DAY, samples_late_window_ms=60 * DAY)
    return Settings(data_dir=root / "data", config_dir=root / "config", limits=limits)


def spec() -> ReportSpec:
    return ReportSpec(
        name="executive-bench", title="Executive summary", audience="executive",
        schedule="0 8 * * *", timezone="Europe/Berlin", window="day",
        compare="previous_period", sources=ReportSources(), formats=frozenset({"pdf"}),
        deliver=(), catch_up=CatchUp("latest", DAY),
    )  # fmt: skip


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux keeps that across
    exec, so a child started by the bench (which made the data: ~170 MB) reports at least the
    parent's peak, not its own."""
    status = Path("/proc/self/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert found is not None, "no VmHWM in /proc/self/status"
    return int(found.group(1)) / 1024


def child(root: Path) -> None:
    """One run: open the store, render the PDF, print the figures as JSON."""
    from opsmetrics.reports.render import inputs_from_services, render_report

    services = open_services(settings(root), FakeClock(SLOT))
    before_mb = peak_rss_mb()
    started = time.perf_counter()
    got = render_report(inputs_from_services(services), spec(), SLOT, formats=frozenset({"pdf"}))
    seconds = time.perf_counter() - started
    services.close()
    assert got.pdf is not None
    out = root / "bench.pdf"
    out.write_bytes(got.pdf)
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True, check=True)
    pages = int(next(ln.split()[1] for ln in info.stdout.splitlines() if ln.startswith("Pages")))
    charts = got.html_page.count('class="chart"')
    rss_mb = peak_rss_mb()
    figures = {"seconds": seconds, "rss_mb": rss_mb, "before_mb": before_mb, "pages": pages,
               "charts": charts, "pdf_kb": len(got.pdf) / 1024}  # fmt: skip
    print(json.dumps(figures))


def run(root: Path, runs: int) -> list[dict[str, float]]:
    results = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, __file__, "--child", str(root)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def section(results: list[dict[str, float]]) -> str:
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    worst = {k: max(r[k] for r in results) for k in ("seconds", "rss_mb")}
    lines = [
        f"## {HEADING}",
        "",
        "`.venv/bin/python bench/reports.py` (median of "
        f"{len(results)} runs, each a fresh process): an executive report of {KPIS} KPIs "
        "over 30 days of hourly events in DuckDB, rendered to PDF (ECharts in QuickJS → SVG, "
        "WeasyPrint). Render time covers reading the KPIs as of the slot, the analysis "
        "(anomalies, level shifts, forecasts), the charts (the ECharts load included) and the "
        "PDF; RSS is the rendering process's peak (VmHWM: the whole process, imports, DuckDB, "
        "QuickJS and WeasyPrint included).",
        "",
        "| figure | median | worst | goal |",
        "| --- | --- | --- | --- |",
        f"| render time | {med['seconds']:.2f} s | {worst['seconds']:.2f} s | ≤ 3 s |",
        f"| peak RSS | {med['rss_mb']:.0f} MB | {worst['rss_mb']:.0f} MB | ≤ 200 MB |",
        f"| of which before rendering (services open) | {med['before_mb']:.0f} MB | | |",
        f"| pages / charts | {med['pages']:.0f} / {med['charts']:.0f} | | 10 / 30 |",
        f"| PDF size | {med['pdf_kb']:.0f} KB | | |",
        "",
        *machine_facts(" (a shared machine)"),
        "",
        "Many reports due at once: the next section (bench/report_burst.py).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the section here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root)
        results = run(root, args.runs)
    part = section(results)
    print(part)
    if args.out is not None:
        write_section(args.out, HEADING, part)


if __name__ == "__main__":
    main()
