"""The charts of the dashboards a report names in `sources.dashboards`: each chart widget's
payload (dashboards/data.py, the UI's own) over the dashboard's time range ending at the slot,
drawn by the same option builders as the UI (charts_ssr.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opsmetrics.catalog.dashboards import Dashboard
from opsmetrics.dashboards.context import DashboardContext, TimeRange
from opsmetrics.dashboards.data import widget_payload

#: Widget type → the option builder (chart_options.js `<kind>Option`).
CHART_KINDS = {"trend_chart": "trend", "bar": "bar", "gauge": "gauge", "funnel": "funnel",
               "cohort": "cohort", "scatter": "scatter"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DashboardChart:
    dashboard: str
    title: str
    kind: str
    payload: dict[str, Any]
    chart_id: str = ""
    error: str | None = None  # the widget's own error: shown instead of the chart


def dashboard_charts(
    base: DashboardContext, dashboard: Dashboard, slot_ms: int
) -> list[DashboardChart]:
    """Every chart widget of `dashboard`, as of the slot (the context's evaluator reads it)."""
    rng = TimeRange.of(slot_ms - dashboard.spec.time_range, slot_ms)
    ctx = DashboardContext(base.storage, base.catalog, base.evaluator, rng)
    out = []
    for _, widget in dashboard.widgets():
        kind = CHART_KINDS.get(widget.type)
        if kind is None:
            continue
        payload = widget_payload(ctx, widget)
        title = str(payload.get("title") or widget.title or widget.type)
        out.append(
            DashboardChart(dashboard.title, title, kind, payload, error=payload.get("error"))
        )
    return out
