"""Shared building blocks for the PromQL function implementations."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from opsmetrics.model import Float64Array, Int64Array, Labels
from opsmetrics.query.promql.values import (
    BoolArray,
    InstantVector,
    QueryError,
    QueryExecutionError,
    RangeVector,
    Scalar,
    StringValue,
    Value,
    drop_name,
)

#: A per-series step result: values and presence, each shaped (steps,).
StepResult = tuple[Float64Array, BoolArray]


def instant_arg(args: list[Value], i: int) -> InstantVector:
    arg = args[i]
    if not isinstance(arg, InstantVector):
        raise QueryError(f"expected an instant vector as argument {i + 1}")
    return arg


def range_arg(args: list[Value], i: int) -> RangeVector:
    arg = args[i]
    if not isinstance(arg, RangeVector):
        raise QueryError(f"expected a range vector as argument {i + 1}")
    return arg


def scalar_arg(args: list[Value], i: int, steps: int) -> Float64Array:
    """A scalar argument as one value per step."""
    arg = args[i]
    if not isinstance(arg, Scalar):
        raise QueryError(f"expected a scalar as argument {i + 1}")
    return np.broadcast_to(np.asarray(arg.values, dtype=np.float64), (steps,))


def string_arg(args: list[Value], i: int) -> str:
    arg = args[i]
    if not isinstance(arg, StringValue):
        raise QueryError(f"expected a string as argument {i + 1}")
    return arg.value


def with_label(labels: Labels, name: str, value: str) -> Labels:
    """`labels` with `name` set to `value`; an empty value removes the label."""
    rest = [p for p in labels if p[0] != name]
    if value != "":
        rest.append((name, value))
    return tuple(sorted(rest))


def build_vector(
    labels: list[Labels], rows: list[Float64Array], present: list[BoolArray], steps: int
) -> InstantVector:
    """Assemble an InstantVector, dropping series that have no value at any step."""
    keep = [i for i, p in enumerate(present) if p.any()]
    if not keep:
        return InstantVector.empty(steps)
    vals = np.stack([np.where(present[i], rows[i], 0.0) for i in keep])
    mask = np.stack([present[i] for i in keep])
    return merge_same_labels([labels[i] for i in keep], vals, mask)


def merge_same_labels(
    labels: list[Labels], values: Float64Array, present: BoolArray
) -> InstantVector:
    """Fold rows that share a label set into one; overlapping steps are Prometheus's error."""
    if len(set(labels)) == len(labels):
        return InstantVector(labels, values, present)
    index: dict[Labels, int] = {}
    out_labels: list[Labels] = []
    out_vals: list[Float64Array] = []
    out_present: list[BoolArray] = []
    for row, lab in enumerate(labels):
        j = index.get(lab)
        if j is None:
            index[lab] = len(out_labels)
            out_labels.append(lab)
            out_vals.append(values[row].copy())
            out_present.append(present[row].copy())
            continue
        if (out_present[j] & present[row]).any():
            raise QueryExecutionError("vector cannot contain metrics with the same labelset")
        out_vals[j] = np.where(present[row], values[row], out_vals[j])
        out_present[j] = out_present[j] | present[row]
    return InstantVector(out_labels, np.stack(out_vals), np.stack(out_present))


def map_vector(
    vec: InstantVector, fn: Callable[[Float64Array], Float64Array], *, keep_name: bool = False
) -> InstantVector:
    """Apply an element-wise function to every value, dropping the metric name by default."""
    with np.errstate(all="ignore"):
        vals = np.asarray(fn(vec.values), dtype=np.float64)
    labels = vec.labels if keep_name else [drop_name(lab) for lab in vec.labels]
    return merge_same_labels(labels, vals, vec.present.copy())


def series_windows(
    rv: RangeVector,
) -> Iterator[tuple[int, Int64Array, Float64Array, Int64Array, Int64Array]]:
    """For each series: its index, timestamps, values and per-step window bounds."""
    ts, values = rv.ts, rv.values
    for i in range(len(rv.labels)):
        lo, hi = rv.bounds(i)
        yield i, ts[i], values[i], lo.astype(np.int64), hi.astype(np.int64)


def over_series(
    rv: RangeVector,
    fn: Callable[[Int64Array, Float64Array, Int64Array, Int64Array], StepResult],
    *,
    keep_name: bool = False,
) -> InstantVector:
    """Run a per-series window function over a range vector and assemble the result."""
    steps = len(rv.window_end)
    labels: list[Labels] = []
    rows: list[Float64Array] = []
    present: list[BoolArray] = []
    for i, ts, vals, lo, hi in series_windows(rv):
        with np.errstate(all="ignore"):
            out, ok = fn(ts, vals, lo, hi)
        labels.append(rv.labels[i] if keep_name else drop_name(rv.labels[i]))
        rows.append(out)
        present.append(ok)
    return build_vector(labels, rows, present, steps)


def padded(
    values: Float64Array, lo: Int64Array, hi: Int64Array, fill: float
) -> tuple[Float64Array, BoolArray]:
    """Window contents as a (steps × longest window) matrix, padded with `fill`."""
    counts = hi - lo
    width = int(counts.max()) if counts.size else 0
    cols = np.arange(width, dtype=np.int64)
    mask = cols[None, :] < counts[:, None]
    if width == 0 or values.size == 0:
        return np.full((len(lo), width), fill), mask
    idx = np.minimum(lo[:, None] + cols[None, :], values.size - 1)
    return np.where(mask, values[idx], fill), mask


def kahan_inc(
    inc: Float64Array, total: Float64Array, comp: Float64Array
) -> tuple[Float64Array, Float64Array]:
    """Neumaier-compensated addition, as Prometheus's kahanSumInc (compensation reset on Inf)."""
    new = total + inc
    bigger = np.abs(total) >= np.abs(inc)
    comp = comp + np.where(bigger, (total - new) + inc, (inc - new) + total)
    return new, np.where(np.isinf(new), 0.0, comp)


def go_sorted(matrix: Float64Array, mask: BoolArray) -> tuple[Float64Array, Float64Array]:
    """Rows sorted as Go's sort.Float64s would (NaN first); padding beyond each count.

    Returns the sorted matrix and the per-row count of real values.
    """
    counts = mask.sum(axis=1)
    nans = (np.isnan(matrix) & mask).sum(axis=1)
    filled = np.where(mask, matrix, np.inf)
    filled = np.where(np.isnan(filled), np.inf, filled)
    order = np.sort(filled, axis=1)  # real values first, then NaN/padding as +Inf
    cols = np.arange(matrix.shape[1])[None, :]
    src = np.clip(cols - nans[:, None], 0, max(matrix.shape[1] - 1, 0))
    shifted = np.take_along_axis(order, src, axis=1) if matrix.shape[1] else order
    out = np.where(cols < nans[:, None], np.nan, shifted)
    return out, counts.astype(np.float64)


def quantile_rows(q: Float64Array, matrix: Float64Array, mask: BoolArray) -> Float64Array:
    """Prometheus's quantile() per row (q per row), with Go's NaN-first ordering."""
    ordered, n = go_sorted(matrix, mask)
    if ordered.shape[1] == 0:
        return np.full(len(q), np.nan)
    rank = q * (n - 1)
    lower = np.maximum(0.0, np.floor(rank))
    upper = np.minimum(n - 1, lower + 1)
    weight = rank - np.floor(rank)
    width = ordered.shape[1] - 1
    li = np.clip(np.nan_to_num(lower), 0, width).astype(np.int64)[:, None]
    ui = np.clip(np.nan_to_num(upper), 0, width).astype(np.int64)[:, None]
    low = np.take_along_axis(ordered, li, axis=1)[:, 0]
    high = np.take_along_axis(ordered, ui, axis=1)[:, 0]
    res = low * (1 - weight) + high * weight
    res = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res))
    return np.where(np.isnan(q) | (n == 0), np.nan, res)
