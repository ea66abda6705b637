"""rate, increase, delta, irate, idelta, deriv, predict_linear, resets and changes."""

from __future__ import annotations

import numpy as np

from opsmetrics.model import Float64Array, Int64Array
from opsmetrics.query.promql.functions._common import (
    StepResult,
    kahan_inc,
    padded,
    range_arg,
    scalar_arg,
)
from opsmetrics.query.promql.functions.flat_windows import (
    FlatWindows,
    SeriesFunction,
    over_chunks,
    over_window_rows,
)
from opsmetrics.query.promql.values import (
    BoolArray,
    CallInfo,
    EvalContext,
    RangeVector,
    Value,
    register,
)


def _extrapolated(rv: RangeVector, is_counter: bool, is_rate: bool) -> Value:
    def windows(fw: FlatWindows) -> tuple[Float64Array, BoolArray]:
        first, last = fw.first_index(), fw.last_index()
        vals = fw.values
        result = vals[last] - vals[first]
        if is_counter:
            result = result + _reset_corrections(fw)
        factor = _extrapolation_factor(
            fw.ts[first],
            fw.ts[last],
            vals[first],
            result,
            fw.counts,
            rv.window_end - rv.range_ms,
            rv.window_end,
            is_counter,
        )
        out = result * factor
        return (out / (rv.range_ms / 1000.0) if is_rate else out), fw.counts >= 2

    return over_chunks(rv, windows)


def _reset_corrections(fw: FlatWindows) -> Float64Array:
    """Per window, the sum of the values just before each counter reset inside it."""
    vals = fw.values
    fell = np.concatenate(([False], vals[1:] < vals[:-1])) & ~fw.starts_series
    if not fell.any():
        return np.zeros(fw.lo.shape)  # added all the same: -0.0 + 0.0 is 0.0, as before
    return fw.pair_sums(np.where(fell, np.concatenate(([0.0], vals[:-1])), 0.0))


def _extrapolation_factor(
    t_first: Int64Array,
    t_last: Int64Array,
    v_first: Float64Array,
    result: Float64Array,
    count: Int64Array,
    starts: Int64Array,
    ends: Int64Array,
    is_counter: bool,
) -> Float64Array:
    sampled = (t_last - t_first) / 1000.0
    average = sampled / np.maximum(count - 1, 1)
    threshold = average * 1.1
    to_start = (t_first - starts) / 1000.0
    to_end = (ends - t_last) / 1000.0
    to_start = np.where(to_start >= threshold, average / 2, to_start)
    to_end = np.where(to_end >= threshold, average / 2, to_end)
    if is_counter:
        # A counter cannot go below zero: stop extrapolating where it would reach zero.
        to_zero = sampled * (v_first / result)
        limit = (result > 0) & (v_first >= 0) & (to_zero < to_start)
        to_start = np.where(limit, to_zero, to_start)
    factor: Float64Array = (sampled + to_start + to_end) / sampled
    return factor


@register("rate", ("range",))
def rate(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _extrapolated(range_arg(args, 0), is_counter=True, is_rate=True)


@register("increase", ("range",))
def increase(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _extrapolated(range_arg(args, 0), is_counter=True, is_rate=False)


@register("delta", ("range",))
def delta(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _extrapolated(range_arg(args, 0), is_counter=False, is_rate=False)


def _instant_change(rv: RangeVector, is_rate: bool) -> Value:
    def windows(fw: FlatWindows) -> tuple[Float64Array, BoolArray]:
        ok = fw.counts >= 2
        if len(fw.values) < 2:
            return np.zeros(ok.shape), ok
        last = np.clip(fw.hi - 1, 1, len(fw.values) - 1)
        prev = last - 1
        vals = fw.values
        diff = vals[last] - vals[prev]
        if is_rate:
            diff = np.where(vals[last] < vals[prev], vals[last], diff)
            diff = diff / ((fw.ts[last] - fw.ts[prev]) / 1000.0)
        return diff, ok

    return over_chunks(rv, windows)


@register("irate", ("range",))
def irate(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _instant_change(range_arg(args, 0), is_rate=True)


@register("idelta", ("range",))
def idelta(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _instant_change(range_arg(args, 0), is_rate=False)


def _pair_flag_function(rv: RangeVector, changed: bool) -> Value:
    def windows(fw: FlatWindows) -> tuple[Float64Array, BoolArray]:
        cur, prev = fw.values[1:], fw.values[:-1]
        flag = (cur != prev) & ~(np.isnan(cur) & np.isnan(prev)) if changed else cur < prev
        flags = np.concatenate(([False], flag)) & ~fw.starts_series
        return fw.pair_sums(flags.astype(np.float64)), fw.counts >= 1

    return over_chunks(rv, windows)


@register("resets", ("range",))
def resets(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _pair_flag_function(range_arg(args, 0), changed=False)


@register("changes", ("range",))
def changes(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _pair_flag_function(range_arg(args, 0), changed=True)


def linear_regression(
    ts: Int64Array, vals: Float64Array, lo: Int64Array, hi: Int64Array, origin: Int64Array
) -> tuple[Float64Array, Float64Array]:
    """Least-squares slope and intercept per window, x in seconds relative to `origin`."""
    y, mask = padded(vals, lo, hi, 0.0)
    t, _ = padded(ts.astype(np.float64), lo, hi, 0.0)
    x = np.where(mask, (t - origin[:, None].astype(np.float64)) / 1000.0, 0.0)
    zeros = np.zeros(len(lo))
    sx, cx, sy, cy, sxy, cxy, sx2, cx2 = (zeros,) * 8
    for k in range(y.shape[1]):
        sx, cx = kahan_inc(x[:, k], sx, cx)
        sy, cy = kahan_inc(y[:, k], sy, cy)
        sxy, cxy = kahan_inc(x[:, k] * y[:, k], sxy, cxy)
        sx2, cx2 = kahan_inc(x[:, k] * x[:, k], sx2, cx2)
    n = mask.sum(axis=1).astype(np.float64)
    sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
    slope = (sxy - sx * sy / n) / (sx2 - sx * sx / n)
    intercept = sy / n - slope * sx / n
    first = y[:, 0] if y.shape[1] else zeros
    const = ~((y != first[:, None]) & mask).any(axis=1)
    slope = np.where(const, np.where(np.isinf(first), np.nan, 0.0), slope)
    intercept = np.where(const, np.where(np.isinf(first), np.nan, first), intercept)
    return slope, intercept


def deriv_windows(ts: Int64Array, vals: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
    ok = (hi - lo) >= 2
    if len(vals) == 0:
        return np.zeros(len(lo)), ok
    origin = ts[np.minimum(lo, len(ts) - 1)]
    slope, _ = linear_regression(ts, vals, lo, hi, origin)
    return slope, ok


@register("deriv", ("range",))
def deriv(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return over_window_rows(range_arg(args, 0), deriv_windows)


def predict_linear_windows(origin: Int64Array, duration: Float64Array) -> SeriesFunction:
    """Windows' regression lines at origin + duration; both hold one value per step."""

    def per_series(
        ts: Int64Array, vals: Float64Array, lo: Int64Array, hi: Int64Array
    ) -> StepResult:
        ok = (hi - lo) >= 2
        at = np.resize(origin, len(lo))
        slope, intercept = linear_regression(ts, vals, lo, hi, at)
        return slope * np.resize(duration, len(lo)) + intercept, ok

    return per_series


@register("predict_linear", ("range", "scalar"))
def predict_linear(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    duration = scalar_arg(args, 1, len(ctx.steps))
    origin = np.asarray(ctx.steps, dtype=np.int64)
    return over_window_rows(range_arg(args, 0), predict_linear_windows(origin, duration))
