"""Every formula kind to `Values` over a list of periods: dispatch, and the derived kinds
(ratio, expr, cumulative, library) that combine other formulas' values period by period.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import assert_never

from opsmetrics.catalog.kpi_expr import Binary, BinaryOp, Expr, Name, Negate, Number
from opsmetrics.catalog.kpi_library import LIBRARY
from opsmetrics.catalog.kpi_model import (
    ConversionFormula,
    CumulativeFormula,
    EventFormula,
    ExprFormula,
    KpiRef,
    LibraryFormula,
    ManualFormula,
    Operand,
    PromqlFormula,
    RatioFormula,
    SqlFormula,
    StateFormula,
)
from opsmetrics.query.kpi import periods as cal
from opsmetrics.query.kpi import sources
from opsmetrics.query.kpi.context import EvalContext
from opsmetrics.query.kpi.exclusions import merged
from opsmetrics.query.kpi.model import Cell, Group, KpiQueryError, Period, Values

_OPS: dict[BinaryOp, Callable[[float, float], float | None]] = {
    BinaryOp.ADD: lambda a, b: a + b,
    BinaryOp.SUB: lambda a, b: a - b,
    BinaryOp.MUL: lambda a, b: a * b,
    BinaryOp.DIV: lambda a, b: a / b if b else None,
}


def compute(ctx: EvalContext, f: Operand, periods: Sequence[Period], kpi: str) -> Values:
    """The values of formula `f` (of the KPI named `kpi`) for each period."""
    match f:
        case EventFormula():
            return sources.event_values(ctx, f, periods)
        case PromqlFormula():
            return sources.promql_values(ctx, f, periods)
        case ConversionFormula():
            return sources.conversion_values(ctx, f, periods)
        case StateFormula():
            return sources.state_values(ctx, f, periods)
        case SqlFormula():
            return sources.sql_values(ctx, f, periods, kpi)
        case _:  # a Derived formula; a kind in neither group does not type-check here
            return _derived(ctx, f, periods, kpi)


#: The formula kinds computed from other formulas' values (or typed in: manual).
Derived = KpiRef | ManualFormula | RatioFormula | ExprFormula | CumulativeFormula | LibraryFormula


def _derived(ctx: EvalContext, f: Derived, periods: Sequence[Period], kpi: str) -> Values:
    match f:
        case KpiRef():
            formula = ctx.catalog.get(f.name).formula
            return ctx.kpi_values(f.name, periods, lambda: compute(ctx, formula, periods, f.name))
        case ManualFormula():
            return sources.manual_values(ctx, kpi, periods)
        case RatioFormula():
            return ratio_values(ctx, f, periods, kpi)
        case ExprFormula():
            return expr_values(ctx, f.expr, dict(f.bindings), periods, kpi)
        case CumulativeFormula():
            return cumulative_values(ctx, f, periods, kpi)
        case LibraryFormula():
            return compute(ctx, expand(f), periods, kpi)
        case _:
            assert_never(f)


def expand(f: LibraryFormula) -> Operand:
    entry = LIBRARY.get(f.name)
    formula = None if entry is None else entry.expand(dict(f.params))
    if formula is None:
        raise KpiQueryError(f"standard KPI {f.name!r} has no formula to evaluate yet")
    return formula


# --- ratio ------------------------------------------------------------------------------
def ratio_values(ctx: EvalContext, f: RatioFormula, periods: Sequence[Period], kpi: str) -> Values:
    """numerator / denominator per period; when both count things, the denominator is the
    sample size and the numerator the hits (for the Wilson interval)."""
    num = compute(ctx, f.numerator, periods, kpi)
    den = compute(ctx, f.denominator, periods, kpi)
    counts = num.is_count and den.is_count
    cells = {
        g: [_divide(a, b, counts) for a, b in zip(ns, ds, strict=True)]
        for g, (ns, ds) in _joined(num, den, len(periods)).items()
    }
    return Values(cells, excluded=merged(num.excluded, den.excluded))


def _divide(a: Cell, b: Cell, counts: bool) -> Cell:
    if a.value is None or b.value is None or b.value == 0:
        size = int(b.value) if counts and b.value is not None else None
        return Cell(None, size, None, a.note or b.note)
    value = a.value / b.value
    if not counts:
        return Cell(value)
    return Cell(value, int(b.value), int(a.value))


def _joined(a: Values, b: Values, n: int) -> dict[Group, tuple[list[Cell], list[Cell]]]:
    """Cells of both sides per group; a side without a breakdown applies to every group."""
    groups = sorted(set(a.cells) | set(b.cells))
    if len(groups) > 1:
        groups = [g for g in groups if g]
    return {g: (_side(a, g, n), _side(b, g, n)) for g in groups}


def _side(v: Values, group: Group, n: int) -> list[Cell]:
    if group in v.cells:
        return v.cells[group]
    if () in v.cells:
        return v.cells[()]
    return [Cell(0.0 if v.is_count else None)] * n


# --- expr -------------------------------------------------------------------------------
def expr_values(
    ctx: EvalContext,
    expr: Expr,
    bindings: dict[str, Operand],
    periods: Sequence[Period],
    kpi: str,
) -> Values:
    """Arithmetic over operands (names bound in place, else other KPIs), period by period;
    None wherever an operand is None or a division is by zero."""
    n = len(periods)
    match expr:
        case Number():
            return Values({(): [Cell(expr.value)] * n})
        case Name():
            bound = bindings.get(expr.id)
            if bound is not None:
                return compute(ctx, bound, periods, kpi)
            return compute(ctx, KpiRef(expr.id), periods, expr.id)
        case Negate():
            inner = expr_values(ctx, expr.operand, bindings, periods, kpi)
            return Values(
                {g: [_apply(_neg, c, Cell(0.0)) for c in cs] for g, cs in inner.cells.items()},
                excluded=inner.excluded,
            )
        case Binary():
            left = expr_values(ctx, expr.left, bindings, periods, kpi)
            right = expr_values(ctx, expr.right, bindings, periods, kpi)
            op = _OPS[expr.op]
            return Values(
                {
                    g: [_apply(op, x, y) for x, y in zip(xs, ys, strict=True)]
                    for g, (xs, ys) in _joined(left, right, n).items()
                },
                excluded=merged(left.excluded, right.excluded),
            )
        case _:
            assert_never(expr)


def _neg(a: float, b: float) -> float:
    return -a


def _apply(op: Callable[[float, float], float | None], a: Cell, b: Cell) -> Cell:
    if a.value is None or b.value is None:
        return Cell(None, note=a.note or b.note)
    return Cell(op(a.value, b.value))


# --- cumulative -------------------------------------------------------------------------
def cumulative_values(
    ctx: EvalContext, f: CumulativeFormula, periods: Sequence[Period], kpi: str
) -> Values:
    """Running: the total of `of` from the start of the data through each period.
    Windowed: the total over the periods that lie wholly inside (end - window, end]."""
    if f.window_ms is not None and isinstance(f.of, EventFormula):
        rolling = sources.rolling_unique_values(ctx, f.of, f.window_ms, periods)
        if rolling is not None:
            return rolling
    first, last = sources.span(periods)
    lead = f.window_ms or 0
    base = cal.periods(first - lead, last, ctx.grain, ctx.tz)
    got = compute(ctx, f.of, base, kpi)
    before = total_before(ctx, f.of, first) if f.window_ms is None else {}
    empty = [Cell(None)] * len(base)
    cells = {
        g: [
            _total(base, got.cells.get(g, empty), p, f.window_ms, first, before.get(g))
            for p in periods
        ]
        for g in _groups(got, before)
    }
    return Values(cells, is_count=got.is_count, excluded=got.excluded)


def total_before(ctx: EvalContext, of: Operand, end_ms: int) -> dict[Group, float]:
    """The total of `of` over everything before end_ms, for a running total to start from.

    Exact for event counts and sums (one storage aggregate over the span); for other operands
    ({} here) a running total counts from the first period asked for (docs/kpis.md)."""
    match of:
        case EventFormula() if of.agg in sources.ADDITIVE:
            return sources.event_total_before(ctx, of, end_ms)
        case KpiRef():
            return total_before(ctx, ctx.catalog.get(of.name).formula, end_ms)
        case LibraryFormula():
            return total_before(ctx, expand(of), end_ms)
    return {}


def _groups(got: Values, before: dict[Group, float]) -> list[Group]:
    groups = list(got.cells)
    return groups + sorted(g for g in before if g not in got.cells)


def _total(
    base: Sequence[Period],
    cells: list[Cell],
    p: Period,
    window_ms: int | None,
    first: int,
    before: float | None,
) -> Cell:
    lo = first if window_ms is None else p.end_ms - window_ms
    picked = [
        c.value
        for b, c in zip(base, cells, strict=True)
        if b.start_ms >= lo and b.end_ms <= p.end_ms and c.value is not None
    ]
    if before is not None:
        picked.append(before)
    return Cell(sum(picked) if picked else None)
