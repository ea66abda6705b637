"""absent, absent_over_time, scalar, vector, time, timestamp, pi and the date functions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import promql_parser as pp

from opsmetrics.model import METRIC_NAME, Float64Array, Labels
from opsmetrics.query.promql.functions._common import (
    instant_arg,
    map_vector,
    range_arg,
    scalar_arg,
)
from opsmetrics.query.promql.values import (
    BoolArray,
    CallInfo,
    EvalContext,
    InstantVector,
    Scalar,
    Value,
    register,
)


def absent_labels(expr: pp.Expr) -> Labels:
    """Labels for absent(): equality matchers of a plain selector, minus names matched twice."""
    if isinstance(expr, pp.MatrixSelector):
        expr = expr.vector_selector
    if not isinstance(expr, pp.VectorSelector):
        return ()
    matchers = expr.matchers.matchers
    seen = Counter(m.name for m in matchers)
    pairs = {
        m.name: m.value
        for m in matchers
        if m.op == pp.MatchOp.Equal and m.name != METRIC_NAME and seen[m.name] == 1
    }
    return tuple(sorted((k, v) for k, v in pairs.items() if v != ""))


def _absent_result(missing: BoolArray, call: CallInfo) -> InstantVector:
    steps = len(missing)
    if not missing.any():
        return InstantVector.empty(steps)
    labels = absent_labels(call.arg_exprs[0]) if call.arg_exprs else ()
    return InstantVector([labels], np.ones((1, steps)), missing[None, :].copy())


@register("absent", ("instant",))
def absent(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 0)
    missing = np.asarray(~vec.present.any(axis=0), dtype=bool)
    return _absent_result(missing, call)


@register("absent_over_time", ("range",))
def absent_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    rv = range_arg(args, 0)
    missing = np.ones(len(rv.window_end), dtype=bool)
    for i in range(len(rv.labels)):
        lo, hi = rv.bounds(i)
        missing &= hi <= lo
    return _absent_result(missing, call)


@register("scalar", ("instant",))
def scalar(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 0)
    steps = vec.values.shape[1]
    if len(vec) == 0:
        return Scalar(np.full(steps, np.nan))
    single = vec.present.sum(axis=0) == 1
    picked = np.where(vec.present, vec.values, 0.0).sum(axis=0)
    return Scalar(np.where(single, picked, np.nan))


@register("vector", ("scalar",))
def vector(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    values = scalar_arg(args, 0, len(ctx.steps)).astype(np.float64)
    return InstantVector([()], values[None, :].copy(), np.ones((1, len(values)), dtype=bool))


@register("time", ())
def time_(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return Scalar(np.asarray(ctx.steps, dtype=np.float64) / 1000.0)


@register("pi", ())
def pi(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return Scalar(np.full(len(ctx.steps), np.pi))


@register("timestamp", ("instant",))
def timestamp(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 0)
    if vec.sample_ts is not None:
        seconds = vec.sample_ts.astype(np.float64) / 1000.0
    else:
        seconds = np.broadcast_to(
            np.asarray(ctx.steps, dtype=np.float64) / 1000.0, vec.values.shape
        )
    return map_vector(vec, lambda _: np.array(seconds, dtype=np.float64))


def _calendar(seconds: Float64Array) -> dict[str, Float64Array]:
    """Calendar fields (UTC) of Unix times; non-finite inputs give NaN fields."""
    finite = np.isfinite(seconds)
    secs = np.where(finite, seconds, 0.0).astype(np.int64)
    stamp = secs.astype("datetime64[s]")
    days = stamp.astype("datetime64[D]")
    months = stamp.astype("datetime64[M]")
    years = stamp.astype("datetime64[Y]")
    next_month = (months + 1).astype("datetime64[D]")
    fields = {
        "year": years.astype(np.int64) + 1970,
        "month": months.astype(np.int64) % 12 + 1,
        "day_of_month": (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
        "day_of_year": (days - years.astype("datetime64[D]")).astype(np.int64) + 1,
        "day_of_week": (days.astype(np.int64) + 4) % 7,  # 1970-01-01 was a Thursday
        "days_in_month": (next_month - months.astype("datetime64[D]")).astype(np.int64),
        "hour": (secs % 86400) // 3600,
        "minute": (secs % 3600) // 60,
    }
    return {k: np.where(finite, v.astype(np.float64), np.nan) for k, v in fields.items()}


def _now_vector(ctx: EvalContext) -> InstantVector:
    seconds = np.asarray(ctx.steps, dtype=np.float64)[None, :] / 1000.0
    return InstantVector([()], seconds, np.ones(seconds.shape, dtype=bool))


def _date_function(field: str) -> Callable[[list[Value], CallInfo, EvalContext], Value]:
    def impl(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
        vec = instant_arg(args, 0) if args else _now_vector(ctx)
        return map_vector(vec, lambda x: _calendar(x)[field])

    return impl


for _field in (
    "year",
    "month",
    "day_of_month",
    "day_of_year",
    "day_of_week",
    "days_in_month",
    "hour",
    "minute",
):
    register(_field, ("instant",), optional=1)(_date_function(_field))
