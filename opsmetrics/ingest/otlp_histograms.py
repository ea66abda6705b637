"""Histogram and summary points of an OTLP metric mapped to rows in bulk.

The same rules as the one-point-at-a-time path of otlp_convert: each field is read for all of
a metric's points in one pass, the rows (`_bucket{le}`, `_sum`, `_count`, `{quantile}`) of
every point are laid out with numpy, and the series of a point's rows are found once per
distinct (attributes, bounds or quantiles) pair, so no Python runs per row. NO_RECORDED_VALUE
makes stale markers (always in the samples batch), and the rejects are the plain path's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import numpy.typing as npt

from opsmetrics.ingest.otlp_names import format_float
from opsmetrics.ingest.otlp_numbers import NO_RECORDED_VALUE, NO_TIME, reject_in_order
from opsmetrics.ingest.otlp_rows import Rejects, Rows
from opsmetrics.ingest.proto import otlp_view_pb2 as view
from opsmetrics.ingest.protowire import offsets, ranges
from opsmetrics.model import STALE_NAN, Float64Array, Int32Array, Int64Array, Labels

BoolArray = npt.NDArray[np.bool_]
Attributes = tuple[bytes, ...]  # a data point's KeyValue messages, undecoded
Extra = tuple[str, str] | None  # the `le` or `quantile` label of a row
#: The rows a point shape stands for: (name suffix, extra label), in row order.
Shape = list[tuple[str, Extra]]
#: The series of a point's rows from the metric name, its shape (the key and the rows) and
#: its attributes.
SeriesFor = Callable[[str, bytes, Shape, Attributes], list[Labels]]

_INF = float("inf")
MISMATCH = "histogram points whose bucket_counts do not have one entry more than explicit_bounds"
UNORDERED = "histogram points whose explicit_bounds are not strictly increasing"


@dataclass(frozen=True, slots=True)
class Sink:
    """Where a metric's rows go: `rows` (samples or deltas); stale markers go to `samples`."""

    rows: Rows
    samples: Rows
    resource: int
    series: SeriesFor


@dataclass(frozen=True, slots=True)
class _Laid:
    """The rows of some points, point after point: `sizes[i]` rows for point i."""

    attributes: list[Attributes]
    shapes: list[bytes]  # what the rows of a point are: bounds or quantiles, as bits
    sizes: Int64Array
    values: Float64Array
    ts: Int64Array
    stale: BoolArray

    def select(self, keep: BoolArray) -> _Laid:
        at = ranges(offsets(self.sizes)[keep], self.sizes[keep])
        pick = np.flatnonzero(keep).tolist()
        return _Laid(
            [self.attributes[i] for i in pick],
            [self.shapes[i] for i in pick],
            self.sizes[keep],
            self.values[at],
            self.ts[keep],
            self.stale[keep],
        )


def add_histograms(
    points: Sequence[view.HistogramPointView],
    name: str,
    metric: view.MetricView,
    sink: Sink,
    rejects: Rejects,
) -> int | None:
    """Adds the points' rows; the latest timestamp stored (0 if none), or None, with nothing
    added, when a point's bucket counts add up past 2**64 (the caller goes point by point)."""
    n = len(points)
    bounds = [p.explicit_bounds for p in points]
    counts = [p.bucket_counts for p in points]
    nb = np.fromiter(map(len, bounds), np.int64, n)
    nc = np.fromiter(map(len, counts), np.int64, n)
    flat = np.fromiter(chain.from_iterable(bounds), np.float64, int(nb.sum()))
    mismatch = ((nb > 0) | (nc > 0)) & (nc != nb + 1)
    unordered = _unordered(flat, nb) & ~mismatch
    no_time = _times(points) == 0
    no_time &= ~(mismatch | unordered)
    keep = ~(mismatch | unordered | no_time)
    pick = np.flatnonzero(keep).tolist()
    kept = [points[i] for i in pick]
    laid = _histogram_rows(
        kept, [counts[i] for i in pick], flat[np.repeat(keep, nb)], nb[keep], nc[keep]
    )
    if laid is None:
        return None
    reasons = [(mismatch, MISMATCH), (unordered, UNORDERED), (no_time, NO_TIME)]
    reject_in_order(rejects, metric, reasons)
    return _emit(laid, name, sink, _histogram_shape)


def add_summaries(
    points: Sequence[view.SummaryPointView],
    name: str,
    metric: view.MetricView,
    sink: Sink,
    rejects: Rejects,
) -> int:
    """Adds the points' rows; returns the latest timestamp stored (0 if none)."""
    no_time = _times(points) == 0
    reject_in_order(rejects, metric, [(no_time, NO_TIME)])
    kept = [points[i] for i in np.flatnonzero(~no_time).tolist()]
    n = len(kept)
    quantiles = [p.quantile_values for p in kept]
    nq = np.fromiter(map(len, quantiles), np.int64, n)
    pairs = chain.from_iterable((q.quantile, q.value) for q in chain.from_iterable(quantiles))
    flat = np.fromiter(pairs, np.float64, 2 * int(nq.sum())).reshape(-1, 2)
    sizes = nq + 2
    start = offsets(sizes)
    values = np.empty(int(sizes.sum()), np.float64)
    values[ranges(start, nq)] = flat[:, 1]
    values[start + nq] = np.fromiter((p.sum for p in kept), np.float64, n)
    values[start + nq + 1] = _floats([p.count for p in kept])
    laid = _laid(kept, _shape_keys(flat[:, 0], nq), sizes, values)
    return _emit(laid, name, sink, _summary_shape)


def _histogram_rows(
    kept: list[view.HistogramPointView],
    counts: list[Sequence[int]],
    bounds: Float64Array,
    nb: Int64Array,
    nc: Int64Array,
) -> _Laid | None:
    """The kept points' rows; None if bucket counts add up past 2**64."""
    n = len(kept)
    cells = np.fromiter(chain.from_iterable(counts), np.uint64, int(nc.sum()))
    # A point's last count is its +Inf bucket, which is written as its `count` instead.
    cells = np.delete(cells, np.cumsum(nc)[nc > 0] - 1)
    cumulative = np.cumsum(cells) - np.repeat(_segment_base(cells, nb), nb)
    if (cumulative < cells).any():  # past 2**64
        return None
    finite = bounds != _INF
    shown = np.bincount(np.repeat(np.arange(n), nb)[finite], minlength=n).astype(np.int64)
    has_sum = np.fromiter((p.HasField("sum") for p in kept), np.bool_, n)
    sizes = shown + 2 + has_sum
    start = offsets(sizes)
    values = np.empty(int(sizes.sum()), np.float64)
    values[ranges(start, shown)] = cumulative[finite].astype(np.float64)
    total = _floats([p.count for p in kept])
    values[start + shown] = total
    sums = [p.sum for p, s in zip(kept, has_sum.tolist(), strict=True) if s]
    values[(start + shown + 1)[has_sum]] = sums
    values[start + sizes - 1] = total
    tails = [b"\x01" if s else b"\x00" for s in has_sum.tolist()]
    keys = [k + t for k, t in zip(_shape_keys(bounds, nb), tails, strict=True)]
    return _laid(kept, keys, sizes, values)


def _segment_base(cells: npt.NDArray[np.uint64], sizes: Int64Array) -> npt.NDArray[np.uint64]:
    """For each segment of `cells`, the running sum (mod 2**64) just before it."""
    running = np.concatenate([np.zeros(1, np.uint64), np.cumsum(cells)])
    return running[offsets(sizes)]


def _unordered(flat: Float64Array, sizes: Int64Array) -> BoolArray:
    """Points whose consecutive bounds are not all strictly increasing (NaN is not)."""
    point = np.repeat(np.arange(sizes.size), sizes)
    bad = (point[:-1] == point[1:]) & ~(flat[:-1] < flat[1:])
    out = np.zeros(sizes.size, np.bool_)
    out[point[:-1][bad]] = True
    return out


def _times(
    points: Sequence[view.HistogramPointView | view.SummaryPointView],
) -> npt.NDArray[np.uint64]:
    return np.fromiter((p.time_unix_nano for p in points), np.uint64, len(points))


def _floats(integers: list[int]) -> Float64Array:
    return np.array(integers, np.uint64).astype(np.float64)


def _shape_keys(flat: Float64Array, sizes: Int64Array) -> list[bytes]:
    """Each point's bounds (or quantiles) as their bits: -0.0 and 0.0, NaNs stay apart."""
    data = np.ascontiguousarray(flat).tobytes()
    starts = offsets(sizes) * 8
    return list(map(data.__getitem__, map(slice, starts.tolist(), (starts + sizes * 8).tolist())))


def _laid(
    kept: Sequence[view.HistogramPointView | view.SummaryPointView],
    shapes: list[bytes],
    sizes: Int64Array,
    values: Float64Array,
) -> _Laid:
    n = len(kept)
    ts = (_times(kept) // np.uint64(1_000_000)).astype(np.int64)
    flags = np.fromiter((p.flags for p in kept), np.uint64, n)
    stale = (flags & np.uint64(NO_RECORDED_VALUE)) != 0
    values[np.repeat(stale, sizes)] = STALE_NAN
    return _Laid([tuple(p.attributes) for p in kept], shapes, sizes, values, ts, stale)


def _histogram_shape(key: bytes) -> Shape:
    bounds = np.frombuffer(key[:-1], np.float64).tolist()
    rows: Shape = [("_bucket", ("le", format_float(b))) for b in bounds if b != _INF]
    rows.append(("_bucket", ("le", "+Inf")))
    if key[-1]:
        rows.append(("_sum", None))
    rows.append(("_count", None))
    return rows


def _summary_shape(key: bytes) -> Shape:
    quantiles = np.frombuffer(key, np.float64).tolist()
    rows: Shape = [("", ("quantile", format_float(q))) for q in quantiles]
    return [*rows, ("_sum", None), ("_count", None)]


def _emit(laid: _Laid, name: str, sink: Sink, shape: Callable[[bytes], Shape]) -> int:
    """Stale points' rows go to the samples, the others' to the sink's rows."""
    if not laid.sizes.size:
        return 0
    shapes: dict[bytes, Shape] = {}
    if sink.rows is sink.samples or not laid.stale.any():
        _extend(sink.samples if laid.stale.all() else sink.rows, name, sink, laid, shape, shapes)
    else:
        _extend(sink.rows, name, sink, laid.select(~laid.stale), shape, shapes)
        _extend(sink.samples, name, sink, laid.select(laid.stale), shape, shapes)
    return max(0, int(laid.ts.max()))


def _extend(
    rows: Rows,
    name: str,
    sink: Sink,
    laid: _Laid,
    shape: Callable[[bytes], Shape],
    shapes: dict[bytes, Shape],
) -> None:
    """The points' rows, their series registered per distinct (attributes, shape) in order."""
    kinds: dict[tuple[Attributes, bytes], int] = {}
    for pair in zip(laid.attributes, laid.shapes, strict=True):
        kinds.setdefault(pair, len(kinds))
    series, sizes = _series(rows, name, sink, list(kinds), shape, shapes)
    pairs = zip(laid.attributes, laid.shapes, strict=True)
    kind = np.fromiter(map(kinds.__getitem__, pairs), np.int64, len(laid.shapes))
    index = series[ranges(offsets(sizes)[kind], laid.sizes)]
    rows.extend(index, np.repeat(laid.ts, laid.sizes), laid.values)


def _series(
    rows: Rows,
    name: str,
    sink: Sink,
    kinds: list[tuple[Attributes, bytes]],
    shape: Callable[[bytes], Shape],
    shapes: dict[bytes, Shape],
) -> tuple[Int32Array, Int64Array]:
    """The series of each kind's rows, one kind after another, and how many each has."""
    series: list[int] = []
    for attributes, shape_key in kinds:
        found = shapes.get(shape_key)
        if found is None:
            found = shapes[shape_key] = shape(shape_key)
        labels = sink.series(name, shape_key, found, attributes)
        for (suffix, extra), one in zip(found, labels, strict=True):
            # A row key always stands for the same labels, so registering again finds it.
            series.append(rows.register((name + suffix, extra, sink.resource, attributes), one))
    sizes = np.array([len(shapes[shape_key]) for _, shape_key in kinds], np.int64)
    return np.array(series, np.int32), sizes
