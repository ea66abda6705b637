"""What `opsmetrics demo` prints: where to look and what the planted story is."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.panel import Panel
from rich.table import Table

from opsmetrics.demo.incidents import LIVE_INCIDENT_DELAY_MS, Plan

PAGES = (
    ("/dashboards/executive", "revenue, MRR, growth, conversion, NPS, churn vs targets"),
    ("/dashboards/operations", "orders, the shop funnel, service health, queues, alerts"),
    ("/dashboards/engineering", "p95/p99 latency, errors, throughput, CPU, memory, queues"),
    ("/alerts", "conversion, revenue, abandonment, onboarding"),
    ("/explore", "PromQL, and the funnel page_view → purchase"),
)


def _when(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%a %d %b %H:%M UTC")


def story_lines(plan: Plan) -> list[str]:
    lines = [
        f"checkout latency incident {_when(s.start)} for {(s.end - s.start) // 60_000} min"
        for s in plan.incidents
    ]
    if plan.memory_regression is not None:
        lines.append(f"api v3.0.0 memory regression from {_when(plan.memory_regression.start)}")
    if plan.onboarding_bug is not None:
        lines.append(f"onboarding broken for new users from {_when(plan.onboarding_bug.start)}")
    lines += [f"campaign '{c.title}' on {_when(c.span.start)}" for c in plan.campaigns]
    lines.append(f"live: next checkout incident at {_when(plan.end + LIVE_INCIDENT_DELAY_MS)}")
    return lines


def demo_panel(url: str, plan: Plan) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for path, what in PAGES:
        table.add_row(path, what)
    table.add_row("", "")
    table.add_row("story", "checkout latency up → conversion and revenue down")
    for line in story_lines(plan):
        table.add_row("", line)
    return Panel(table, title=f"opsmetrics demo at {url}", expand=False)
