"""The PromQL evaluator: walks promql_parser's AST and evaluates every node for all steps at once.

`evaluate_range` and `evaluate_instant` are the entry points; an instant query is a range query
with one step. Selectors, aggregations and binary operators live in their own modules; function
calls go through the FUNCTIONS registry that opsmetrics.query.promql.functions fills.
"""

from __future__ import annotations

import time

import numpy as np
import promql_parser as pp

from opsmetrics.model import Int64Array
from opsmetrics.query.promql.aggregation import REDUCERS, aggregate, quantile_reducer
from opsmetrics.query.promql.aggregation_select import count_values, limit_ratio, limitk, topk
from opsmetrics.query.promql.binary import binary
from opsmetrics.query.promql.functions import FUNCTIONS
from opsmetrics.query.promql.nodes import (
    aggregate_param,
    call_args,
    duration_field_ms,
    parse_expr,
    unwrap_parens,
)
from opsmetrics.query.promql.reads import SeriesReader
from opsmetrics.query.promql.rollup_eval import try_rollups
from opsmetrics.query.promql.selection import instant_selector, range_selector, selector_times
from opsmetrics.query.promql.values import (
    LOOKBACK_MS,
    CallInfo,
    EvalContext,
    InstantVector,
    QueryError,
    RangeVector,
    Scalar,
    StringValue,
    Value,
)
from opsmetrics.query.promql.vectors import merge_same_labels, without_name

__all__ = ["evaluate", "evaluate_instant", "evaluate_range", "parse_expr"]

#: Prometheus's default evaluation interval: the step of a subquery written `x[5m:]`.
DEFAULT_SUBQUERY_STEP_MS = 60_000


def evaluate_range(
    storage: SeriesReader,
    expr: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    lookback_ms: int = LOOKBACK_MS,
    max_samples: int = 50_000_000,
    timeout_s: float = 120.0,
    use_rollups: bool = True,
) -> Value:
    """A range query: an instant vector or scalar with one column per step.

    `use_rollups=False` reads raw samples only (rollup_eval.py says when rollups are read).
    """
    if step_ms <= 0:
        raise QueryError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    if end_ms < start_ms:
        raise QueryError("end timestamp must not be before start time")
    node = parse_expr(expr)
    steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    ctx = EvalContext(
        storage,
        steps,
        start_ms,
        end_ms,
        step_ms,
        lookback_ms,
        max_samples,
        time.monotonic() + timeout_s,
        use_rollups=use_rollups,
    )
    value = evaluate(node, ctx)
    if isinstance(value, RangeVector | StringValue):
        kind = "range vector" if isinstance(value, RangeVector) else "string"
        raise QueryError(
            f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector'
        )
    return value


def evaluate_instant(
    storage: SeriesReader,
    expr: str,
    at_ms: int,
    *,
    lookback_ms: int = LOOKBACK_MS,
    max_samples: int = 50_000_000,
    timeout_s: float = 120.0,
) -> Value:
    """An instant query at `at_ms`: any value type, vectors and scalars with one step."""
    node = parse_expr(expr)
    steps = np.array([at_ms], dtype=np.int64)
    # An instant query has no step: step() and range() read 0, as in Prometheus.
    ctx = EvalContext(
        storage, steps, at_ms, at_ms, 0, lookback_ms, max_samples, time.monotonic() + timeout_s
    )
    return evaluate(node, ctx)


def evaluate(node: pp.Expr, ctx: EvalContext) -> Value:
    """Evaluate one AST node for every step of `ctx`."""
    ctx.check_deadline()
    match node:
        case pp.ParenExpr():
            return evaluate(node.expr, ctx)
        case pp.UnaryExpr():
            return _unary(node, ctx)
        case pp.BinaryExpr():
            return _binary(node, ctx)
        case pp.AggregateExpr():
            return _aggregate(node, ctx)
        case pp.Call():
            return _call(node, ctx)
        case pp.SubqueryExpr():
            return _subquery(node, ctx)
    return _leaf(node, ctx)


def _leaf(node: pp.Expr, ctx: EvalContext) -> Value:
    """Literals and selectors: the nodes with no sub-expression to evaluate first."""
    match node:
        case pp.NumberLiteral():
            return Scalar(np.full(len(ctx.steps), float(node.val)))
        case pp.StringLiteral():
            return StringValue(str(node.val))
        case pp.VectorSelector():
            return instant_selector(node, ctx)
        case pp.MatrixSelector():
            return range_selector(node, ctx)
    raise QueryError(f"unsupported expression: {node}")


def _unary(node: pp.UnaryExpr, ctx: EvalContext) -> Value:
    value = evaluate(node.expr, ctx)
    if isinstance(value, Scalar):
        return Scalar(-value.values)
    if isinstance(value, InstantVector):
        return without_name(InstantVector(value.labels, -value.values, value.present))
    raise QueryError("unary minus is only defined for scalars and instant vectors")


def _binary(node: pp.BinaryExpr, ctx: EvalContext) -> Value:
    lhs = evaluate(node.lhs, ctx)
    rhs = evaluate(node.rhs, ctx)
    return binary(str(node.op), lhs, rhs, node.modifier)


def _subquery(node: pp.SubqueryExpr, ctx: EvalContext) -> Value:
    """Evaluate the inner expression at absolute multiples of the subquery step."""
    range_ms = duration_field_ms(node, "range")
    step = duration_field_ms(node, "step") or DEFAULT_SUBQUERY_STEP_MS
    window_end = selector_times(node, ctx)
    if len(window_end) == 0:
        return RangeVector.empty(range_ms, window_end)
    low = int(window_end.min()) - range_ms
    first = int(low / step) * step  # Go's integer division truncates toward zero
    if first <= low:
        first += step
    inner_steps = np.arange(first, int(window_end.max()) + 1, step, dtype=np.int64)
    inner_ctx = EvalContext(
        ctx.storage,
        inner_steps,
        ctx.start_ms,
        ctx.end_ms,
        ctx.step_ms,  # start(), end(), step() and range() describe the query, not the subquery
        ctx.lookback_ms,
        ctx.max_samples,
        ctx.deadline,
        ctx.samples_loaded,
        use_rollups=ctx.use_rollups,
    )
    inner = evaluate(node.expr, inner_ctx) if len(inner_steps) else None
    ctx.samples_loaded = inner_ctx.samples_loaded
    if inner is None:
        return RangeVector.empty(range_ms, window_end)
    if not isinstance(inner, InstantVector):
        raise QueryError("subquery is only allowed on instant vector")
    return _as_range(inner, inner_steps, range_ms, window_end)


def _as_range(
    vec: InstantVector, steps: Int64Array, range_ms: int, window_end: Int64Array
) -> RangeVector:
    """Each series' values at the steps where it has one, series after series."""
    counts = vec.present.sum(axis=1)
    rows = np.flatnonzero(counts > 0)
    offsets = np.concatenate(([0], np.cumsum(counts[rows]))).astype(np.int64)
    ts = np.broadcast_to(steps, vec.present.shape)[vec.present].astype(np.int64)
    values = vec.values[vec.present].astype(np.float64)
    labels = [vec.labels[i] for i in rows.tolist()]
    stored = np.arange(len(labels), dtype=np.int64)
    return RangeVector(labels, ts, values, offsets, stored, range_ms, window_end)


def _aggregate(node: pp.AggregateExpr, ctx: EvalContext) -> Value:
    op = str(node.op)
    vec = evaluate(node.expr, ctx)
    if not isinstance(vec, InstantVector):
        raise QueryError(f"expected instant vector in aggregation expression {op}")
    param_expr = aggregate_param(node)
    param = None if param_expr is None else evaluate(param_expr, ctx)
    with np.errstate(all="ignore"):
        if op in REDUCERS:
            return aggregate(vec, REDUCERS[op], node.modifier)
        if op == "count_values":
            assert isinstance(param, StringValue)
            return count_values(vec, param.value, node.modifier)
        if not isinstance(param, Scalar):
            raise QueryError(f"expected scalar parameter in aggregation {op}")
        if op == "quantile":
            return aggregate(vec, quantile_reducer(param.values), node.modifier)
        if op in ("topk", "bottomk"):
            return topk(vec, param.values, node.modifier, op == "topk")
        if op == "limitk":
            return limitk(vec, param.values, node.modifier)
        if op == "limit_ratio":
            return limit_ratio(vec, param.values)
    raise QueryError(f"unsupported aggregation operator {op}")


def _call(node: pp.Call, ctx: EvalContext) -> Value:
    name = node.func.name
    fdef = FUNCTIONS.get(name)
    if fdef is None:
        raise QueryError(f"unknown function with name {name!r}")
    served = try_rollups(node, ctx)
    if served is not None:
        return merge_same_labels(served)
    arg_exprs = call_args(node)
    args = [_call_arg(expr, _arg_kind(fdef.arg_kinds, i), ctx) for i, expr in enumerate(arg_exprs)]
    _fill_defaults(name, fdef.arg_kinds, args, ctx)
    result = fdef.impl(args, CallInfo(name, arg_exprs), ctx)
    if isinstance(result, InstantVector):
        return merge_same_labels(result)
    return result


def _arg_kind(kinds: tuple[str, ...], i: int) -> str:
    return kinds[min(i, len(kinds) - 1)] if kinds else "instant"


def _call_arg(expr: pp.Expr, kind: str, ctx: EvalContext) -> Value:
    value = evaluate(expr, ctx)
    if kind == "range" and not isinstance(value, RangeVector):
        raise QueryError(f"expected a range vector argument, got {unwrap_parens(expr)}")
    return value


def _fill_defaults(name: str, kinds: tuple[str, ...], args: list[Value], ctx: EvalContext) -> None:
    """Missing optional arguments: `vector(time())` for the date functions, 1 for round."""
    for kind in kinds[len(args) :]:
        if kind == "instant":
            steps = len(ctx.steps)
            args.append(
                InstantVector([()], (ctx.steps / 1000.0)[None, :], np.ones((1, steps), dtype=bool))
            )
        elif kind == "scalar" and name == "round":
            args.append(Scalar(np.ones(len(ctx.steps))))
