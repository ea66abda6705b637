"""Payloads of the widgets that show values: metric cards, gauges, status grids and tables.

A KPI's value is the one the KPI list shows (the last complete period of its own grain before
the range end, with its target, status and comparison); a query's value is an instant query at
the range end. Shapes: docs/dashboards.md ("Data API").
"""

from __future__ import annotations

from typing import Any

from opsmetrics.catalog.dashboard_schema import (
    Gauge,
    MetricCard,
    QueryRef,
    StatusGrid,
    TableWidget,
)
from opsmetrics.catalog.dashboard_schema import Thresholds as WidgetThresholds
from opsmetrics.catalog.kpi_model import Direction, KpiDefinition, Thresholds
from opsmetrics.dashboards.context import DashboardContext
from opsmetrics.dashboards.format import (
    Format,
    direction_of,
    number,
    status_text,
    threshold_status,
)
from opsmetrics.errors import BadDataError
from opsmetrics.query.kpi import KpiPoint, Status

Payload = dict[str, Any]


def kpi_link(name: str) -> str:
    return f"/kpis/{name}"


def metric_card(ctx: DashboardContext, w: MetricCard) -> Payload:
    if w.kpi is not None:
        return _kpi_card(ctx, w, ctx.catalog.get(w.kpi))
    assert w.query is not None
    return _query_card(ctx, w, w.query)


def _kpi_card(ctx: DashboardContext, w: MetricCard, kpi: KpiDefinition) -> Payload:
    fmt = Format.of(kpi)
    point = _latest(ctx, kpi.name, w.compare)
    rng = ctx.range.ending(w.range)
    spark = ctx.kpi_series(kpi.name, rng).points
    value = point.value if point else None
    return {
        "type": w.type,
        "title": w.title or kpi.title,
        "unit": kpi.unit.value,
        "value": number(value),
        "formatted": fmt(value),
        "delta": _delta(point, kpi.direction, fmt) if w.compare != "none" else None,
        "target": number(point.target) if point else None,
        "target_formatted": fmt(point.target) if point and point.target is not None else None,
        "attainment": number(point.attainment) if point else None,
        **kpi_status(kpi, point, fmt),
        "stale": stale_notes(ctx, kpi.name),
        "sparkline": [[p.start_ms, number(p.value)] for p in spark],
        "link": kpi_link(kpi.name),
    }


def _latest(ctx: DashboardContext, name: str, compare: str) -> KpiPoint | None:
    points = ctx.kpi_latest(name, compare)
    return points[0] if points else None


def stale_notes(ctx: DashboardContext, kpi: str) -> list[str]:
    """Why the KPI's value is not current: the stale sources it reads (empty when none)."""
    return ctx.stale(kpi) if ctx.stale is not None else []


def kpi_status(kpi: KpiDefinition, point: KpiPoint | None, fmt: Format) -> Payload:
    status = point.status if point else Status.UNKNOWN
    target = point.target if point else None
    text = status_text(status, kpi.thresholds, kpi.direction, fmt, target)
    return {"status": status.value, "status_text": text}


def _delta(point: KpiPoint | None, direction: Direction, fmt: Format) -> Payload | None:
    if point is None or point.value is None or point.compare is None:
        return None
    diff = point.value - point.compare
    good = None
    if diff and direction is not Direction.TARGET_IS_BEST:
        good = (diff > 0) == (direction is Direction.HIGHER_IS_BETTER)
    return {
        "value": number(diff),
        "formatted": fmt.signed(diff),
        "pct": number(point.change),
        "good": good,
    }


def _query_card(ctx: DashboardContext, w: MetricCard, expr: str) -> Payload:
    fmt = Format(w.unit or "")
    rng = ctx.range.ending(w.range)
    value = query_value(ctx, expr, rng.end_ms)
    before = query_value(ctx, expr, rng.end_ms - rng.span_ms) if w.compare != "none" else None
    delta = None
    if value is not None and before is not None:
        pct = value / before - 1 if before else None
        delta = {"value": value - before, "formatted": fmt.signed(value - before), "pct": pct}
        delta["good"] = None
    return {
        "type": w.type,
        "title": w.title or expr,
        "unit": w.unit or "",
        "value": value,
        "formatted": fmt(value),
        "delta": delta,
        "target": None,
        "target_formatted": None,
        "attainment": None,
        "status": Status.UNKNOWN.value if value is None else Status.OK.value,
        "status_text": "No data" if value is None else "OK",
        "sparkline": query_sparkline(ctx, expr, rng),
        "link": None,
    }


def query_value(ctx: DashboardContext, expr: str, at_ms: int) -> float | None:
    """The one value of an instant query; an error when it returns several series."""
    vector = ctx.promql_instant(expr, at_ms)
    rows = [i for i in range(len(vector.labels)) if vector.present[i][0]]
    if len(rows) > 1:
        raise BadDataError(
            f"query {expr!r} returns {len(rows)} series; aggregate it to one, e.g. sum(...)"
        )
    return number(float(vector.values[rows[0]][0])) if rows else None


def query_sparkline(ctx: DashboardContext, expr: str, rng: Any) -> list[list[Any]]:
    from opsmetrics.dashboards.context import vector_points

    vector = ctx.promql_range(expr, rng)
    if not vector.labels:
        return []
    first, _ = rng.steps()
    return vector_points(vector, 0, first, rng.step_ms)


def gauge(ctx: DashboardContext, w: Gauge) -> Payload:
    if w.kpi is not None:
        kpi = ctx.catalog.get(w.kpi)
        fmt, point = Format.of(kpi), _latest(ctx, kpi.name, "none")
        value = point.value if point else None
        bands = _kpi_bands(kpi, point, w.thresholds)
        unit, title = kpi.unit.value, w.title or kpi.title
    else:
        assert w.query is not None
        fmt, value = Format(w.unit or ""), query_value(ctx, w.query, ctx.range.end_ms)
        bands = _bands(w.thresholds or WidgetThresholds())
        unit, title = w.unit or "", w.title or w.query
    direction = Direction(bands["direction"])
    limits = Thresholds(bands["warning"], bands["critical"])
    status = threshold_status(value, limits, direction)
    return {
        "type": w.type,
        "title": title,
        "unit": unit,
        "value": number(value),
        "formatted": fmt(value),
        **_range_of(w, unit, value, bands),
        "thresholds": bands,
        "status": status.value,
        "status_text": status_text(status, limits, direction, fmt, bands["good"]),
        "stale": stale_notes(ctx, w.kpi) if w.kpi is not None else [],
    }


def _kpi_bands(
    kpi: KpiDefinition, point: KpiPoint | None, given: WidgetThresholds | None
) -> Payload:
    if given is not None:
        return _bands(given)
    good = point.target if point else None
    direction = kpi.direction
    if direction is Direction.TARGET_IS_BEST:
        direction = Direction.HIGHER_IS_BETTER
    return {
        "good": good,
        "warning": kpi.thresholds.warning,
        "critical": kpi.thresholds.critical,
        "direction": direction.value,
    }


def _bands(t: WidgetThresholds) -> Payload:
    direction = direction_of(t.good, t.warning, t.critical)
    return {"good": t.good, "warning": t.warning, "critical": t.critical,
            "direction": direction.value}  # fmt: skip


def _range_of(w: Gauge, unit: str, value: float | None, bands: Payload) -> Payload:
    """min/max: as given; percent 0..1; else 0 up to the largest of value and bands, +20%."""
    if unit == "percent":
        low, high = 0.0, 1.0
    else:
        known = [abs(x) for x in (value, bands["good"], bands["warning"], bands["critical"]) if x]
        low, high = 0.0, max(known, default=1.0) * 1.2
    return {"min": w.min if w.min is not None else low, "max": w.max if w.max is not None else high}


def status_grid(ctx: DashboardContext, w: StatusGrid) -> Payload:
    items = [_kpi_item(ctx, name) for name in w.kpis]
    items += [_query_item(ctx, q) for q in w.queries]
    return {"type": w.type, "title": w.title or "Status", "items": items}


def _kpi_item(ctx: DashboardContext, name: str) -> Payload:
    kpi = ctx.catalog.get(name)
    fmt, point = Format.of(kpi), _latest(ctx, name, "none")
    value = point.value if point else None
    return {
        "name": name,
        "title": kpi.title,
        "value": number(value),
        "formatted": fmt(value),
        **kpi_status(kpi, point, fmt),
        "stale": stale_notes(ctx, name),
        "link": kpi_link(name),
    }


def _query_item(ctx: DashboardContext, q: QueryRef) -> Payload:
    fmt = Format(q.unit)
    value = query_value(ctx, q.expr, ctx.range.end_ms)
    t = q.thresholds or WidgetThresholds()
    direction = direction_of(t.good, t.warning, t.critical)
    limits = Thresholds(t.warning, t.critical)
    status = threshold_status(value, limits, direction)
    return {
        "name": q.legend or q.expr,
        "title": q.title or q.legend or q.expr,
        "value": value,
        "formatted": fmt(value),
        "status": status.value,
        "status_text": status_text(status, limits, direction, fmt),
        "link": None,
    }


TABLE_COLUMNS = ["KPI", "Value", "Target", "Status", "Change"]


def table(ctx: DashboardContext, w: TableWidget) -> Payload:
    if w.query is not None:
        return _query_table(ctx, w, w.query)
    rows, links = [], []
    for name in w.kpis:
        kpi = ctx.catalog.get(name)
        fmt, point = Format.of(kpi), _latest(ctx, name, w.compare)
        delta = _delta(point, kpi.direction, fmt) if w.compare != "none" else None
        stale = " (stale)" if stale_notes(ctx, name) else ""
        rows.append(
            [
                kpi.title,
                fmt(point.value if point else None) + stale,
                fmt(point.target) if point and point.target is not None else "–",
                kpi_status(kpi, point, fmt)["status"],
                delta["formatted"] if delta else "–",
            ]
        )
        links.append(kpi_link(name))
    return {"type": w.type, "title": w.title or "KPIs", "columns": TABLE_COLUMNS,
            "rows": rows, "links": links}  # fmt: skip


def _query_table(ctx: DashboardContext, w: TableWidget, expr: str) -> Payload:
    vector = ctx.promql_instant(expr, ctx.range.end_ms)
    names = sorted({name for labels in vector.labels for name, _ in labels if name != "__name__"})
    rows = []
    for i in sorted(range(len(vector.labels)), key=lambda i: vector.labels[i]):
        if vector.present[i][0]:
            labels = dict(vector.labels[i])
            rows.append([labels.get(n, "") for n in names] + [number(float(vector.values[i][0]))])
    return {"type": w.type, "title": w.title or expr, "columns": [*names, "value"], "rows": rows,
            "links": [None] * len(rows)}  # fmt: skip
