"""Scalars read off the query itself (step, range, start, end) and min_of/max_of.

These are Prometheus 3.x's experimental duration-expression helpers. They describe the query,
also inside a subquery; an instant query has step 0 and its start and end coincide.
"""

from __future__ import annotations

import numpy as np

from opsmetrics.query.promql.functions._common import scalar_arg
from opsmetrics.query.promql.values import CallInfo, EvalContext, Scalar, Value, register


def _constant(ctx: EvalContext, milliseconds: float) -> Scalar:
    return Scalar(np.full(len(ctx.steps), milliseconds / 1000.0))


@register("step", ())
def step(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _constant(ctx, ctx.step_ms)


@register("range", ())
def range_(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _constant(ctx, ctx.end_ms - ctx.start_ms)


@register("start", ())
def start(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _constant(ctx, ctx.start_ms)


@register("end", ())
def end(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _constant(ctx, ctx.end_ms)


@register("min_of", ("scalar", "scalar"))
def min_of(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    steps = len(ctx.steps)
    return Scalar(np.minimum(scalar_arg(args, 0, steps), scalar_arg(args, 1, steps)))


@register("max_of", ("scalar", "scalar"))
def max_of(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    steps = len(ctx.steps)
    return Scalar(np.maximum(scalar_arg(args, 0, steps), scalar_arg(args, 1, steps)))
