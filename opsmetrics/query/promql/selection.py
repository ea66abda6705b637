"""Series selectors: instant vectors (lookback, staleness) and range vectors (left-open windows).

Both read every series' samples for all steps in one storage call. An instant selector then
works per series on whole arrays of timestamps; a range selector keeps the read's flat arrays.
"""

from __future__ import annotations

import numpy as np
import promql_parser as pp

from opsmetrics.model import Float64Array, Int64Array, Labels, SampleRows, Series, is_stale
from opsmetrics.query.promql.nodes import (
    TimedNode,
    at_ms,
    duration_field_ms,
    matcher_groups,
    offset_ms,
)
from opsmetrics.query.promql.values import (
    ArrayT,
    EvalContext,
    InstantVector,
    RangeVector,
)


def selector_times(node: TimedNode, ctx: EvalContext) -> Int64Array:
    """The timestamp each step reads at: the step (or the `@` time) minus the offset."""
    at = at_ms(node, ctx.start_ms, ctx.end_ms)
    base = ctx.steps if at is None else np.full(len(ctx.steps), at, dtype=np.int64)
    return base - offset_ms(node)


def select_matching(
    node: pp.VectorSelector, ctx: EvalContext, start: int, end: int
) -> list[Series]:
    """Series matching the selector with samples in [start, end], sorted by labels."""
    found: dict[int, Series] = {}
    for matchers in matcher_groups(node):
        for s in ctx.storage.select_series(matchers, start, end):
            found[s.id] = s
    return sorted(found.values(), key=lambda s: s.labels)


def _load(
    node: pp.VectorSelector, ctx: EvalContext, start: int, end: int
) -> tuple[list[Series], SampleRows, Int64Array]:
    """Matching series, their samples in [start, end], and each series' row offsets."""
    series = select_matching(node, ctx, start, end)
    ctx.check_deadline()
    rows = ctx.storage.read_samples([s.id for s in series], start, end)
    ctx.count_samples(len(rows.ts))
    ctx.check_deadline()
    ids = np.array([s.id for s in series], dtype=np.int64)
    lo = np.searchsorted(rows.series_ids, ids, side="left")
    hi = np.searchsorted(rows.series_ids, ids, side="right")
    return series, rows, np.stack([lo, hi]) if len(ids) else np.zeros((2, 0), np.int64)


def instant_selector(node: pp.VectorSelector, ctx: EvalContext) -> InstantVector:
    """Each series' newest sample in (t - lookback, t]; a stale marker there means absent."""
    times = selector_times(node, ctx)
    n = len(times)
    if n == 0:
        return InstantVector.empty(0)
    series, rows, bounds = _load(
        node, ctx, int(times.min()) - ctx.lookback_ms + 1, int(times.max())
    )
    labels: list[Labels] = []
    values, present, sample_ts = [], [], []
    for i, s in enumerate(series):
        ts = rows.ts[bounds[0, i] : bounds[1, i]]
        vals = rows.values[bounds[0, i] : bounds[1, i]]
        if len(ts) == 0:
            continue
        pos = np.searchsorted(ts, times, side="right") - 1
        safe = np.maximum(pos, 0)
        ok = (pos >= 0) & (ts[safe] > times - ctx.lookback_ms) & ~is_stale(vals[safe])
        if not ok.any():
            continue
        labels.append(s.labels)
        values.append(np.where(ok, vals[safe], np.nan))
        present.append(ok)
        sample_ts.append(ts[safe])
    if not labels:
        return InstantVector.empty(n)
    return InstantVector(labels, np.stack(values), np.stack(present), np.stack(sample_ts))


def range_selector(node: pp.MatrixSelector, ctx: EvalContext) -> RangeVector:
    """Raw points of a matrix selector; step j's window is (end_j - range, end_j]."""
    vs = node.vector_selector
    range_ms = duration_field_ms(node, "range")
    window_end = selector_times(vs, ctx)
    if len(window_end) == 0:
        return RangeVector.empty(range_ms, window_end)
    start, end = int(window_end.min()) - range_ms + 1, int(window_end.max())
    series, rows, bounds = _load(vs, ctx, start, end)
    return _range_vector(series, rows, bounds, range_ms, window_end)


def raw_range(
    ctx: EvalContext, series: list[Series], range_ms: int, window_end: Int64Array
) -> RangeVector:
    """The range vector of the given series (sorted by labels) for windows ending at
    `window_end`, read from the raw samples."""
    if len(window_end) == 0 or not series:
        return RangeVector.empty(range_ms, window_end)
    start, end = int(window_end.min()) - range_ms + 1, int(window_end.max())
    rows = ctx.storage.read_samples([s.id for s in series], start, end)
    ctx.count_samples(len(rows.ts))
    ids = np.array([s.id for s in series], dtype=np.int64)
    lo = np.searchsorted(rows.series_ids, ids, side="left")
    hi = np.searchsorted(rows.series_ids, ids, side="right")
    return _range_vector(series, rows, np.stack([lo, hi]), range_ms, window_end)


def _range_vector(
    series: list[Series],
    rows: SampleRows,
    bounds: Int64Array,
    range_ms: int,
    window_end: Int64Array,
) -> RangeVector:
    """The read's samples without stale markers, kept in the read's order (by series id);
    `labels` in `series` order (by labels). Series left with no sample are dropped."""
    ts, values, lo, hi = _without_stale(rows, bounds[0], bounds[1])
    present = np.flatnonzero(hi > lo)
    if present.size == 0:
        return RangeVector.empty(range_ms, window_end)
    lo, hi = lo[present], hi[present]
    labels = [series[i].labels for i in present.tolist()]
    by_read = np.argsort(lo, kind="stable")
    ends = hi[by_read]
    if lo[by_read[0]] != 0 or ends[-1] != len(ts) or not np.array_equal(lo[by_read[1:]], ends[:-1]):
        # Rows of no series here, or a series twice: copy each series' rows, in label order.
        parts = list(zip(lo.tolist(), hi.tolist(), strict=True))
        ts_parts, value_parts = [ts[a:b] for a, b in parts], [values[a:b] for a, b in parts]
        return RangeVector.of_series(labels, ts_parts, value_parts, range_ms, window_end)
    stored = np.empty(len(by_read), dtype=np.int64)
    stored[by_read] = np.arange(len(by_read), dtype=np.int64)
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    ts, values = _read_only(ts), _read_only(values)
    return RangeVector(labels, ts, values, offsets, stored, range_ms, window_end)


def _without_stale(
    rows: SampleRows, lo: Int64Array, hi: Int64Array
) -> tuple[Int64Array, Float64Array, Int64Array, Int64Array]:
    """The read's columns without stale markers, and the series' row bounds in them."""
    ts = np.asarray(rows.ts, dtype=np.int64)
    values = np.asarray(rows.values, dtype=np.float64)
    stale = is_stale(values)
    if not stale.any():
        return ts, values, lo, hi
    # Markers are rare: shift each bound back by the markers before it.
    marks = np.flatnonzero(stale)
    lo = lo - np.searchsorted(marks, lo)
    hi = hi - np.searchsorted(marks, hi)
    return ts[~stale], values[~stale], lo, hi


def _read_only(column: ArrayT) -> ArrayT:
    """A view of `column` that cannot be written: it may be the storage's own read."""
    out: ArrayT = column.view()
    out.flags.writeable = False
    return out
