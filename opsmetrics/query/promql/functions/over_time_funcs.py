"""The *_over_time family and double_exponential_smoothing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from opsmetrics.model import Float64Array, Int64Array
from opsmetrics.query.promql.functions._common import (
    StepResult,
    kahan_inc,
    over_series,
    padded,
    quantile_rows,
    range_arg,
    scalar_arg,
)
from opsmetrics.query.promql.functions.flat_windows import (
    FlatWindows,
    SeriesFunction,
    over_chunks,
    over_window_rows,
    window_means,
    window_sums,
)
from opsmetrics.query.promql.values import (
    BoolArray,
    CallInfo,
    EvalContext,
    QueryError,
    RangeVector,
    Value,
    register,
)


def _count(lo: Int64Array, hi: Int64Array) -> Int64Array:
    counts: Int64Array = hi - lo
    return counts


def _flat(rv: RangeVector, fn: Callable[[FlatWindows], Float64Array]) -> Value:
    """Apply a window function to every series at once; empty windows are absent."""
    return over_chunks(rv, lambda fw: (fn(fw), fw.counts > 0))


@register("sum_over_time", ("range",))
def sum_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _flat(range_arg(args, 0), window_sums)


@register("avg_over_time", ("range",))
def avg_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _flat(range_arg(args, 0), window_means)


@register("count_over_time", ("range",))
def count_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _flat(range_arg(args, 0), lambda fw: fw.counts.astype(np.float64))


def extreme_windows(take_min: bool) -> SeriesFunction:
    """Windows' minima (or maxima), one padded window matrix per call."""

    def per_series(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
        matrix, _ = padded(v, lo, hi, np.nan)
        if matrix.shape[1] == 0:
            return np.zeros(len(lo)), _count(lo, hi) > 0
        # fmin/fmax skip NaN unless every value is NaN, as Prometheus does.
        func = np.fmin if take_min else np.fmax
        return func.reduce(matrix, axis=1), _count(lo, hi) > 0

    return per_series


def _extreme(rv: RangeVector, take_min: bool) -> Value:
    return over_window_rows(rv, extreme_windows(take_min))


@register("min_over_time", ("range",))
def min_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _extreme(range_arg(args, 0), take_min=True)


@register("max_over_time", ("range",))
def max_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _extreme(range_arg(args, 0), take_min=False)


def _edge(rv: RangeVector, last: bool, timestamps: bool) -> Value:
    def windows(fw: FlatWindows) -> tuple[Float64Array, BoolArray]:
        idx = fw.last_index() if last else fw.first_index()
        return (fw.ts[idx] / 1000.0 if timestamps else fw.values[idx]), fw.counts > 0

    # Prometheus keeps the metric name for last_over_time and first_over_time only.
    return over_chunks(rv, windows, keep_name=not timestamps)


@register("last_over_time", ("range",))
def last_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _edge(range_arg(args, 0), last=True, timestamps=False)


@register("first_over_time", ("range",))
def first_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _edge(range_arg(args, 0), last=False, timestamps=False)


@register("ts_of_last_over_time", ("range",))
def ts_of_last_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _edge(range_arg(args, 0), last=True, timestamps=True)


@register("ts_of_first_over_time", ("range",))
def ts_of_first_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _edge(range_arg(args, 0), last=False, timestamps=True)


def ts_of_extreme_windows(take_min: bool) -> SeriesFunction:
    """Timestamps of the windows' minima (or maxima)."""

    def per_series(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
        ok = _count(lo, hi) > 0
        matrix, mask = padded(v, lo, hi, np.nan)
        if matrix.shape[1] == 0:
            return np.zeros(len(lo)), ok
        best = (np.fmin if take_min else np.fmax).reduce(matrix, axis=1)
        # The last sample holding the extreme value, as Prometheus reports it (<=/>= scan).
        hit = mask & ((matrix == best[:, None]) | (np.isnan(best)[:, None]))
        pos = matrix.shape[1] - 1 - np.argmax(hit[:, ::-1], axis=1)
        idx = np.minimum(lo + pos, len(ts) - 1)
        return ts[idx] / 1000.0, ok

    return per_series


def _ts_of_extreme(rv: RangeVector, take_min: bool) -> Value:
    return over_window_rows(rv, ts_of_extreme_windows(take_min))


@register("ts_of_min_over_time", ("range",))
def ts_of_min_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _ts_of_extreme(range_arg(args, 0), take_min=True)


@register("ts_of_max_over_time", ("range",))
def ts_of_max_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _ts_of_extreme(range_arg(args, 0), take_min=False)


@register("present_over_time", ("range",))
def present_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _flat(range_arg(args, 0), lambda fw: np.ones(fw.lo.shape))


def window_variance(vals: Float64Array, lo: Int64Array, hi: Int64Array) -> Float64Array:
    """Population variance with Welford's method and compensated sums."""
    matrix, mask = padded(vals, lo, hi, 0.0)
    rows = len(lo)
    mean, cmean, aux, caux = (np.zeros(rows),) * 4
    for k in range(matrix.shape[1]):
        active = mask[:, k]
        f = matrix[:, k]
        delta = f - (mean + cmean)
        new_mean, new_cmean = kahan_inc(delta / (k + 1), mean, cmean)
        new_aux, new_caux = kahan_inc(delta * (f - (new_mean + new_cmean)), aux, caux)
        mean = np.where(active, new_mean, mean)
        cmean = np.where(active, new_cmean, cmean)
        aux = np.where(active, new_aux, aux)
        caux = np.where(active, new_caux, caux)
    result: Float64Array = (aux + caux) / np.maximum(mask.sum(axis=1), 1)
    return result


def stdvar_windows(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
    return window_variance(v, lo, hi), _count(lo, hi) > 0


def stddev_windows(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
    return np.sqrt(window_variance(v, lo, hi)), _count(lo, hi) > 0


@register("stdvar_over_time", ("range",))
def stdvar_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return over_window_rows(range_arg(args, 0), stdvar_windows)


@register("stddev_over_time", ("range",))
def stddev_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return over_window_rows(range_arg(args, 0), stddev_windows)


def quantile_windows(q: Float64Array) -> SeriesFunction:
    """Windows' q-quantiles; q holds one value per step, repeated for every row of windows."""

    def per_series(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
        matrix, mask = padded(v, lo, hi, np.nan)
        return quantile_rows(np.resize(q, len(lo)), matrix, mask), _count(lo, hi) > 0

    return per_series


@register("quantile_over_time", ("scalar", "range"))
def quantile_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    rv = range_arg(args, 1)
    return over_window_rows(rv, quantile_windows(scalar_arg(args, 0, len(rv.window_end))))


def mad_windows(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
    matrix, mask = padded(v, lo, hi, np.nan)
    half = np.full(len(lo), 0.5)
    median = quantile_rows(half, matrix, mask)
    mad = quantile_rows(half, np.abs(matrix - median[:, None]), mask)
    has_nan = (np.isnan(matrix) & mask).any(axis=1)
    return np.where(has_nan, np.nan, mad), _count(lo, hi) > 0


@register("mad_over_time", ("range",))
def mad_over_time(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return over_window_rows(range_arg(args, 0), mad_windows)


def _smoothing_factors(args: list[Value], steps: int) -> tuple[Float64Array, Float64Array]:
    sf = scalar_arg(args, 1, steps)
    tf = scalar_arg(args, 2, steps)
    for name, factor in (("smoothing", sf), ("trend", tf)):
        bad = ~((factor > 0) & (factor < 1))
        if bad.any():
            raise QueryError(
                f"invalid {name} factor. Expected: 0 < {name[0]}f < 1, got: {factor[bad][0]:f}"
            )
    return sf, tf


def smoothing_windows(sf: Float64Array, tf: Float64Array) -> SeriesFunction:
    """Holt's double exponential smoothing per window; the factors hold one value per step."""

    def per_series(ts: Int64Array, v: Float64Array, lo: Int64Array, hi: Int64Array) -> StepResult:
        matrix, mask = padded(v, lo, hi, 0.0)
        if matrix.shape[1] < 2:
            return np.zeros(len(lo)), _count(lo, hi) >= 2
        s_row, t_row = np.resize(sf, len(lo)), np.resize(tf, len(lo))
        level_prev = np.zeros(len(lo))
        level = matrix[:, 0]
        trend = matrix[:, 1] - matrix[:, 0]
        for k in range(1, matrix.shape[1]):
            active = mask[:, k]
            if k > 1:
                new_trend = t_row * (level - level_prev) + (1 - t_row) * trend
                trend = np.where(active, new_trend, trend)
            new_level = s_row * matrix[:, k] + (1 - s_row) * (level + trend)
            level_prev = np.where(active, level, level_prev)
            level = np.where(active, new_level, level)
        return level, _count(lo, hi) >= 2

    return per_series


@register("double_exponential_smoothing", ("range", "scalar", "scalar"))
def double_exponential_smoothing(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    rv = range_arg(args, 0)
    if not rv.labels:
        return over_series(rv, lambda ts, v, lo, hi: (np.zeros(len(lo)), lo < 0))
    sf, tf = _smoothing_factors(args, len(rv.window_end))
    return over_window_rows(rv, smoothing_windows(sf, tf))
