"""Gauge and sum points of an OTLP request mapped to rows in bulk (otlp_points' columns).

The same rules as the one-point-at-a-time path of otlp_convert: NO_RECORDED_VALUE makes a
stale marker (always in the samples batch, also for delta sums), a point without a value or
without time_unix_nano is rejected, and a series is found by its name, resource and the raw
bytes of its attributes, so its labels are built once per series and request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from itertools import compress

import numpy as np
import numpy.typing as npt

from opsmetrics.ingest.otlp_points import NO_VALUE, Points, read_points
from opsmetrics.ingest.otlp_rows import Rejects, Rows
from opsmetrics.ingest.proto import otlp_view_pb2 as view
from opsmetrics.model import STALE_NAN_BITS, Float64Array, Int32Array, Int64Array, Labels

BoolArray = npt.NDArray[np.bool_]

NO_RECORDED_VALUE = 1
NO_TIME = "points without time_unix_nano"
#: The labels of a series from its metric name and its attributes' raw bytes.
SeriesOf = Callable[[str, bytes], Labels]


class SeriesCache:
    """Labels by (metric name, job and instance, raw attributes), and the labels of all rows of
    a histogram or summary point by (name, its bounds or quantiles, job and instance,
    attributes), shared by the requests of one app: an exporter repeats its series every
    export. Starts over at `limit` entries."""

    def __init__(self, limit: int = 200_000) -> None:
        self._found: dict[Hashable, Labels] = {}
        self._rows: dict[Hashable, list[Labels]] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._found) + len(self._rows)

    def get(self, key: Hashable) -> Labels | None:
        return self._found.get(key)

    def put(self, key: Hashable, labels: Labels) -> None:
        self._make_room()
        self._found[key] = labels

    def get_rows(self, key: Hashable) -> list[Labels] | None:
        return self._rows.get(key)

    def put_rows(self, key: Hashable, labels: list[Labels]) -> None:
        self._make_room()
        self._rows[key] = labels

    def _make_room(self) -> None:
        if len(self) >= self._limit:
            self._found, self._rows = {}, {}


@dataclass(frozen=True, slots=True)
class NumberPoints:
    """The gauge and sum points of a whole request, read at once; metric k's are `spans[k]`."""

    points: Points
    values: Float64Array
    spans: dict[int, tuple[int, int]]

    @staticmethod
    def read(request: view.ExportView) -> NumberPoints | None:
        """None when there are none, or when a point needs the plain reader."""
        parts: list[bytes] = []
        spans: dict[int, tuple[int, int]] = {}
        metrics = (
            m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        )
        for k, metric in enumerate(metrics):
            kind = metric.WhichOneof("data")
            if kind == "gauge" or kind == "sum":
                raw = getattr(metric, kind).SerializeToString()
                points = view.PointsView.FromString(raw).data_points
                spans[k] = (len(parts), len(parts) + len(points))
                parts.extend(points)
        if not parts:
            return None
        read = read_points(parts)
        return None if read is None else NumberPoints(read, read.values(), spans)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a metric's rows go: `rows` (samples or deltas); stale markers go to `samples`."""

    rows: Rows
    samples: Rows
    resource: int
    series_of: SeriesOf


def add_numbers(
    found: NumberPoints, k: int, name: str, metric: view.MetricView, to: Target, rejects: Rejects
) -> int:
    """Adds metric k's points; returns the latest timestamp stored (0 if none)."""
    lo, hi = found.spans[k]
    points = found.points
    stale = (points.flags[lo:hi] & np.uint64(NO_RECORDED_VALUE)) != 0
    valued = stale | (points.kind[lo:hi] != NO_VALUE)
    timed = points.time[lo:hi] != 0
    _reject(rejects, metric, ~valued, valued & ~timed)
    keep = np.flatnonzero(valued & timed)
    if not keep.size:
        return 0
    at = lo + keep
    ts = (points.time[at] // np.uint64(1_000_000)).astype(np.int64)
    values = found.values[at]
    stale = stale[keep]
    values[stale] = np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0]
    data = points.wire.data
    regions = list(
        map(
            data.__getitem__,
            map(slice, points.attr_start[at].tolist(), points.attr_end[at].tolist()),
        )
    )
    if to.rows is to.samples or not stale.any():
        rows = to.samples if stale.all() else to.rows
        _extend(rows, name, to, regions, ts, values)
    else:
        _split(name, to, regions, ts, values, stale)
    return max(0, int(ts.max()))


def _split(
    name: str,
    to: Target,
    regions: list[bytes],
    ts: Int64Array,
    values: Float64Array,
    stale: BoolArray,
) -> None:
    fresh = ~stale
    _extend(to.rows, name, to, list(compress(regions, fresh.tolist())), ts[fresh], values[fresh])
    _extend(to.samples, name, to, list(compress(regions, stale.tolist())), ts[stale], values[stale])


def _extend(
    rows: Rows, name: str, to: Target, regions: list[bytes], ts: Int64Array, values: Float64Array
) -> None:
    slots: dict[bytes, int] = dict.fromkeys(regions, 0)
    for region in slots:  # once per series
        key = (name, None, to.resource, region)
        found = rows.find(key)
        slots[region] = rows.register(key, to.series_of(name, region)) if found is None else found
    index: Int32Array = np.fromiter(map(slots.__getitem__, regions), np.int32, len(regions))
    rows.extend(index, ts, values)


def _reject(
    rejects: Rejects, metric: view.MetricView, no_value: BoolArray, no_time: BoolArray
) -> None:
    reasons = [(no_value, "points without a value"), (no_time, NO_TIME)]
    reject_in_order(rejects, metric, reasons)


def reject_in_order(
    rejects: Rejects, metric: view.MetricView, reasons: list[tuple[BoolArray, str]]
) -> None:
    """Each reason's points, in the order their first point comes (the message lists them
    so); the masks are disjoint."""
    found = [
        (int(np.argmax(mask)), int(mask.sum()), reason) for mask, reason in reasons if mask.any()
    ]
    for _, count, reason in sorted(found):
        rejects.add(count, reason, metric)
