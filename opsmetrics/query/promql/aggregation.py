"""Aggregation operators (sum, avg, min, max, count, group, stddev, stdvar, quantile).

Rows are grouped by their `by`/`without` label set; each group is reduced over its rows for
all steps at once. The operators that pick series (topk, bottomk, limitk, limit_ratio) and
count_values live in aggregation_select.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import promql_parser as pp

from opsmetrics.model import METRIC_NAME, Float64Array, Labels
from opsmetrics.query.promql.values import BoolArray, InstantVector
from opsmetrics.query.promql.vectors import drop_labels, keep_labels

Reducer = Callable[[Float64Array, BoolArray], Float64Array]


def group_key_function(modifier: pp.AggModifier | None) -> Callable[[Labels], Labels]:
    """How a row's labels map to its group's labels under `by (…)`, `without (…)` or neither."""
    if modifier is None:
        return lambda labels: ()
    names = frozenset(modifier.labels)
    if modifier.type == pp.AggModifierType.Without:
        dropped = names | {METRIC_NAME}
        return lambda labels: drop_labels(labels, dropped)
    return lambda labels: keep_labels(labels, names)


def group_rows(vec: InstantVector, modifier: pp.AggModifier | None) -> dict[Labels, list[int]]:
    key = group_key_function(modifier)
    groups: dict[Labels, list[int]] = {}
    for i, labels in enumerate(vec.labels):
        groups.setdefault(key(labels), []).append(i)
    return groups


def aggregate(
    vec: InstantVector, reducer: Reducer, modifier: pp.AggModifier | None
) -> InstantVector:
    """One output row per group, computed by `reducer(values, present)` over the group's rows."""
    steps = vec.values.shape[1]
    groups = group_rows(vec, modifier)
    if not groups:
        return InstantVector.empty(steps)
    values, present = [], []
    for rows in groups.values():
        idx = np.array(rows)
        p = vec.present[idx]
        with np.errstate(all="ignore"):
            values.append(reducer(vec.values[idx], p))
        present.append(p.any(axis=0))
    return InstantVector(list(groups), np.stack(values), np.stack(present))


def kahan_step(
    total: Float64Array, comp: Float64Array, inc: Float64Array
) -> tuple[Float64Array, Float64Array]:
    """One Neumaier-compensated addition, as Prometheus's kahanSumInc."""
    t = total + inc
    big = np.abs(total) >= np.abs(inc)
    delta = np.where(big, (total - t) + inc, (inc - t) + total)
    return t, np.where(np.isinf(t), 0.0, comp + delta)


def kahan_sum(v: Float64Array, p: BoolArray) -> tuple[Float64Array, Float64Array]:
    """Compensated sum over present rows, and the row count."""
    total = np.zeros(v.shape[1])
    comp = np.zeros(v.shape[1])
    for row, mask in zip(v, p, strict=True):
        t, c = kahan_step(total, comp, np.where(mask, row, 0.0))
        total, comp = np.where(mask, t, total), np.where(mask, c, comp)
    return total + comp, p.sum(axis=0).astype(np.float64)


def reduce_sum(v: Float64Array, p: BoolArray) -> Float64Array:
    return kahan_sum(v, p)[0]


def reduce_avg(v: Float64Array, p: BoolArray) -> Float64Array:
    """The direct mean unless the sum overflows; then the incremental mean, as Prometheus."""
    total, count = kahan_sum(v, p)
    direct = total / count
    finite_inputs = np.where(p, np.isfinite(v), True).all(axis=0)
    overflow = ~np.isfinite(direct) & finite_inputs
    if not overflow.any():
        return direct
    mean, comp, n = (np.zeros(v.shape[1]) for _ in range(3))
    for row, mask in zip(v, p, strict=True):
        n = n + mask
        q = (n - 1) / np.maximum(n, 1)
        m, c = kahan_step(q * mean, q * comp, np.where(mask, row, 0.0) / np.maximum(n, 1))
        mean, comp = np.where(mask, m, mean), np.where(mask, c, comp)
    return np.where(overflow, mean + comp, direct)


def reduce_min(v: Float64Array, p: BoolArray) -> Float64Array:
    result: Float64Array = np.fmin.reduce(np.where(p, v, np.nan), axis=0)
    return result


def reduce_max(v: Float64Array, p: BoolArray) -> Float64Array:
    result: Float64Array = np.fmax.reduce(np.where(p, v, np.nan), axis=0)
    return result


def reduce_count(v: Float64Array, p: BoolArray) -> Float64Array:
    counts: Float64Array = p.sum(axis=0).astype(np.float64)
    return counts


def reduce_group(v: Float64Array, p: BoolArray) -> Float64Array:
    return np.ones(v.shape[1])


def reduce_stdvar(v: Float64Array, p: BoolArray) -> Float64Array:
    """Welford's online variance, row by row, as Prometheus computes it."""
    mean, m2, n = (np.zeros(v.shape[1]) for _ in range(3))
    for row, mask in zip(v, p, strict=True):
        n = n + mask
        f = np.where(mask, row, 0.0)
        delta = f - mean
        new_mean = mean + delta / np.maximum(n, 1)
        new_m2 = m2 + delta * (f - new_mean)
        mean = np.where(mask, new_mean, mean)
        m2 = np.where(mask, new_m2, m2)
    result: Float64Array = np.divide(m2, n)
    return result


def reduce_stddev(v: Float64Array, p: BoolArray) -> Float64Array:
    result: Float64Array = np.sqrt(reduce_stdvar(v, p))
    return result


def quantile_reducer(q: Float64Array) -> Reducer:
    """φ-quantile per step over the group's present values, NaN values sorting first."""

    def reduce(v: Float64Array, p: BoolArray) -> Float64Array:
        key = np.where(np.isnan(v), 0.0, v)
        order = np.lexsort((key, ~np.isnan(v), ~p), axis=0)
        ordered = np.take_along_axis(np.where(p, v, np.nan), order, axis=0)
        n = p.sum(axis=0).astype(np.float64)
        rank = np.nan_to_num(q * (n - 1))
        lower = np.clip(np.floor(rank), 0, np.maximum(n - 1, 0))
        upper = np.minimum(n - 1, lower + 1)
        weight = rank - np.floor(rank)
        cols = np.arange(v.shape[1])
        lo_v = ordered[lower.astype(np.int64), cols]
        hi_v = ordered[np.maximum(upper, 0).astype(np.int64), cols]
        result = lo_v * (1 - weight) + hi_v * weight
        result = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, result))
        out: Float64Array = np.where(np.isnan(q) | (n == 0), np.nan, result)
        return out

    return reduce


REDUCERS: dict[str, Reducer] = {
    "sum": reduce_sum,
    "avg": reduce_avg,
    "min": reduce_min,
    "max": reduce_max,
    "count": reduce_count,
    "group": reduce_group,
    "stddev": reduce_stddev,
    "stdvar": reduce_stdvar,
}
