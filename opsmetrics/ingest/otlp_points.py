"""OTLP NumberDataPoints read with numpy: every point of a request walked at once.

The points come as the byte strings the C protobuf parser hands out (otlp_view PointsView);
one step reads one field of every point still going, whatever the field order, so the cost is
a few numpy operations per field rather than Python per point. What the mapping needs is
kept: time, value (double or int, the last of the oneof wins, as in a parser), flags, and
where the point's attributes lie, so their bytes can key the series. A point whose attributes
are not one unbroken run, or a field this walk does not know how to skip (groups), makes
the walk give up (None) and the caller reads those points one at a time instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opsmetrics.ingest.protowire import Wire, payloads, varints
from opsmetrics.model import Int64Array

Uint64Array = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]

#: A point with more fields than this is read the plain way.
MAX_FIELDS = 256
_TIME = 3  # fixed64 time_unix_nano
_DOUBLE = 4  # double as_double
_INT = 6  # sfixed64 as_int
_ATTRIBUTE = 7  # KeyValue attributes, length-delimited
_FLAGS = 8  # uint32 flags, varint
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

NO_VALUE, DOUBLE, INT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Points:
    """Columns of many NumberDataPoints; `wire.data` holds their bytes end to end."""

    wire: Wire
    time: Uint64Array  # time_unix_nano, 0 when absent
    bits: Uint64Array  # the value's 8 bytes (a double's or an sfixed64's)
    kind: Int64Array  # NO_VALUE, DOUBLE or INT
    flags: Uint64Array
    attr_start: Int64Array  # the attributes' run: bytes [attr_start, attr_end) of wire.data
    attr_end: Int64Array

    def values(self) -> npt.NDArray[np.float64]:
        """Each point's value as a float64 (0 where there is none). Bits are copied, so the
        payload of a NaN survives."""
        out = self.bits.view(np.float64).copy()
        ints = self.kind == INT
        out[ints] = self.bits[ints].view(np.int64).astype(np.float64)
        return out


@dataclass(slots=True)
class _Walk:
    """The walk's running state: which points are still going and where each one is."""

    wire: Wire
    live: Int64Array
    at: Int64Array
    end: Int64Array
    attr_bytes: Int64Array  # per point: bytes of attribute fields seen so far


def read_points(points: list[bytes]) -> Points | None:
    """The columns of these points, or None if one of them needs the plain reader."""
    sizes = np.fromiter(map(len, points), np.int64, len(points))
    ends = np.cumsum(sizes)
    starts = ends - sizes
    wire = Wire.of(points)
    n = len(points)
    out = Points(
        wire,
        np.zeros(n, np.uint64),
        np.zeros(n, np.uint64),
        np.zeros(n, np.int64),
        np.zeros(n, np.uint64),
        np.full(n, -1, np.int64),
        starts.copy(),
    )
    walk = _Walk(wire, np.arange(n), starts, ends, np.zeros(n, np.int64))
    for _ in range(MAX_FIELDS):
        going = walk.at < walk.end
        if not going.all():
            walk.live, walk.at, walk.end = walk.live[going], walk.at[going], walk.end[going]
        if walk.live.size == 0:
            return _checked(out, walk, starts)
        if not _step(walk, out):
            return None
    return None


def _checked(out: Points, walk: _Walk, starts: Int64Array) -> Points | None:
    """Points without attributes get an empty run; a broken run sends all to the plain path."""
    none = out.attr_start < 0
    out.attr_start[none] = starts[none]
    out.attr_end[none] = starts[none]
    if not np.array_equal(out.attr_end - out.attr_start, walk.attr_bytes):
        return None
    return out


def _step(walk: _Walk, out: Points) -> bool:
    """Read one field of every live point; False if a field cannot be skipped here."""
    wire, at = walk.wire, walk.at
    tags = _tags(wire, at)
    if tags is None:
        return False
    tag, tag_size = tags
    field, wire_type = tag >> 3, tag & 7
    body = at + tag_size
    nxt = np.empty_like(at)
    fixed64 = wire_type == _FIXED64
    nxt[fixed64] = body[fixed64] + 8
    fixed32 = wire_type == _FIXED32
    nxt[fixed32] = body[fixed32] + 4
    varint = wire_type == _VARINT
    if varint.any():
        value, size = varints(wire, body[varint])
        if not size.all():
            return False
        nxt[varint] = body[varint] + size
        flags = field[varint] == _FLAGS
        out.flags[walk.live[varint][flags]] = value[flags]
    length = wire_type == _LEN
    if length.any():
        span = payloads(wire, body[length])
        if span is None:
            return False
        nxt[length] = span[1]
    if not (fixed64 | fixed32 | varint | length).all() or (nxt > walk.end).any():
        return False
    _record(walk, out, field, body, fixed64, length, nxt)
    walk.at = nxt
    return True


def _tags(wire: Wire, at: Int64Array) -> tuple[Int64Array, Int64Array] | None:
    first = wire.u8[at]
    if (first < 0x80).all():
        return first.astype(np.int64), np.ones(at.size, np.int64)
    tag, size = varints(wire, at)
    if not size.all():
        return None
    return tag.astype(np.int64), size


def _record(
    walk: _Walk,
    out: Points,
    field: Int64Array,
    body: Int64Array,
    fixed64: BoolArray,
    length: BoolArray,
    nxt: Int64Array,
) -> None:
    """Keep the fields the mapping reads; a later field overrides an earlier one."""
    live, at = walk.live, walk.at
    for number, kind in ((_DOUBLE, DOUBLE), (_INT, INT)):
        hit = fixed64 & (field == number)
        if hit.any():
            out.bits[live[hit]] = walk.wire.words(body[hit])
            out.kind[live[hit]] = kind
    hit = fixed64 & (field == _TIME)
    if hit.any():
        out.time[live[hit]] = walk.wire.words(body[hit])
    hit = length & (field == _ATTRIBUTE)
    if hit.any():
        points = live[hit]
        first = out.attr_start[points] < 0
        out.attr_start[points[first]] = at[hit][first]
        out.attr_end[points] = nxt[hit]
        walk.attr_bytes[points] += nxt[hit] - at[hit]
