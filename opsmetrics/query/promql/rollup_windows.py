"""Window aggregates over rollup buckets laid out as a (series × bucket) grid.

Every window is `k` whole buckets starting at a column of the grid, so sums and counts are
differences of prefix sums, minima and maxima come from a sparse table (log k levels), and the
first and last non-empty bucket of a window come from running indices. Nothing loops per series
or per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from opsmetrics.model import Float64Array, Int64Array
from opsmetrics.query.promql.functions.rate_funcs import _extrapolation_factor
from opsmetrics.query.promql.functions.window_sums import PrefixSums
from opsmetrics.query.promql.values import BoolArray
from opsmetrics.storage.base import RollupRows

#: A (series × steps) result: values and presence.
GridResult = tuple[Float64Array, BoolArray]


@dataclass(frozen=True, slots=True)
class BucketGrid:
    """Rollup columns as (series × bucket) arrays; bucket j starts at origin + j * width."""

    count: Int64Array
    sum: Float64Array
    min: Float64Array
    max: Float64Array
    first: Float64Array
    first_ts: Int64Array
    last: Float64Array
    last_ts: Int64Array
    increase: Float64Array
    nonfinite: Int64Array

    @staticmethod
    def build(
        rows: RollupRows, row_of: Int64Array, col_of: Int64Array, shape: tuple[int, int]
    ) -> BucketGrid:
        """Scatter bucket rows into grids; empty buckets hold neutral values."""

        def put(values: np.ndarray, fill: float | int, dtype: type) -> np.ndarray:
            grid: np.ndarray = np.full(shape, fill, dtype=dtype)
            grid[row_of, col_of] = values
            return grid

        has = rows.count > 0
        return BucketGrid(
            count=put(rows.count, 0, np.int64),
            sum=put(np.where(has, rows.sum, 0.0), 0.0, np.float64),
            min=put(np.where(has, rows.min, np.inf), np.inf, np.float64),
            max=put(np.where(has, rows.max, -np.inf), -np.inf, np.float64),
            first=put(rows.first, np.nan, np.float64),
            first_ts=put(rows.first_ts, 0, np.int64),
            last=put(rows.last, np.nan, np.float64),
            last_ts=put(rows.last_ts, 0, np.int64),
            increase=put(np.where(has, rows.increase, 0.0), 0.0, np.float64),
            nonfinite=put(rows.nonfinite, 0, np.int64),
        )


@dataclass(frozen=True, slots=True)
class Windows:
    """Step j's window is grid columns [start[j], start[j] + k); it ends at `ends[j]` ms."""

    start: Int64Array
    k: int
    ends: Int64Array
    range_ms: int


def _flat_bounds(
    shape: tuple[int, int], lo: Int64Array, hi: Int64Array
) -> tuple[Int64Array, Int64Array]:
    """Per-row column bounds (series × steps) as indices into the flattened grid's prefix."""
    base = (np.arange(shape[0], dtype=np.int64) * shape[1])[:, None]
    return (base + lo).ravel(), (base + hi).ravel()


def window_sum(grid: Float64Array, lo: Int64Array, hi: Int64Array) -> Float64Array:
    """Compensated sums of grid[:, lo:hi] per series; lo/hi are (steps,) or (series × steps)."""
    lo2 = np.broadcast_to(lo, (grid.shape[0], np.shape(lo)[-1]))
    hi2 = np.broadcast_to(hi, lo2.shape)
    flo, fhi = _flat_bounds(grid.shape, lo2, hi2)
    total, comp, _ = PrefixSums(grid.ravel()).window(flo, fhi)
    result: Float64Array = (total + comp).reshape(lo2.shape)
    return result


def window_count(grid: Int64Array, w: Windows) -> Int64Array:
    prefix = np.concatenate([np.zeros((grid.shape[0], 1), np.int64), grid.cumsum(axis=1)], axis=1)
    counts: Int64Array = prefix[:, w.start + w.k] - prefix[:, w.start]
    return counts


def window_extreme(grid: Float64Array, w: Windows, fn: Callable[..., Float64Array]) -> Float64Array:
    """fn-reduction (np.minimum/np.maximum) of each window, via a sparse table."""
    level, width = grid, 1
    while 2 * width <= w.k:
        level = fn(level[:, :-width], level[:, width:])
        width *= 2
    result: Float64Array = fn(level[:, w.start], level[:, w.start + w.k - width])
    return result


def _last_nonempty(count: Int64Array) -> Int64Array:
    """For each column, the newest non-empty column at or before it (-1 if none)."""
    cols = np.where(count > 0, np.arange(count.shape[1], dtype=np.int64)[None, :], -1)
    last: Int64Array = np.maximum.accumulate(cols, axis=1)
    return last


def _first_nonempty(count: Int64Array) -> Int64Array:
    """For each column, the oldest non-empty column at or after it (width if none)."""
    width = count.shape[1]
    cols = np.where(count > 0, np.arange(width, dtype=np.int64)[None, :], width)
    first: Int64Array = np.minimum.accumulate(cols[:, ::-1], axis=1)[:, ::-1]
    return first


def _take(grid: np.ndarray, cols: Int64Array) -> np.ndarray:
    safe = np.clip(cols, 0, grid.shape[1] - 1)
    return np.take_along_axis(grid, safe, axis=1)


def last_value(g: BucketGrid, w: Windows) -> GridResult:
    last = _last_nonempty(g.count)[:, w.start + w.k - 1]
    return _take(g.last, last), last >= w.start[None, :]


def over_time(name: str, g: BucketGrid, w: Windows) -> GridResult:
    """sum/count/avg/min/max/last_over_time of each window."""
    counts = window_count(g.count, w)
    present = counts > 0
    if name == "last_over_time":
        return last_value(g, w)
    if name == "count_over_time":
        return counts.astype(np.float64), present
    if name == "min_over_time":
        return window_extreme(g.min, w, np.minimum), present
    if name == "max_over_time":
        return window_extreme(g.max, w, np.maximum), present
    sums = window_sum(g.sum, w.start, w.start + w.k)
    if name == "avg_over_time":
        return sums / np.maximum(counts, 1), present
    return sums, present


def _joins(g: BucketGrid) -> Float64Array:
    """Counter increase from each non-empty bucket's predecessor's last to its first value."""
    before = np.concatenate(
        [np.full((g.count.shape[0], 1), -1, np.int64), _last_nonempty(g.count)[:, :-1]], axis=1
    )
    prev_last = _take(g.last, before)
    step = np.where(g.first >= prev_last, g.first - prev_last, g.first)
    joined: Float64Array = np.where((g.count > 0) & (before >= 0), step, 0.0)
    return joined


def extrapolated(name: str, g: BucketGrid, w: Windows) -> GridResult:
    """rate, increase and delta exactly as Prometheus extrapolates them from raw samples."""
    counts = window_count(g.count, w)
    first = _first_nonempty(g.count)[:, w.start]
    last = _last_nonempty(g.count)[:, w.start + w.k - 1]
    v_first, v_last = _take(g.first, first), _take(g.last, last)
    is_counter = name != "delta"
    if is_counter:
        end = np.broadcast_to(w.start + w.k, first.shape)
        inside = window_sum(g.increase, np.broadcast_to(w.start, first.shape), end)
        result = inside + window_sum(_joins(g), np.minimum(first + 1, end), end)
    else:
        result = v_last - v_first
    starts, ends = w.ends - w.range_ms, w.ends
    factor = _extrapolation_factor(
        _take(g.first_ts, first),
        _take(g.last_ts, last),
        v_first,
        result,
        counts,
        starts,
        ends,
        is_counter,
    )
    out = result * factor
    if name == "rate":
        out = out / (w.range_ms / 1000.0)
    return out, counts >= 2
