"""Element-wise math and trigonometric functions over instant vectors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from opsmetrics.model import Float64Array
from opsmetrics.query.promql.functions._common import instant_arg, map_vector, scalar_arg
from opsmetrics.query.promql.values import CallInfo, EvalContext, Value, register

ElementWise = Callable[[Float64Array], Float64Array]


def _sgn(x: Float64Array) -> Float64Array:
    result: Float64Array = np.sign(x)
    return result


def _round_half_up(x: Float64Array) -> Float64Array:
    result: Float64Array = np.floor(x + 0.5)
    return result


SIMPLE: dict[str, ElementWise] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sqrt": np.sqrt,
    "sgn": _sgn,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "deg": np.degrees,
    "rad": np.radians,
}


def _simple(fn: ElementWise) -> Callable[[list[Value], CallInfo, EvalContext], Value]:
    def impl(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
        return map_vector(instant_arg(args, 0), fn)

    return impl


for _name, _fn in SIMPLE.items():
    register(_name, ("instant",))(_simple(_fn))


@register("round", ("instant", "scalar"), optional=1)
def round_(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 0)
    steps = vec.values.shape[1]
    to_nearest = scalar_arg(args, 1, steps) if len(args) > 1 else np.ones(steps)
    # Dividing by the inverse is what Prometheus does; it has fewer rounding surprises.
    inverse = 1.0 / to_nearest
    return map_vector(vec, lambda x: _round_half_up(x * inverse) / inverse)


@register("clamp", ("instant", "scalar", "scalar"))
def clamp(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 0)
    steps = vec.values.shape[1]
    low, high = scalar_arg(args, 1, steps), scalar_arg(args, 2, steps)
    out = map_vector(vec, lambda x: np.maximum(low, np.minimum(high, x)))
    # A minimum above the maximum gives an empty result for that step.
    out.present[:, low > high] = False
    return out


@register("clamp_min", ("instant", "scalar"))
def clamp_min(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 0)
    low = scalar_arg(args, 1, vec.values.shape[1])
    return map_vector(vec, lambda x: np.maximum(low, x))


@register("clamp_max", ("instant", "scalar"))
def clamp_max(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 0)
    high = scalar_arg(args, 1, vec.values.shape[1])
    return map_vector(vec, lambda x: np.minimum(high, x))
