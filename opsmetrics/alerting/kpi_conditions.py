"""What a KPI alert rule looks at: the KPI over a trailing window, its baseline, the volume
behind it and the age of its newest input (`read`), and whether that breaches the rule (`judge`).

A KPI's value over a window [now - window, now) is computed like the evaluator computes a
period (query/kpi), except that event aggregations are asked for the window as one span
rather than calendar buckets, so windows slide with the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from opsmetrics.alerting.evaluator import vector_rows
from opsmetrics.alerting.kpi_anomaly import anomaly_direction, directed, kpi_anomaly
from opsmetrics.alerting.kpi_forecast import Outlook, kpi_outlook
from opsmetrics.analysis.anomalies import DEFAULT_THRESHOLD
from opsmetrics.catalog.kpi_alerts import Baseline, Condition, KpiAlertSpec
from opsmetrics.catalog.kpi_expr import Binary, Expr, Name, Negate, Number
from opsmetrics.catalog.kpi_model import (
    Direction,
    EventAgg,
    EventFormula,
    ExprFormula,
    Grain,
    KpiDefinition,
    KpiRef,
    LibraryFormula,
    Operand,
    RatioFormula,
)
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.model import METRIC_NAME, Labels
from opsmetrics.query import events as ev
from opsmetrics.query.kpi import sources
from opsmetrics.query.kpi.context import EvalContext
from opsmetrics.query.kpi.formulas import compute, expand
from opsmetrics.query.kpi.freshness import newest_input_ms
from opsmetrics.query.kpi.model import Period
from opsmetrics.query.promql.engine import evaluate_instant
from opsmetrics.storage.base import Storage

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS
GRAIN_MS = {
    Grain.HOUR: HOUR_MS,
    Grain.DAY: 24 * HOUR_MS,
    Grain.WEEK: WEEK_MS,
    Grain.MONTH: 30 * 24 * HOUR_MS,
    Grain.QUARTER: 91 * 24 * HOUR_MS,
    Grain.YEAR: 365 * 24 * HOUR_MS,
}
#: `no_data` without `for`: fire after an hour without new input.
DEFAULT_NO_DATA_MS = HOUR_MS
_ZERO_WHEN_EMPTY = (EventAgg.COUNT, EventAgg.SUM, EventAgg.UNIQUE)


@dataclass(frozen=True, slots=True)
class Reading:
    """One instance's measurements at one evaluation."""

    value: float | None
    baseline: float | None = None
    volume: float | None = None
    gate_open: bool = True
    age_ms: int | None = None  # no_data: now - newest input (None: never any)
    never: bool = False  # no_data: there never was input; age_ms counts from `since_ms`
    outlook: Outlook | None = None  # forecast: the mean of each future period
    score: float | None = None  # anomaly: robust z of the last complete period (None: no baseline)
    explanation: str = ""  # anomaly: the detector's words ("1,240 vs expected 1,900–2,300 …")

    @property
    def change(self) -> float | None:
        if self.value is None or self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline - 1


@dataclass(frozen=True, slots=True)
class Verdict:
    """`severity` when the rule is breached; `ok` when it is not (a reading was possible);
    `cleared` when the measure is back past the line by the clear margin (hysteresis)."""

    severity: str | None
    ok: bool
    cleared: bool
    measure: float | None = None
    limit: float | None = None


# --- reading ------------------------------------------------------------------------------


def window_ms(spec: KpiAlertSpec, kpi: KpiDefinition | None) -> int:
    if spec.window_ms is not None:
        return spec.window_ms
    return GRAIN_MS[kpi.grain] if kpi is not None else HOUR_MS


def read(
    storage: Storage, catalog: Catalog, spec: KpiAlertSpec, now_ms: int, since_ms: int | None = None
) -> dict[Labels, Reading]:
    """The readings of a rule's instances: one for a KPI, one per series for PromQL.

    `since_ms` (when evaluation started): a KPI that never had data counts its age from it."""
    kpi = catalog.get(spec.kpi) if spec.kpi is not None else None
    width = window_ms(spec, kpi)
    gate, volume = _gate(storage, spec, now_ms - width, now_ms)
    if kpi is None:
        return _read_promql(storage, spec, now_ms, width, gate, volume)
    if spec.condition is Condition.NO_DATA:
        newest = newest_input_ms(storage, catalog, kpi)
        if newest is None:
            age = None if since_ms is None else now_ms - since_ms
            return {(): Reading(None, age_ms=age, never=True)}
        return {(): Reading(None, age_ms=now_ms - newest)}
    ctx = EvalContext(storage, catalog, now_ms, kpi.grain, "UTC")
    if spec.condition is Condition.FORECAST:
        last, outlook = kpi_outlook(ctx, kpi, spec, GRAIN_MS[kpi.grain])
        return {(): Reading(last, volume=volume, gate_open=gate, outlook=outlook)}
    if spec.condition is Condition.ANOMALY:
        got = kpi_anomaly(ctx, kpi, spec, GRAIN_MS[kpi.grain])
        scored = Reading(got.value, volume=volume, gate_open=gate, score=got.score)
        return {(): replace(scored, explanation=got.explanation)}
    value = kpi_window_value(ctx, kpi.formula, now_ms - width, now_ms, kpi.name)
    baseline = None
    if spec.condition is Condition.CHANGE:
        baseline = _baseline(ctx, spec, kpi, now_ms, width)
    return {(): Reading(value, baseline, volume, gate)}


def _baseline(
    ctx: EvalContext, spec: KpiAlertSpec, kpi: KpiDefinition, now_ms: int, width: int
) -> float | None:
    if spec.compare is Baseline.PREVIOUS_PERIOD:
        shifts = [width]
    elif spec.compare is Baseline.SAME_HOUR_LAST_WEEK:
        shifts = [WEEK_MS]
    else:
        shifts = [k * WEEK_MS for k in range(1, spec.weeks + 1)]
    got = [
        kpi_window_value(ctx, kpi.formula, now_ms - width - s, now_ms - s, kpi.name) for s in shifts
    ]
    known = [v for v in got if v is not None]
    return sum(known) / len(known) if known else None


def _read_promql(
    storage: Storage, spec: KpiAlertSpec, now_ms: int, width: int, gate: bool, volume: float | None
) -> dict[Labels, Reading]:
    assert spec.promql is not None
    now = _rows(storage, spec.promql, now_ms)
    if spec.condition is Condition.NO_DATA:  # as absent(): no series at all
        return {(): Reading(None, age_ms=0 if now else None)}
    before = (
        _rows(storage, spec.promql, now_ms - width) if spec.condition is Condition.CHANGE else {}
    )
    return {
        labels: Reading(value, before.get(labels), volume, gate) for labels, value in now.items()
    }


def _rows(storage: Storage, expr: str, at_ms: int) -> dict[Labels, float]:
    rows = vector_rows(evaluate_instant(storage, expr, at_ms))
    return {
        tuple(p for p in labels if p[0] != METRIC_NAME): value
        for labels, value in rows
        if math.isfinite(value)
    }


def _gate(storage: Storage, spec: KpiAlertSpec, start: int, end: int) -> tuple[bool, float | None]:
    """(open, volume): open when the volume over the window is above the rule's minimum."""
    gate = spec.volume
    if gate is None:
        return True, None
    volume: float | None = None
    if gate.event is not None:
        q = ev.EventAggregate(gate.event, ev.Agg.COUNT, start, end, None, "UTC")
        count = sum(b.value for b in ev.aggregate(storage, q))
        if count <= gate.count:
            return False, count
        volume = count
    if gate.promql is not None:
        value = sum(_rows(storage, gate.promql, end).values())
        if value <= gate.value:
            return False, value
        volume = value
    return True, volume


def kpi_window_value(ctx: EvalContext, f: Operand, start: int, end: int, kpi: str) -> float | None:
    """The value of formula `f` over [start, end)."""
    match f:
        case EventFormula():
            # One bucket for the whole window (grain None), with the formula's filters.
            q = sources._aggregate(ctx, f, start, end, None)
            buckets = ev.aggregate(ctx.storage, q)
            if not buckets:
                return 0.0 if f.agg in _ZERO_WHEN_EMPTY else None
            value = buckets[0].value
            return None if math.isnan(value) else value
        case RatioFormula():
            num = kpi_window_value(ctx, f.numerator, start, end, kpi)
            den = kpi_window_value(ctx, f.denominator, start, end, kpi)
            return None if num is None or not den else num / den
        case KpiRef():
            return kpi_window_value(ctx, ctx.catalog.get(f.name).formula, start, end, f.name)
        case LibraryFormula():
            return kpi_window_value(ctx, expand(f), start, end, kpi)
        case ExprFormula():
            return _expr_value(ctx, f.expr, dict(f.bindings), start, end, kpi)
    return compute(ctx, f, [Period(start, end)], kpi).only(1)[0].value


def _expr_value(
    ctx: EvalContext, e: Expr, bindings: dict[str, Operand], start: int, end: int, kpi: str
) -> float | None:
    match e:
        case Number():
            return e.value
        case Name():
            bound = bindings.get(e.id)
            if bound is not None:
                return kpi_window_value(ctx, bound, start, end, kpi)
            return kpi_window_value(ctx, KpiRef(e.id), start, end, e.id)
        case Negate():
            inner = _expr_value(ctx, e.operand, bindings, start, end, kpi)
            return None if inner is None else -inner
        case Binary():
            left = _expr_value(ctx, e.left, bindings, start, end, kpi)
            right = _expr_value(ctx, e.right, bindings, start, end, kpi)
            if left is None or right is None:
                return None
            return _binary(e, left, right)


def _binary(e: Binary, a: float, b: float) -> float | None:
    match e.op.value:
        case "+":
            return a + b
        case "-":
            return a - b
        case "*":
            return a * b
    return a / b if b else None


# --- judging ------------------------------------------------------------------------------


def judge(spec: KpiAlertSpec, kpi: KpiDefinition | None, r: Reading, now_ms: int) -> Verdict:
    if not r.gate_open:
        return Verdict(None, ok=True, cleared=True)
    if spec.condition is Condition.NO_DATA:
        limit = spec.window_ms or spec.for_ms or DEFAULT_NO_DATA_MS
        stale = r.age_ms is None or r.age_ms > limit
        severity = spec.severity or "warning"
        return Verdict(severity if stale else None, not stale, not stale, r.age_ms, limit)
    if spec.condition is Condition.FORECAST:
        return _judge_forecast(spec, kpi, r, now_ms)
    if spec.condition is Condition.ANOMALY:
        return _judge_anomaly(spec, kpi, r)
    measure = r.change if spec.condition is Condition.CHANGE else r.value
    if spec.op is not None and spec.limit is not None:
        return _against(measure, spec.op, [(spec.severity or "warning", spec.limit)], spec)
    assert kpi is not None  # kpi_alert_problems: threshold without limits needs thresholds
    op, lines, measure = _kpi_lines(kpi, r.value, now_ms)
    if spec.severity is not None:
        lines = [(spec.severity, limit) for _, limit in lines]
    return _against(measure, op, lines, spec)


def _judge_forecast(
    spec: KpiAlertSpec, kpi: KpiDefinition | None, r: Reading, now_ms: int
) -> Verdict:
    """The worst forecast value within the horizon, judged like a threshold."""
    if r.outlook is None:
        return Verdict(None, ok=False, cleared=False)
    mean = r.outlook.mean
    if spec.op is not None and spec.limit is not None:
        worst = min(mean) if spec.op == "<" else max(mean)
        return _against(worst, spec.op, [(spec.severity or "warning", spec.limit)], spec)
    assert kpi is not None
    op, lines, _ = _kpi_lines(kpi, None, now_ms)
    measures = [m for x in mean if (m := _kpi_lines(kpi, x, now_ms)[2]) is not None]
    worst_m = (min(measures) if op == "<" else max(measures)) if measures else None
    if spec.severity is not None:
        lines = [(spec.severity, limit) for _, limit in lines]
    return _against(worst_m, op, lines, spec)


def _judge_anomaly(spec: KpiAlertSpec, kpi: KpiDefinition | None, r: Reading) -> Verdict:
    """The score in the rule's direction against `threshold`; it clears below the threshold
    by the clear margin (hysteresis)."""
    if r.score is None:
        return Verdict(None, ok=False, cleared=False)
    measure = directed(r.score, anomaly_direction(spec, kpi))
    threshold = spec.score_threshold or DEFAULT_THRESHOLD
    return _against(measure, ">", [(spec.severity or "warning", threshold)], spec)


def _kpi_lines(
    kpi: KpiDefinition, value: float | None, now_ms: int
) -> tuple[str, list[tuple[str, float]], float | None]:
    """The KPI's thresholds as (operator, [(severity, line)] worst first, measure)."""
    t = kpi.thresholds
    lines = [(s, v) for s, v in (("critical", t.critical), ("warning", t.warning)) if v is not None]
    if kpi.direction is Direction.HIGHER_IS_BETTER:
        return "<", lines, value
    if kpi.direction is Direction.LOWER_IS_BETTER:
        return ">", lines, value
    day = datetime.fromtimestamp(now_ms / 1000, UTC).date()
    target = kpi.target.at(day) if kpi.target is not None else None
    measure = None if value is None or target is None else abs(value - target)
    return ">", lines, measure


def _against(
    measure: float | None, op: str, lines: list[tuple[str, float]], spec: KpiAlertSpec
) -> Verdict:
    if measure is None or not lines:
        return Verdict(None, ok=False, cleared=False, measure=measure)
    for severity, limit in lines:
        if measure < limit if op == "<" else measure > limit:
            return Verdict(severity, False, False, measure, limit)
    line = lines[-1][1]  # the mildest line: the alert clears when past it by the margin
    margin = abs(line) * spec.clear_margin
    cleared = measure >= line + margin if op == "<" else measure <= line - margin
    return Verdict(None, True, cleared, measure, line)
