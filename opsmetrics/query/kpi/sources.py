"""Formula kinds that read stored data: event, promql, conversion, state, sql, manual.

Each compiles to one storage query over all the periods asked for (promql: one range query per
run of evenly spaced period ends; sql: see `sql_values`) and returns a `Values`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from opsmetrics.catalog.kpi_model import (
    ConversionFormula,
    EventAgg,
    EventField,
    EventFormula,
    FieldSource,
    FilterOp,
    PromqlFormula,
    PropFilter,
    SqlFormula,
    StateFormula,
)
from opsmetrics.query import events as ev
from opsmetrics.query.kpi.context import EvalContext
from opsmetrics.query.kpi.excluding import apply_exclusions, reported
from opsmetrics.query.kpi.exclusions import merged
from opsmetrics.query.kpi.model import Cell, Group, KpiQueryError, Period, Values
from opsmetrics.query.kpi.sql_run import check_kpi_sql, run_kpi_sql
from opsmetrics.query.promql.engine import evaluate_instant, evaluate_range
from opsmetrics.query.promql.values import InstantVector, Scalar, Value
from opsmetrics.storage.event_records import EntityKey, ValueFilter
from opsmetrics.storage.kpi_records import ConversionQuery, StateCombine, StateQuery

_FILTER_OPS = {
    FilterOp.EQ: ev.FilterOp.EQ,
    FilterOp.NE: ev.FilterOp.NE,
    FilterOp.IN: ev.FilterOp.IN,
    FilterOp.NOT_IN: ev.FilterOp.NOT_IN,
    FilterOp.EXISTS: ev.FilterOp.EXISTS,
    FilterOp.GT: ev.FilterOp.GT,
    FilterOp.GTE: ev.FilterOp.GTE,
    FilterOp.LT: ev.FilterOp.LT,
    FilterOp.LTE: ev.FilterOp.LTE,
}
_NUMERIC_OPS = (FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE)
_ZERO_WHEN_EMPTY = (EventAgg.COUNT, EventAgg.SUM, EventAgg.UNIQUE)
_COUNTS = (EventAgg.COUNT, EventAgg.UNIQUE)
#: "The start of the data": events are stored with timestamps from the epoch on.
DATA_START_MS = 0
#: Aggregations whose value over a span is the sum of their values over its parts.
ADDITIVE = (EventAgg.COUNT, EventAgg.SUM)


def span(periods: Sequence[Period]) -> tuple[int, int]:
    return min(p.start_ms for p in periods), max(p.end_ms for p in periods)


# --- event ------------------------------------------------------------------------------
def event_values(ctx: EvalContext, f: EventFormula, periods: Sequence[Period]) -> Values:
    start, end = span(periods)
    q = _aggregate(ctx, f, start, end, ev.Grain(ctx.grain.value))
    found: dict[Group, dict[int, ev.Bucket]] = {}
    for b in ev.aggregate(ctx.storage, q):
        found.setdefault(_group(ctx.by, b.group), {})[b.start_ms] = b
    if not ctx.by:
        found.setdefault((), {})
    empty = Cell(0.0, 0) if f.agg in _ZERO_WHEN_EMPTY else Cell(None, 0)
    cells = {
        g: [_bucket_cell(by_start.get(p.start_ms), empty) for p in periods]
        for g, by_start in found.items()
    }
    excluded = apply_exclusions(ctx, q, cells, periods, lambda g: _group(ctx.by, g), empty)
    return Values(cells, is_count=f.agg in _COUNTS, excluded=excluded)


def event_total_before(ctx: EvalContext, f: EventFormula, end_ms: int) -> dict[Group, float]:
    """The total of an additive (count, sum) event formula over all events before end_ms, per
    group: one storage aggregate, not one per period."""
    if f.agg not in ADDITIVE:
        raise KpiQueryError(f"event {f.name!r}: {f.agg.value} has no total over a span")
    if end_ms <= DATA_START_MS:
        return {}
    q = _aggregate(ctx, f, DATA_START_MS, end_ms, None)
    return {_group(ctx.by, b.group): b.value for b in ev.aggregate(ctx.storage, q)}


def _aggregate(
    ctx: EvalContext, f: EventFormula, start: int, end: int, grain: ev.Grain | None
) -> ev.EventAggregate:
    return ev.EventAggregate(
        f.name,
        ev.Agg(f.agg.value),
        start,
        end,
        grain,
        ctx.tz,
        tuple(_filter(w) for w in f.where),
        ctx.by,
        _value_prop(f),
        tuple(ValueFilter(_FILTER_OPS[b.op], b.value) for b in f.value_where),
    )


DAY_MS = 86_400_000


def rolling_unique_values(
    ctx: EvalContext, f: EventFormula, window_ms: int, periods: Sequence[Period]
) -> Values | None:
    """Distinct entities over the trailing window ending with each period (WAU, MAU…).

    Summing daily unique counts would count a returning user once per day; this asks storage
    for real distinct counts. None when it does not apply (not whole days, or broken down)."""
    by_entity = f.field is None or f.field.source is FieldSource.ENTITY
    if f.agg is not EventAgg.UNIQUE or not by_entity or ctx.by or window_ms % DAY_MS:
        return None
    start, end = span(periods)
    q = ev.RollingUnique(
        f.name, window_ms // DAY_MS, start, end, ctx.tz, tuple(_filter(w) for w in f.where)
    )
    days = sorted(ev.rolling_unique(ctx.storage, q), key=lambda b: b.start_ms)
    starts = [b.start_ms for b in days]
    column = []
    for p in periods:
        i = bisect.bisect_left(starts, p.end_ms) - 1  # the period's last local day
        ok = i >= 0 and days[i].start_ms >= p.start_ms and p.start_ms <= ctx.now_ms
        column.append(Cell(days[i].value, days[i].sample_size) if ok else Cell(None))
    cells: dict[Group, list[Cell]] = {(): column}
    reads = replace(_read_as(ctx, f.name, ev.Agg.COUNT, periods), where=q.where)
    excluded = apply_exclusions(ctx, reads, cells, periods, lambda _: (), Cell(None))
    return Values(cells, is_count=True, excluded=excluded)


def _read_as(
    ctx: EvalContext, name: str | None, agg: ev.Agg, periods: Sequence[Period]
) -> ev.EventAggregate:
    """The events a non-event formula reads in `periods` as an aggregation reading them the
    same way (the caller sets the key, field and filters it reads with `replace`): what storage
    reports that aggregation left out, that formula left out too."""
    start, end = span(periods)
    return ev.EventAggregate(name, agg, start, end, ev.Grain(ctx.grain.value), ctx.tz)


def _bucket_cell(b: ev.Bucket | None, empty: Cell) -> Cell:
    if b is None:
        return empty
    return Cell(None if math.isnan(b.value) else b.value, b.sample_size)


def _value_prop(f: EventFormula) -> str | None:
    """The property a value aggregation reads (None: the event's value)."""
    if (f.agg is EventAgg.COUNT and not f.value_where) or f.field is None:
        return None
    wanted = FieldSource.ENTITY if f.agg is EventAgg.UNIQUE else FieldSource.VALUE
    if f.field.source is wanted:
        return None
    if f.field.source is FieldSource.PROP and f.agg is not EventAgg.UNIQUE:
        return f.field.prop
    raise KpiQueryError(
        f"event {f.name!r}: {f.agg.value} of {f.field} is not supported yet; "
        f"aggregate {wanted.value}"
    )


def _filter(w: PropFilter) -> ev.PropFilter:
    op = _FILTER_OPS.get(w.op)
    if op is None:
        raise KpiQueryError(
            f"where {w.prop}: operator {w.op.value!r} is not supported by KPI evaluation yet; "
            "use eq, ne, in, not_in, gt, gte, lt, lte or exists"
        )
    numeric = w.op in _NUMERIC_OPS
    if numeric and not all(_is_number(v) for v in w.values):
        raise KpiQueryError(f"where {w.prop}: {w.op.value} compares numbers, got {w.values!r}")
    return ev.PropFilter(w.prop, op, tuple(ev.prop_text(v) for v in w.values))


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _group(by: Sequence[str], values: dict[str, str]) -> Group:
    return tuple((d, values.get(d, "")) for d in by)


# --- promql -----------------------------------------------------------------------------
def promql_values(ctx: EvalContext, f: PromqlFormula, periods: Sequence[Period]) -> Values:
    """The expression evaluated at each period's end (at now for the current period)."""
    query = f.query if not ctx.by else f"sum by ({', '.join(ctx.by)}) ({f.query})"
    times = [min(p.end_ms, ctx.now_ms) for p in periods]
    cells: dict[Group, list[Cell]] = {} if ctx.by else {(): [Cell(None)] * len(periods)}
    for first, run in _even_runs(times):
        value = _run(ctx, query, run)
        for group, column in _columns(ctx, f.query, value, len(run)):
            row = cells.setdefault(group, [Cell(None)] * len(periods))
            row[first : first + len(run)] = column
    return Values(cells)


def _run(ctx: EvalContext, query: str, times: list[int]) -> Value:
    if len(times) == 1:
        return evaluate_instant(ctx.storage, query, times[0])
    return evaluate_range(ctx.storage, query, times[0], times[-1], times[1] - times[0])


def _even_runs(times: list[int]) -> list[tuple[int, list[int]]]:
    """Consecutive evenly spaced stretches of `times`, each with the index it starts at."""
    runs: list[tuple[int, list[int]]] = []
    for i, t in enumerate(times):
        if runs:
            _, run = runs[-1]
            step_ok = len(run) < 2 or t - run[-1] == run[1] - run[0]
            if t > run[-1] and step_ok:
                run.append(t)
                continue
        runs.append((i, [t]))
    return runs


def _columns(ctx: EvalContext, source: str, value: Value, n: int) -> list[tuple[Group, list[Cell]]]:
    if isinstance(value, Scalar):
        return [((), [_num(v) for v in np.asarray(value.values).reshape(-1)[:n]])]
    if not isinstance(value, InstantVector):
        raise KpiQueryError(f"promql {source!r} must return a number or an instant vector")
    if len(value) > 1 and not ctx.by:
        raise KpiQueryError(
            f"promql {source!r} returns {len(value)} series; aggregate it to one, e.g. sum(...)"
        )
    out = []
    for labels, values, present in zip(value.labels, value.values, value.present, strict=True):
        group = _group(ctx.by, dict(labels))
        out.append(
            (group, [_num(v) if ok else Cell(None) for v, ok in zip(values, present, strict=True)])
        )
    return out


def _num(v: float) -> Cell:
    return Cell(float(v) if math.isfinite(v) else None)


# --- conversion -------------------------------------------------------------------------
def conversion_values(ctx: EvalContext, f: ConversionFormula, periods: Sequence[Period]) -> Values:
    q = ConversionQuery(
        f.from_event,
        f.to_event,
        f.within_ms,
        tuple(p.start_ms for p in periods),
        tuple(p.end_ms for p in periods),
        f.entity_prop,
        ctx.by,
    )
    empty = [Cell(None, 0, 0)] * len(periods)
    cells: dict[Group, list[Cell]] = {} if ctx.by else {(): list(empty)}
    for row in ctx.storage.kpi_conversion(q):
        group = tuple(zip(ctx.by, row.group, strict=True))
        rate = row.converted / row.entered
        cells.setdefault(group, list(empty))[row.period] = Cell(rate, row.entered, row.converted)
    key = EntityKey(f.entity_prop)
    entered = replace(_read_as(ctx, f.from_event, ev.Agg.COUNT, periods), key=key, by=ctx.by)
    excluded = apply_exclusions(ctx, entered, cells, periods, lambda g: _group(ctx.by, g), empty[0])
    excluded += reported(ctx, replace(_read_as(ctx, f.to_event, ev.Agg.COUNT, periods), key=key))
    return Values(cells, excluded=merged(excluded))


# --- state ------------------------------------------------------------------------------
def state_values(ctx: EvalContext, f: StateFormula, periods: Sequence[Period]) -> Values:
    if ctx.by:
        raise KpiQueryError("state KPIs cannot be broken down by dimensions yet")
    q = StateQuery(
        f.event,
        _prop_of(f.field, FieldSource.VALUE),
        _prop_of(f.by, FieldSource.ENTITY),
        StateCombine(f.agg.value),
        tuple(min(p.end_ms, ctx.now_ms + 1) for p in periods),
    )
    zero = f.agg in (f.agg.SUM, f.agg.COUNT)
    empty = Cell(0.0 if zero else None, 0)
    column = [empty] * len(periods)
    for row in ctx.storage.kpi_state(q):
        column[row.period] = Cell(row.value, row.entities)
    cells: dict[Group, list[Cell]] = {(): column}
    reads = _read_as(ctx, f.event, ev.Agg.SUM, periods)
    reads = replace(reads, key=EntityKey(q.key_prop), value_prop=q.field_prop)
    excluded = apply_exclusions(ctx, reads, cells, periods, lambda _: (), empty)
    return Values(cells, is_count=f.agg is f.agg.COUNT, excluded=excluded)


def _prop_of(field: EventField, plain: FieldSource) -> str | None:
    if field.source is plain:
        return None
    if field.source is FieldSource.PROP:
        return field.prop
    raise KpiQueryError(f"state: {field} cannot be used here; use {plain.value} or props.<name>")


# --- sql --------------------------------------------------------------------------------
def sql_values(ctx: EvalContext, f: SqlFormula, periods: Sequence[Period], kpi: str) -> Values:
    """Rows with a `ts` column go to the period holding ts (values summed, the other columns
    named in `by` break down); otherwise the query runs once per period with $start_ms and
    $end_ms bound to its bounds and the first numeric column of its first row is the value."""
    check_kpi_sql(f.query, kpi)
    start, end = span(periods)
    result = run_kpi_sql(ctx.storage, f.query, kpi, start, end)
    if "ts" in result.columns:
        return _sql_rows(ctx, result.columns, result.rows, periods)
    column = []
    for p in periods:
        got = run_kpi_sql(ctx.storage, f.query, kpi, p.start_ms, p.end_ms)
        column.append(Cell(_first_number(got.rows)))
    return Values({(): column})


def _sql_rows(
    ctx: EvalContext, columns: list[str], rows: list[tuple[object, ...]], periods: Sequence[Period]
) -> Values:
    if "value" not in columns:
        raise KpiQueryError("sql: a query with a ts column must also return a value column")
    missing = [d for d in ctx.by if d not in columns]
    if missing:
        raise KpiQueryError(f"sql: cannot break down by {missing[0]!r}: no such column")
    starts = np.array([p.start_ms for p in periods], dtype=np.int64)
    ends = np.array([p.end_ms for p in periods], dtype=np.int64)
    ts_i, value_i = columns.index("ts"), columns.index("value")
    dims = [columns.index(d) for d in ctx.by]
    sums: dict[Group, dict[int, float]] = {} if ctx.by else {(): {}}
    for row in rows:
        ts, value = _ms(row[ts_i]), row[value_i]
        i = int(np.searchsorted(starts, ts, side="right")) - 1
        if i < 0 or ts >= ends[i] or not isinstance(value, int | float):
            continue
        group = tuple((d, str(row[j])) for d, j in zip(ctx.by, dims, strict=True))
        per = sums.setdefault(group, {})
        per[i] = per.get(i, 0.0) + float(value)
    cells = {g: [Cell(per.get(i)) for i in range(len(periods))] for g, per in sums.items()}
    return Values(cells)


def _ms(v: object) -> int:
    if isinstance(v, datetime):
        aware = v if v.tzinfo is not None else v.replace(tzinfo=UTC)
        return round(aware.timestamp() * 1000)
    if isinstance(v, int | float):
        return int(v)
    raise KpiQueryError(f"sql: ts must be epoch milliseconds or a timestamp, got {v!r}")


def _first_number(rows: list[tuple[object, ...]]) -> float | None:
    if not rows:
        return None
    for v in rows[0]:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return None


# --- manual -----------------------------------------------------------------------------
def manual_values(ctx: EvalContext, kpi: str, periods: Sequence[Period]) -> Values:
    """The last value entered for a moment inside each period; None where there is none."""
    if ctx.by:
        raise KpiQueryError("manual KPIs cannot be broken down by dimensions")
    starts = [p.start_ms for p in periods]
    got = ctx.storage.manual_kpi_period_values(kpi, starts, [p.end_ms for p in periods])
    return Values({(): [Cell(got.get(i)) for i in range(len(periods))]})
