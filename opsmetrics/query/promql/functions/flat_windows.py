"""The series of a range vector end to end in flat arrays, with every step's window of each.

A range function indexes these arrays with (series × steps) matrices of window bounds, so it
is a handful of numpy passes over a chunk of series instead of a Python call per series.
`over_chunks` keeps each chunk to about `CHUNK_CELLS` windows: passes over every series of a
large query at once fall out of the CPU caches and cost more than the calls they save.

Bounds: series of one length are searched once per run of series with the same timestamps
(a scrape's series share them); otherwise one `searchsorted` over the keys
`series_index × span + (ts - t0)`, whose span is wider than every timestamp and window edge,
so each series' keys form their own ascending band.

Running sums are taken per series (`segmented_cumsum`), never across the flat array: a
window's sum is then the same difference of the same prefix sums as when each series is
handled on its own, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from opsmetrics.model import Float64Array, Int64Array, Labels
from opsmetrics.query.promql.functions._common import merge_same_labels
from opsmetrics.query.promql.functions.window_sums import (
    PrefixSums,
    loop_window_mean,
    loop_window_sum,
    two_sum_errors,
)
from opsmetrics.query.promql.values import BoolArray, InstantVector, RangeVector, drop_name

#: Windows and samples per chunk of series (see `over_chunks`).
CHUNK_CELLS = 16384
CHUNK_SAMPLES = 65536
#: Cells of padded window matrices (windows × longest window) per chunk in `over_window_rows`.
PADDED_CELLS = 1 << 18
#: Keys above this could overflow int64 in the offset search; such ranges search per series.
_MAX_KEY = 1 << 62


@dataclass(frozen=True, slots=True)
class FlatWindows:
    """Samples of all series end to end; `lo`/`hi` are flat indices, shaped (series × steps).

    Series i owns samples offsets[i]:offsets[i + 1]; step j's window of series i is
    lo[i, j]:hi[i, j], as `RangeVector.bounds` gives it, shifted by offsets[i].
    """

    labels: list[Labels]
    ts: Int64Array
    values: Float64Array
    offsets: Int64Array
    lo: Int64Array
    hi: Int64Array
    window_end: Int64Array
    range_ms: int

    @staticmethod
    def of(rv: RangeVector) -> FlatWindows:
        ts, offsets = rv.flat_ts, rv.offsets
        lo, hi = _bounds(rv, ts, offsets)
        return FlatWindows(
            rv.labels, ts, rv.flat_values, offsets, lo, hi, rv.window_end, rv.range_ms
        )

    @property
    def counts(self) -> Int64Array:
        counts: Int64Array = self.hi - self.lo
        return counts

    @property
    def series_index(self) -> Int64Array:
        """The series each sample belongs to."""
        index: Int64Array = np.repeat(
            np.arange(len(self.labels), dtype=np.int64), np.diff(self.offsets)
        )
        return index

    @property
    def starts_series(self) -> BoolArray:
        """True at the first sample of each series."""
        first = np.zeros(len(self.ts), dtype=bool)
        first[self.offsets[:-1][np.diff(self.offsets) > 0]] = True
        return first

    def first_index(self) -> Int64Array:
        """Each window's first sample (clamped into the array where the window is empty)."""
        first: Int64Array = np.clip(self.lo, 0, max(len(self.ts) - 1, 0))
        return first

    def last_index(self) -> Int64Array:
        """Each window's last sample (clamped into the array where the window is empty)."""
        last: Int64Array = np.clip(self.hi - 1, 0, max(len(self.ts) - 1, 0))
        return last

    def prefix_bounds(self) -> tuple[Int64Array, Int64Array]:
        """Window bounds as indices into a `segmented_cumsum` result."""
        row = np.arange(len(self.labels), dtype=np.int64)[:, None]
        return self.lo + row, self.hi + row

    def pair_sums(self, flags: Float64Array) -> Float64Array:
        """Per window, the sum of flags[k] over samples k with lo < k < hi (pairs k-1, k)."""
        cum = segmented_cumsum(flags, self.offsets)
        plo, phi = self.prefix_bounds()
        start = np.minimum(plo + 1, phi)
        result: Float64Array = cum[phi] - cum[start]
        return result


def _bounds(rv: RangeVector, ts: Int64Array, offsets: Int64Array) -> tuple[Int64Array, Int64Array]:
    n, steps = len(rv.labels), len(rv.window_end)
    if n == 0 or steps == 0 or len(ts) == 0:
        zero = np.broadcast_to(offsets[:n, None], (n, steps)).astype(np.int64)
        return zero, zero.copy()
    starts = rv.window_end - rv.range_ms
    lengths = np.diff(offsets)
    if lengths.min() == lengths.max():
        return _bounds_by_timestamp_rows(ts.reshape(n, -1), starts, rv.window_end, offsets)
    t0 = min(int(ts.min()), int(starts.min()))
    span = max(int(ts.max()), int(rv.window_end.max())) - t0 + 1
    if span * n >= _MAX_KEY:
        return _bounds_per_series(rv, offsets)
    band = np.arange(n, dtype=np.int64) * span
    keys = np.repeat(band, np.diff(offsets)) + (ts - t0)
    lo = np.searchsorted(keys, band[:, None] + (starts - t0)[None, :], side="right")
    hi = np.searchsorted(keys, band[:, None] + (rv.window_end - t0)[None, :], side="right")
    return lo.astype(np.int64), hi.astype(np.int64)


def _bounds_by_timestamp_rows(
    grid: Int64Array, starts: Int64Array, ends: Int64Array, offsets: Int64Array
) -> tuple[Int64Array, Int64Array]:
    """Bounds of series of one length, searched once per run of series with the same
    timestamps (the series of one scrape share them: a histogram's buckets, say)."""
    new_row = np.ones(len(grid), dtype=bool)
    new_row[1:] = (grid[1:] != grid[:-1]).any(axis=1)
    rows = grid[new_row]
    lo = np.stack([np.searchsorted(r, starts, side="right") for r in rows])
    hi = np.stack([np.searchsorted(r, ends, side="right") for r in rows])
    run = np.cumsum(new_row) - 1
    base = offsets[:-1, None]
    return (lo[run] + base).astype(np.int64), (hi[run] + base).astype(np.int64)


def _bounds_per_series(rv: RangeVector, offsets: Int64Array) -> tuple[Int64Array, Int64Array]:
    pairs = [rv.bounds(i) for i in range(len(rv.labels))]
    lo = np.stack([p[0] for p in pairs]).astype(np.int64) + offsets[:-1, None]
    hi = np.stack([p[1] for p in pairs]).astype(np.int64) + offsets[:-1, None]
    return lo, hi


def segmented_cumsum(values: Float64Array, offsets: Int64Array) -> Float64Array:
    """Each series' running sum with a leading zero, end to end (length len(values) + series).

    Series i's prefix sums sit at offsets[i] + i ... offsets[i + 1] + i. Rows of similar length
    are summed together as a padded matrix; `cumsum` along a row adds in the same order as on
    the series alone, so every prefix equals that series' own `np.cumsum`.
    """
    lengths = np.diff(offsets)
    if lengths.size and lengths.min() == lengths.max():
        # Series of one length (the usual scrape-aligned case) are a matrix already.
        matrix = np.empty((len(lengths), int(lengths[0]) + 1))
        matrix[:, 0] = 0.0
        np.cumsum(values.reshape(len(lengths), -1), axis=1, out=matrix[:, 1:])
        flat: Float64Array = matrix.ravel()
        return flat
    out = np.zeros(len(values) + len(lengths))
    nonempty = np.flatnonzero(lengths > 0)
    # Rows grouped by bit length of their length: padding stays under half of each group.
    groups = np.frexp(lengths[nonempty].astype(np.float64))[1]
    for g in np.unique(groups):
        rows = nonempty[groups == g]
        width = int(lengths[rows].max())
        cols = np.arange(width, dtype=np.int64)[None, :]
        mask = cols < lengths[rows][:, None]
        src = np.where(mask, offsets[rows][:, None] + cols, 0)
        matrix = np.where(mask, values[src], 0.0)
        sums = np.cumsum(matrix, axis=1)
        dest = (offsets[rows] + rows + 1)[:, None] + cols
        out[dest[mask]] = sums[mask]
    return out


class SeriesPrefixSums(PrefixSums):
    """`PrefixSums` of every series at once, in `segmented_cumsum` layout: index the windows
    with `FlatWindows.prefix_bounds`."""

    def __init__(self, fw: FlatWindows) -> None:
        self.fw = fw
        self._build(fw.values)

    def _prefix(self, values: Float64Array) -> Float64Array:
        return segmented_cumsum(values, self.fw.offsets)

    def _errors(self, sums: Float64Array, clean: Float64Array) -> Float64Array:
        lengths = np.diff(self.fw.offsets)
        if lengths.min() == lengths.max():
            grid = sums.reshape(len(lengths), -1)
            rows = clean.reshape(len(lengths), -1)
            return two_sum_errors(grid[:, :-1], grid[:, 1:], rows).ravel()
        after = np.arange(1, len(clean) + 1, dtype=np.int64) + self.fw.series_index
        return two_sum_errors(sums[after - 1], sums[after], clean)


def window_sums(fw: FlatWindows) -> Float64Array:
    """Each window's compensated sum, as `window_sums.window_sum` gives it per series."""
    total, comp, ok = SeriesPrefixSums(fw).window(*fw.prefix_bounds())
    with np.errstate(all="ignore"):
        result: Float64Array = total + comp
        if not ok.all():
            result[~ok] = loop_window_sum(fw.values, fw.lo[~ok], fw.hi[~ok])
    return result


def window_means(fw: FlatWindows) -> Float64Array:
    """Each window's mean, as `window_sums.window_mean` gives it per series."""
    total, comp, ok = SeriesPrefixSums(fw).window(*fw.prefix_bounds())
    n = np.maximum(fw.counts, 1).astype(np.float64)
    with np.errstate(all="ignore"):
        result: Float64Array = total / n + comp / n
        if not ok.all():
            result[~ok] = loop_window_mean(fw.values, fw.lo[~ok], fw.hi[~ok])
    return result


#: A function of every window of a chunk of series: values and presence, (series × steps).
ChunkFunction = Callable[["FlatWindows"], tuple[Float64Array, BoolArray]]


def over_chunks(rv: RangeVector, fn: ChunkFunction, *, keep_name: bool = False) -> InstantVector:
    """Run `fn` over the series of `rv` a chunk (about `CHUNK_CELLS` windows and
    `CHUNK_SAMPLES` samples) at a time."""
    steps = len(rv.window_end)
    if steps == 0:
        return InstantVector.empty(0)
    group = np.maximum(
        np.arange(1, len(rv.labels) + 1) * steps // CHUNK_CELLS, rv.offsets[1:] // CHUNK_SAMPLES
    )
    values: list[Float64Array] = []
    present: list[BoolArray] = []
    stored_labels = rv.stored_labels()
    for part in _runs(group):
        fw = FlatWindows.of(rv.stored_slice(part, stored_labels))
        if len(fw.ts) == 0:
            values.append(np.zeros(fw.lo.shape))
            present.append(np.zeros(fw.lo.shape, dtype=bool))
            continue
        with np.errstate(all="ignore"):
            out, ok = fn(fw)
        values.append(np.broadcast_to(out, fw.lo.shape))
        present.append(ok)
    if not values:
        return InstantVector.empty(steps)
    return assemble(
        rv.labels, np.vstack(values), np.vstack(present), rv.stored, keep_name=keep_name
    )


#: A window function written for one series, as `_common.over_series` calls it.
SeriesFunction = Callable[
    [Int64Array, Float64Array, Int64Array, Int64Array], tuple[Float64Array, BoolArray]
]


def over_window_rows(
    rv: RangeVector, fn: SeriesFunction, *, keep_name: bool = False
) -> InstantVector:
    """Run a one-series window function over chunks of series at once.

    `fn` gets the flat samples of a chunk's series and the bounds of its windows, row after
    row; a function that only indexes samples through its bounds (padded window matrices)
    needs no change. Step-wise arguments must be repeated per row (`np.resize(q, len(lo))`).
    """

    def rows_of(fw: FlatWindows) -> tuple[Float64Array, BoolArray]:
        values = np.zeros(fw.lo.shape)
        present = np.zeros(fw.lo.shape, dtype=bool)
        cells = np.maximum(fw.counts.max(axis=1), 1) * fw.lo.shape[1]
        for rows in _runs(np.cumsum(cells) // PADDED_CELLS):
            lo, hi = fw.lo[rows], fw.hi[rows]
            out, ok = fn(fw.ts, fw.values, lo.ravel(), hi.ravel())
            values[rows] = np.reshape(out, lo.shape)
            present[rows] = np.reshape(ok, lo.shape)
        return values, present

    return over_chunks(rv, rows_of, keep_name=keep_name)


def _runs(group: Int64Array) -> list[slice]:
    """Slices of the runs of equal values in a non-decreasing array of group numbers."""
    cuts = [0, *(np.flatnonzero(np.diff(group)) + 1).tolist(), len(group)]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def assemble(
    labels: list[Labels],
    values: Float64Array,
    present: BoolArray,
    rows: Int64Array,
    *,
    keep_name: bool = False,
) -> InstantVector:
    """The result, one row of (series × steps) per stored series, as an InstantVector with
    series i (labels[i]) from row rows[i]: series with no value dropped, absent steps zeroed,
    series whose labels coincide once the name is dropped merged."""
    has_value = np.asarray(present.any(axis=1), dtype=bool)
    keep = np.flatnonzero(has_value[rows])
    if keep.size == 0:
        return InstantVector.empty(present.shape[1])
    names = [labels[i] if keep_name else drop_name(labels[i]) for i in keep.tolist()]
    source = rows[keep]
    mask = present[source]
    return merge_same_labels(names, np.where(mask, values[source], 0.0), mask)
