"""histogram_quantile and histogram_fraction over classic `le` buckets.

histogram_count/sum/avg/stddev/stdvar only read native histograms; on float samples Prometheus
returns nothing, and so do we (opsmetrics stores no native histograms).
"""

from __future__ import annotations

import numpy as np

from opsmetrics.model import Float64Array, Labels
from opsmetrics.query.promql.functions._common import (
    build_vector,
    instant_arg,
    scalar_arg,
    string_arg,
    with_label,
)
from opsmetrics.query.promql.values import (
    BoolArray,
    CallInfo,
    EvalContext,
    InstantVector,
    QueryError,
    Value,
    drop_name,
    register,
)

BUCKET_LABEL = "le"
#: Counts closer than this (relative) are treated as equal, as Prometheus does.
SMALL_DELTA_TOLERANCE = 1e-12
MIN_NORMAL = 2.2250738585072014e-308


class BucketSet:
    """The buckets of one classic histogram: sorted upper bounds, counts (buckets × steps)."""

    def __init__(self, bounds: Float64Array, counts: Float64Array, present: BoolArray) -> None:
        self.bounds = bounds
        self.counts = counts
        self.present = present


def _parse_bound(labels: Labels) -> float | None:
    for name, value in labels:
        if name == BUCKET_LABEL:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def group_buckets(vec: InstantVector) -> dict[Labels, BucketSet]:
    """Group bucket series by their labels minus `le`; merge equal bounds.

    The metric name stays in the key, so two histograms that differ only by name form two
    groups; their results then clash once the name is dropped, which is Prometheus's error.
    """
    groups: dict[Labels, dict[float, tuple[Float64Array, BoolArray]]] = {}
    for row, labels in enumerate(vec.labels):
        bound = _parse_bound(labels)
        if bound is None or np.isnan(bound):
            continue
        key = tuple(p for p in labels if p[0] != BUCKET_LABEL)
        vals = np.where(vec.present[row], vec.values[row], 0.0)
        old = groups.setdefault(key, {}).get(bound)
        if old is not None:
            vals, pres = old[0] + vals, old[1] | vec.present[row]
        else:
            pres = vec.present[row]
        groups[key][bound] = (vals, pres)
    result: dict[Labels, BucketSet] = {}
    for key, by_bound in groups.items():
        bounds = sorted(by_bound)
        result[key] = BucketSet(
            np.array(bounds, dtype=np.float64),
            np.stack([by_bound[b][0] for b in bounds]),
            np.stack([by_bound[b][1] for b in bounds]),
        )
    return result


def _almost_equal(a: Float64Array, b: Float64Array) -> BoolArray:
    with np.errstate(all="ignore"):
        diff = np.abs(a - b)
        total = np.abs(a) + np.abs(b)
        tiny = (a == 0) | (b == 0) | (total < MIN_NORMAL)
        rel = diff / np.minimum(total, np.finfo(np.float64).max)
        close: BoolArray = (a == b) | np.where(
            tiny, diff < SMALL_DELTA_TOLERANCE * MIN_NORMAL, rel < SMALL_DELTA_TOLERANCE
        )
    return close


def make_monotonic(buckets: BucketSet) -> Float64Array:
    """Counts with tiny deltas smoothed and decreases lifted, as Prometheus fixes buckets."""
    counts = buckets.counts.copy()
    steps = counts.shape[1]
    prev = np.full(steps, np.nan)
    seen = np.zeros(steps, dtype=bool)
    for i in range(counts.shape[0]):
        here = buckets.present[i]
        curr = counts[i]
        first = here & ~seen
        same = here & seen & (curr == prev)
        lift = here & seen & ~same & (_almost_equal(prev, curr) | (curr < prev))
        advance = first | (here & seen & ~same & ~lift)
        counts[i] = np.where(lift, prev, curr)
        prev = np.where(advance, curr, prev)
        seen |= here
    return counts


def bucket_quantile(q: Float64Array, buckets: BucketSet) -> tuple[Float64Array, BoolArray]:
    counts = make_monotonic(buckets)
    pres = buckets.present
    steps = counts.shape[1]
    n_present = pres.sum(axis=0)
    last_idx = counts.shape[0] - 1 - np.argmax(pres[::-1], axis=0)
    cols = np.arange(steps)
    has_inf = np.isposinf(buckets.bounds[last_idx]) & (n_present > 0)
    observations = counts[last_idx, cols]
    rank = q * observations
    result = np.full(steps, np.nan)
    done = np.zeros(steps, dtype=bool)
    prev_bound = np.full(steps, np.nan)
    prev_count = np.zeros(steps)
    seen = np.zeros(steps, dtype=bool)
    with np.errstate(all="ignore"):
        for i in range(counts.shape[0]):
            here = pres[i] & ~done & (cols * 0 + i != last_idx)
            hit = here & (counts[i] >= rank)
            bound = buckets.bounds[i]
            at_first = hit & ~seen
            start = np.where(seen, prev_bound, 0.0)
            span = counts[i] - np.where(seen, prev_count, 0.0)
            frac = (rank - np.where(seen, prev_count, 0.0)) / span
            value = np.where(at_first & (bound <= 0), bound, start + (bound - start) * frac)
            result = np.where(hit, value, result)
            done |= hit
            prev_bound = np.where(here, bound, prev_bound)
            prev_count = np.where(here, counts[i], prev_count)
            seen |= here
    # Rank beyond every finite bucket: the highest finite upper bound.
    result = np.where(~done, prev_bound, result)
    bad = ~has_inf | (n_present < 2) | (observations == 0) | np.isnan(q)
    result = np.where(bad, np.nan, result)
    result = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, result))
    result = np.where(np.isnan(q), np.nan, result)
    return result, n_present > 0


@register("histogram_quantile", ("scalar", "instant"))
def histogram_quantile(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 1)
    steps = vec.values.shape[1]
    q = scalar_arg(args, 0, steps)
    labels, rows, present = [], [], []
    for key, buckets in group_buckets(vec).items():
        values, ok = bucket_quantile(q, buckets)
        labels.append(drop_name(key))
        rows.append(values)
        present.append(ok)
    return build_vector(labels, rows, present, steps)


def format_quantile(q: float) -> str:
    """A quantile as histogram_quantiles labels it: 0.5, 1.0, NaN, +Inf."""
    if np.isnan(q):
        return "NaN"
    if np.isinf(q):
        return "+Inf" if q > 0 else "-Inf"
    return repr(float(q))


def _distinct_values(q: Float64Array) -> list[tuple[float, BoolArray]]:
    """Each distinct value of a per-step scalar with the steps that hold it (NaN is one value)."""
    nan = np.isnan(q)
    out: list[tuple[float, BoolArray]] = [(float(v), q == v) for v in np.unique(q[~nan])]
    if nan.any():
        out.append((float("nan"), nan))
    return out


@register("histogram_quantiles", ("instant", "string", "scalar"), variadic=True)
def histogram_quantiles(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    """One histogram_quantile per quantile argument, told apart by the label named in arg 2."""
    vec = instant_arg(args, 0)
    steps = vec.values.shape[1]
    name = string_arg(args, 1)
    if name == "":
        raise QueryError("invalid quantile label name in histogram_quantiles(): empty")
    groups = group_buckets(vec)
    labels, rows, present = [], [], []
    for i in range(2, len(args)):
        q = scalar_arg(args, i, steps)
        for key, buckets in groups.items():
            values, ok = bucket_quantile(q, buckets)
            for qv, at in _distinct_values(q):
                labels.append(with_label(drop_name(key), name, format_quantile(qv)))
                rows.append(values)
                present.append(ok & at)
    return build_vector(labels, rows, present, steps)


def _position(v: Float64Array, lo: Float64Array, hi: float) -> Float64Array:
    """Where `v` (clamped to the bucket) sits in [lo, hi] as 0..1, interpolating linearly.

    In a bucket with an infinite bound every point strictly inside sits at the finite bound.
    """
    v = np.minimum(np.maximum(v, lo), hi)
    pos = (v - lo) / (hi - lo)
    if np.isposinf(hi):
        pos = np.where(np.isposinf(v), 1.0, 0.0)
    return np.where(np.isneginf(lo), np.where(np.isneginf(v), 0.0, 1.0), pos)


def bucket_fraction(
    lower: Float64Array, upper: Float64Array, buckets: BucketSet
) -> tuple[Float64Array, BoolArray]:
    counts = make_monotonic(buckets)
    pres = buckets.present
    n_present = pres.sum(axis=0)
    last_idx = counts.shape[0] - 1 - np.argmax(pres[::-1], axis=0)
    cols = np.arange(counts.shape[1])
    total = counts[last_idx, cols]
    inside = np.zeros(counts.shape[1])
    prev_bound = np.full(counts.shape[1], np.nan)
    prev_count = np.zeros(counts.shape[1])
    seen = np.zeros(counts.shape[1], dtype=bool)
    with np.errstate(all="ignore"):
        for i in range(counts.shape[0]):
            here = pres[i]
            hi = buckets.bounds[i]
            lo = np.where(seen, prev_bound, 0.0 if hi > 0 else -np.inf)
            lo = np.minimum(lo, hi)
            count = counts[i] - np.where(seen, prev_count, 0.0)
            full = (lower <= lo) & (upper >= hi)
            share = _position(upper, lo, hi) - _position(lower, lo, hi)
            part = np.where(hi == lo, 0.0, np.maximum(share, 0.0) * count)
            contrib = np.where(full, count, part)
            inside = np.where(here, inside + contrib, inside)
            prev_bound = np.where(here, hi, prev_bound)
            prev_count = np.where(here, counts[i], prev_count)
            seen |= here
        result = inside / total
    has_inf = np.isposinf(buckets.bounds[last_idx])
    bad = ~has_inf | (total == 0) | np.isnan(lower) | np.isnan(upper)
    return np.where(bad, np.nan, result), n_present > 0


@register("histogram_fraction", ("scalar", "scalar", "instant"))
def histogram_fraction(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 2)
    steps = vec.values.shape[1]
    lower, upper = scalar_arg(args, 0, steps), scalar_arg(args, 1, steps)
    labels, rows, present = [], [], []
    for key, buckets in group_buckets(vec).items():
        values, ok = bucket_fraction(lower, upper, buckets)
        labels.append(drop_name(key))
        rows.append(values)
        present.append(ok)
    return build_vector(labels, rows, present, steps)


def _native_only(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    # These read native histograms only; float samples are skipped, leaving nothing.
    return InstantVector.empty(len(ctx.steps))


for _name in ("histogram_count", "histogram_sum", "histogram_avg"):
    register(_name, ("instant",))(_native_only)
for _name in ("histogram_stddev", "histogram_stdvar"):
    register(_name, ("instant",))(_native_only)
