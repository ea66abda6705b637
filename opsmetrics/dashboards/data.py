"""Dashboard data: every widget's payload for a time range, computed concurrently, each widget
failing on its own (docs/dashboards.md, "Data API"). No HTTP here; web/routers/dashboards.py
and bench/ui.py call it.

    data = DashboardData(storage, catalog, evaluator, clock, alerts)
    data.payload(dashboard, start_ms, end_ms, widget_ids=None) -> {"range": ..., "widgets": ...}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, assert_never

from opsmetrics.catalog.dashboard_schema import (
    DEFAULT_WIDTH,
    AlertListWidget,
    BarWidget,
    CohortWidget,
    ExperimentWidget,
    FunnelWidget,
    Gauge,
    MetricCard,
    ScatterWidget,
    StatusGrid,
    TableWidget,
    TextWidget,
    TrendChart,
    Widget,
)
from opsmetrics.catalog.dashboards import Dashboard
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.clock import Clock
from opsmetrics.dashboards import charts
from opsmetrics.dashboards import kpi as values
from opsmetrics.dashboards import widgets as others
from opsmetrics.dashboards.context import (
    AlertLister,
    DashboardContext,
    Memo,
    TimeRange,
)
from opsmetrics.errors import BadDataError, OpsMetricsError
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.storage.base import Storage

log = logging.getLogger(__name__)
Payload = dict[str, Any]
#: Widgets evaluated at once; DuckDB reads use one cursor per thread.
WORKERS = 4


class DashboardData:
    def __init__(
        self,
        storage: Storage,
        catalog: Catalog,
        evaluator: KpiEvaluator,
        clock: Clock,
        alerts: AlertLister | None = None,
        workers: int = WORKERS,
    ) -> None:
        self._storage = storage
        self._catalog = catalog
        self._evaluator = evaluator
        self.alerts = alerts
        self.acked: Callable[[str], bool] | None = None
        self.stale: Callable[[str], list[str]] | None = None
        self._shared = Memo(clock)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dashboard")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def payload(
        self,
        dashboard: Dashboard,
        start_ms: int,
        end_ms: int,
        widget_ids: Sequence[str] | None = None,
    ) -> Payload:
        """`{"range": {start, end, step}, "widgets": {id: payload}}` for [start_ms, end_ms]."""
        if end_ms <= start_ms:
            raise BadDataError('invalid parameter "end": it must be after "start"')
        chosen = _chosen(dashboard, widget_ids)
        rng = TimeRange.of(start_ms, end_ms)
        ctx = DashboardContext(
            self._storage,
            self._catalog,
            self._evaluator,
            rng,
            self.alerts,
            self._shared,
            self.acked,
            self.stale,
        )
        futures = {wid: self._pool.submit(widget_payload, ctx, w) for wid, w in chosen}
        results = {wid: future.result() for wid, future in futures.items()}
        return {"range": {"start": start_ms, "end": end_ms, "step": rng.step_ms},
                "widgets": results}  # fmt: skip


def _chosen(dashboard: Dashboard, widget_ids: Sequence[str] | None) -> list[tuple[str, Any]]:
    every = list(dashboard.widgets())
    if not widget_ids:
        return every
    known = {wid for wid, _ in every}
    unknown = [wid for wid in widget_ids if wid not in known]
    if unknown:
        raise BadDataError(
            f'invalid parameter "widget": dashboard {dashboard.name!r} has no widget '
            f"{unknown[0]!r}; its widgets: {', '.join(sorted(known))}"
        )
    return [(wid, w) for wid, w in every if wid in widget_ids]


def widget_payload(ctx: DashboardContext, widget: Widget) -> Payload:
    """One widget's payload, or `{type, title, error}` when it cannot be computed."""
    try:
        return _payload(ctx, widget)
    except OpsMetricsError as exc:
        return {"type": widget.type, "title": widget.title or "", "error": exc.message}
    except Exception as exc:  # one widget's bug must not take the dashboard down
        log.exception("dashboard widget %s failed", widget.type)
        message = f"internal error: {type(exc).__name__}: {exc}"
        return {"type": widget.type, "title": widget.title or "", "error": message}


# Each match names every kind of its group, so mypy reports a widget kind added to
# dashboard_schema.Widget without a payload (assert_never).
KpiWidget = MetricCard | Gauge | StatusGrid | TableWidget
ChartWidget = TrendChart | BarWidget | ScatterWidget
OtherWidget = FunnelWidget | CohortWidget | AlertListWidget | TextWidget | ExperimentWidget


def _payload(ctx: DashboardContext, w: Widget) -> Payload:
    match w:
        case MetricCard() | Gauge() | StatusGrid() | TableWidget():
            return _kpi_payload(ctx, w)
        case TrendChart() | BarWidget() | ScatterWidget():
            return _chart_payload(ctx, w)
        case (
            FunnelWidget() | CohortWidget() | AlertListWidget() | TextWidget() | ExperimentWidget()
        ):
            return _other_payload(ctx, w)
        case _:
            assert_never(w)


def _kpi_payload(ctx: DashboardContext, w: KpiWidget) -> Payload:
    match w:
        case MetricCard():
            return values.metric_card(ctx, w)
        case Gauge():
            return values.gauge(ctx, w)
        case StatusGrid():
            return values.status_grid(ctx, w)
        case TableWidget():
            return values.table(ctx, w)
        case _:
            assert_never(w)


def _chart_payload(ctx: DashboardContext, w: ChartWidget) -> Payload:
    match w:
        case TrendChart():
            return charts.trend_chart(ctx, w)
        case BarWidget():
            return charts.bar(ctx, w)
        case ScatterWidget():
            return charts.scatter(ctx, w)
        case _:
            assert_never(w)


def _other_payload(ctx: DashboardContext, w: OtherWidget) -> Payload:
    match w:
        case FunnelWidget():
            return others.funnel(ctx, w)
        case CohortWidget():
            return others.cohort(ctx, w)
        case AlertListWidget():
            return others.alert_list(ctx, w)
        case TextWidget():
            return others.text(ctx, w)
        case ExperimentWidget():
            return others.experiment(ctx, w)
        case _:
            assert_never(w)


# --- definitions as JSON --------------------------------------------------------------
def summary_json(d: Dashboard) -> Payload:
    return {
        "name": d.name,
        "title": d.title,
        "audience": d.spec.audience,
        "description": d.spec.description,
        "refresh": _seconds(d.spec.refresh),
        "time_range": _seconds(d.spec.time_range),
        "widgets": sum(1 for _ in d.widgets()),
    }


def dashboard_json(d: Dashboard, catalog: Catalog) -> Payload:
    sections = []
    for i, section in enumerate(d.spec.sections):
        widgets = [widget_json(d.ids[(i, j)], w, catalog) for j, w in enumerate(section.widgets)]
        sections.append({"title": section.title, "widgets": widgets})
    return summary_json(d) | {"source": d.file, "sections": sections}


def widget_json(wid: str, w: Any, catalog: Catalog) -> Payload:
    raw: Payload = w.model_dump(mode="json", exclude_none=True)
    kpi = raw.get("kpi")
    title = w.title or (catalog.get(kpi).title if kpi and kpi in catalog else "")
    for key in ("range", "step", "within"):
        if key in raw:
            raw[key] = _seconds(raw[key])
    width = w.width or DEFAULT_WIDTH.get(w.type, 6)
    return raw | {"id": wid, "type": w.type, "title": title, "width": width}


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000
