"""Payloads of the chart widgets: trend charts (with comparison overlay, annotations, forecast
band and anomalies), bar charts and scatter plots with a regression line.

KPIs are drawn per calendar period at the range's grain (timestamp = period start); queries
per step of the range. A comparison overlay is the same range one period (its length) or 364
days earlier, shifted onto the current one.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from opsmetrics.catalog.dashboard_schema import Axis, BarWidget, QueryRef, ScatterWidget, TrendChart
from opsmetrics.catalog.initiatives import all_initiatives
from opsmetrics.catalog.kpi_model import Direction
from opsmetrics.dashboards.analysis import anomalies_of, complete, forecast_of
from opsmetrics.dashboards.context import DAY, DashboardContext, TimeRange, vector_points
from opsmetrics.dashboards.format import Format, number
from opsmetrics.dashboards.kpi import kpi_link
from opsmetrics.query.promql.values import InstantVector

Payload = dict[str, Any]
Points = list[list[Any]]
_LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def trend_chart(ctx: DashboardContext, w: TrendChart) -> Payload:
    rng = ctx.range.ending(w.range)
    if w.step is not None:
        rng = TimeRange(rng.start_ms, rng.end_ms, w.step, rng.grain)
    shift = _shift(w.compare, rng)
    series = [_kpi_series(ctx, name, rng, shift) for name in w.kpis]
    for q in w.queries:
        series += _query_series(ctx, q, rng, shift)
    single = ctx.catalog.get(w.kpis[0]) if len(w.kpis) == 1 and not w.queries else None
    first = series[0] if series else None
    return {
        "type": w.type,
        "title": w.title or _title(ctx, w),
        "unit": series[0]["unit"] if series else (w.unit or ""),
        "series": series,
        "target": _target(single, rng),
        "thresholds": _thresholds(single),
        "annotations": annotations_in(ctx, rng, w.kpis) if w.annotations else [],
        **_analysis(ctx, w, first["points"] if first else None, rng),
    }


def _analysis(
    ctx: DashboardContext, w: TrendChart, points: Points | None, rng: TimeRange
) -> Payload:
    """The forecast band and anomalies of the first series (complete periods only), each when
    the widget asks for it."""
    done = complete(points, rng.end_ms) if points is not None else []
    out: Payload = {"forecast": None, "anomalies": []}
    if done and w.forecast:
        out["forecast"] = ctx.analysed("forecast", done, lambda: forecast_of(done, rng))
    if done and w.anomalies:
        out["anomalies"] = ctx.analysed("anomalies", done, lambda: anomalies_of(done))
    return out


def _title(ctx: DashboardContext, w: TrendChart) -> str:
    names = [ctx.catalog.get(n).title for n in w.kpis] + [q.title or q.legend for q in w.queries]
    return ", ".join(n for n in names if n) or "Trend"


def _shift(compare: str, rng: TimeRange) -> int | None:
    if compare == "previous_period":
        return rng.span_ms
    if compare == "previous_year":
        return 364 * DAY
    return None


def _kpi_series(ctx: DashboardContext, name: str, rng: TimeRange, shift: int | None) -> Payload:
    kpi = ctx.catalog.get(name)
    points = _kpi_points(ctx, name, rng)
    before = None
    if shift is not None:
        before = [[t + shift, v] for t, v in _kpi_points(ctx, name, rng.shifted(shift))]
    return {"name": name, "label": kpi.title, "unit": kpi.unit.value, "points": points,
            "compare_points": before, "link": kpi_link(name)}  # fmt: skip


def _kpi_points(ctx: DashboardContext, name: str, rng: TimeRange) -> Points:
    return [[p.start_ms, number(p.value)] for p in ctx.kpi_series(name, rng).points]


def _query_series(
    ctx: DashboardContext, q: QueryRef, rng: TimeRange, shift: int | None
) -> list[Payload]:
    vector = ctx.promql_range(q.expr, rng)
    first, _ = rng.steps()
    before: InstantVector | None = None
    if shift is not None:
        before = ctx.promql_range(q.expr, rng.shifted(shift))
    out = []
    for i in sorted(range(len(vector.labels)), key=lambda i: vector.labels[i]):
        labels = vector.labels[i]
        label = legend(q.legend, labels) or q.title or q.expr
        compare = None
        if before is not None and shift is not None:
            compare = _matching_points(before, labels, first - shift, rng.step_ms, shift)
        out.append({"name": label, "label": label, "unit": q.unit,
                    "points": vector_points(vector, i, first, rng.step_ms),
                    "compare_points": compare, "link": None})  # fmt: skip
    return out


def _matching_points(
    vector: InstantVector, labels: Any, first: int, step: int, shift: int
) -> Points | None:
    rows = [i for i, other in enumerate(vector.labels) if other == labels]
    if not rows:
        return None
    return [[t + shift, v] for t, v in vector_points(vector, rows[0], first, step)]


def legend(template: str, labels: Any) -> str:
    """`{{route}} {{code}}` filled from the labels (Grafana's legend format)."""
    values = dict(labels)
    return _LEGEND.sub(lambda m: values.get(m.group(1), ""), template).strip()


def _target(kpi: Any, rng: TimeRange) -> float | None:
    if kpi is None or kpi.target is None:
        return None
    from opsmetrics.query.kpi.periods import local_date

    return number(kpi.target.at(local_date(rng.end_ms, "UTC")))


def _thresholds(kpi: Any) -> Payload | None:
    if kpi is None or (kpi.thresholds.warning is None and kpi.thresholds.critical is None):
        return None
    direction = kpi.direction
    if direction is Direction.TARGET_IS_BEST:
        return None
    return {"warning": kpi.thresholds.warning, "critical": kpi.thresholds.critical,
            "direction": direction.value}  # fmt: skip


def annotations_in(ctx: DashboardContext, rng: TimeRange, kpis: list[str]) -> list[Payload]:
    """Deploys, incidents and other annotations in the range; KPI definition changes."""
    found = []
    for a in ctx.storage.read_annotations(rng.start_ms, rng.end_ms):
        kind = next((t for t in a.tags if t in ("deploy", "incident")), None)
        kind = kind or (a.tags[0] if a.tags else "annotation")
        found.append({"ts": a.ts, "end_ts": a.end, "title": a.title, "kind": kind,
                      "text": a.text})  # fmt: skip
    for name in kpis:
        for v in ctx.storage.kpi_versions(name):
            if v.version > 1 and rng.start_ms <= v.recorded_ms <= rng.end_ms:
                found.append({"ts": v.recorded_ms, "end_ts": None, "kind": "definition",
                              "title": f"{name} definition v{v.version}",
                              "text": f"changed by {v.author}" if v.author else ""})  # fmt: skip
    return sorted(found + initiative_marks(ctx, rng, kpis), key=lambda a: a["ts"])


def initiative_marks(ctx: DashboardContext, rng: TimeRange, kpis: list[str]) -> list[Payload]:
    """The initiatives meant to move one of `kpis` that overlap the range (docs/initiatives.md)."""
    names = set(ctx.catalog.names())
    defined = all_initiatives(ctx.catalog.config_dir, names, ctx.storage.initiatives())
    return [
        {"ts": i.start_ms, "end_ts": i.end_ms, "kind": "initiative",
         "title": f"Initiative: {i.title}", "text": f"owner {i.owner}"}
        for i in defined.values()
        if any(k.kpi in kpis for k in i.kpis)
        and i.start_ms <= rng.end_ms and (i.end_ms is None or i.end_ms >= rng.start_ms)
    ]  # fmt: skip


def bar(ctx: DashboardContext, w: BarWidget) -> Payload:
    if w.kpi is not None:
        assert w.by is not None
        kpi = ctx.catalog.get(w.kpi)
        fmt = Format.of(kpi)
        points = ctx.kpi_latest(kpi.name, "none", (w.by,))
        bars = [(dict(p.group).get(w.by, ""), number(p.value)) for p in points]
        unit, title = kpi.unit.value, w.title or f"{kpi.title} by {w.by}"
    else:
        assert w.query is not None
        fmt = Format(w.unit or "")
        vector = ctx.promql_instant(w.query, ctx.range.end_ms)
        bars = [
            (legend(w.legend, labels) or _labels_text(labels), number(float(vector.values[i][0])))
            for i, labels in enumerate(vector.labels)
            if vector.present[i][0]
        ]
        unit, title = w.unit or "", w.title or w.query
    bars.sort(key=lambda b: -(b[1] if b[1] is not None else -math.inf))
    shown = [{"label": lab, "value": v, "formatted": fmt(v)} for lab, v in bars]
    return {"type": w.type, "title": title, "unit": unit, "bars": shown}


def _labels_text(labels: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels if k != "__name__") or "value"


def scatter(ctx: DashboardContext, w: ScatterWidget) -> Payload:
    rng = ctx.range.ending(w.range)
    xs, ys = _axis_points(ctx, w.x, rng, w.step), _axis_points(ctx, w.y, rng, w.step)
    pairs = sorted((t, x, ys[t]) for t, x in xs.items() if t in ys)
    points = [[x, y] for _, x, y in pairs]
    fit = _regression(points) if w.regression else None
    x, y = _axis_info(ctx, w.x), _axis_info(ctx, w.y)
    return {
        "type": w.type,
        "title": w.title or f"{y['title']} vs {x['title']}",
        "x": x,
        "y": y,
        "points": points,
        "regression": fit,
        "finding": _finding(fit, x, y, len(points)),
    }


def _axis_points(
    ctx: DashboardContext, axis: Axis, rng: TimeRange, step_ms: int | None
) -> dict[int, float]:
    """Values by time: a KPI per period of the grain; a query at every step (default: at every
    period start)."""
    if axis.kpi is not None:
        pts = ctx.kpi_series(axis.kpi, rng).points
        return {p.start_ms: p.value for p in pts if number(p.value) is not None}  # type: ignore[misc]
    assert axis.query is not None
    by_grain = {"day": DAY, "hour": 3_600_000}.get(rng.grain.value, 7 * DAY)
    step = step_ms or by_grain
    grid = TimeRange(rng.start_ms, rng.end_ms, step, rng.grain)
    vector = ctx.promql_range(axis.query, grid)
    if not vector.labels:
        return {}
    first, _ = grid.steps()
    return {t: v for t, v in vector_points(vector, 0, first, step) if v is not None}


def _axis_info(ctx: DashboardContext, axis: Axis) -> Payload:
    if axis.kpi is not None:
        kpi = ctx.catalog.get(axis.kpi)
        return {"name": kpi.name, "title": axis.title or kpi.title, "unit": kpi.unit.value}
    return {"name": axis.query, "title": axis.title or axis.query, "unit": axis.unit}


def _regression(points: Points) -> Payload | None:
    """Least squares y = slope·x + intercept, Pearson r and its two-sided p-value."""
    if len(points) < 3:
        return None
    x = np.array([p[0] for p in points], dtype=np.float64)
    y = np.array([p[1] for p in points], dtype=np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy import stats

    fit = stats.linregress(x, y)
    return {"slope": float(fit.slope), "intercept": float(fit.intercept),
            "r": float(fit.rvalue), "p_value": float(fit.pvalue)}  # fmt: skip


def _finding(fit: Payload | None, x: Payload, y: Payload, n: int) -> str | None:
    if fit is None:
        return None
    if fit["p_value"] >= 0.05:
        return f"No significant relation between {x['title']} and {y['title']} ({n} points)."
    way = "rises" if fit["slope"] > 0 else "falls"
    return (
        f"{y['title']} {way} as {x['title']} rises (r = {fit['r']:.2f}, "
        f"p = {fit['p_value']:.3g}, {n} points); correlation, not proof of cause."
    )
