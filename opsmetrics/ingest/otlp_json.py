"""OTLP/HTTP JSON bodies read by msgspec into the protobuf bytes the decoder reads.

`json_format.Parse` into the generated message costs about 100 µs per data point (pure
Python). Here msgspec decodes the body into typed structs holding only what
`ingest/otlp_view.proto` reads (the same parts the protobuf path reads; exemplars, start times,
scopes and the rest are skipped unchecked, as there), each attribute stays raw JSON and is
turned into KeyValue bytes once per distinct text (`json_format` on one small message, cached),
and the points are written back as protobuf wire bytes for `ExportView.FromString` and the
same converter as protobuf bodies.

Only the common spelling is read here: camelCase keys, 64-bit integers as decimal strings or
numbers, doubles as numbers or "NaN"/"Infinity"/"-Infinity", enums as numbers or their names.
Anything else — snake_case keys, other string forms, a value out of range, two values of a
oneof, any error — returns None, and the caller parses the body with `json_format`, which
accepts or refuses it with its own words. So both paths accept and refuse the same bodies
(property test: tests/test_bulk_decoders.py).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from functools import lru_cache

import msgspec
from google.protobuf import json_format
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from opsmetrics.ingest.protowire import encode_varint

Int = int | str
Float = float | str
#: A point's attributes: the JSON array as written, read once per distinct text.
Attributes = msgspec.Raw
#: A key in snake_case (json_format reads `data_points` as `dataPoints`): json_format's job.
_SNAKE_KEY = re.compile(rb'_[a-z0-9]+"\s*:')
_NO_ATTRIBUTES = msgspec.Raw(b"[]")
_TEMPORALITY = {
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0,
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
#: time_unix_nano (3) and as_double (4) or as_int (6) of a number point, in one call.
_TIME_DOUBLE = struct.Struct("<BQBd").pack
_TIME_INT = struct.Struct("<BQBq").pack
_SMALL = [bytes((n,)) for n in range(0x80)]


class _Fallback(Exception):
    """The body needs json_format."""


class _Struct(msgspec.Struct, rename="camel"):
    pass


class _NumberPoint(_Struct):
    attributes: Attributes = _NO_ATTRIBUTES
    time_unix_nano: Int = 0
    as_double: Float | None = None
    as_int: Int | None = None
    flags: Int = 0


class _Numbers(_Struct):
    data_points: list[_NumberPoint] = []
    aggregation_temporality: Int = 0
    is_monotonic: bool = False


class _HistogramPoint(_Struct):
    attributes: Attributes = _NO_ATTRIBUTES
    time_unix_nano: Int = 0
    count: Int = 0
    sum: Float | None = None
    bucket_counts: list[Int] = []
    explicit_bounds: list[Float] = []
    flags: Int = 0


class _Histogram(_Struct):
    data_points: list[_HistogramPoint] = []
    aggregation_temporality: Int = 0


class _Quantile(_Struct):
    quantile: Float = 0.0
    value: Float = 0.0


class _SummaryPoint(_Struct):
    attributes: Attributes = _NO_ATTRIBUTES
    time_unix_nano: Int = 0
    count: Int = 0
    sum: Float = 0.0
    quantile_values: list[_Quantile] = []
    flags: Int = 0


class _Summary(_Struct):
    data_points: list[_SummaryPoint] = []


class _Points(_Struct):
    data_points: list[msgspec.Raw] = []


class _Metric(_Struct):
    name: str = ""
    description: str = ""
    unit: str = ""
    gauge: _Numbers | None = None
    sum: _Numbers | None = None
    histogram: _Histogram | None = None
    exponential_histogram: _Points | None = None
    summary: _Summary | None = None


class _Scope(_Struct):
    metrics: list[_Metric] = []


class _Resource(_Struct):
    attributes: Attributes = _NO_ATTRIBUTES


class _ResourceMetrics(_Struct):
    resource: _Resource | None = None
    scope_metrics: list[_Scope] = []


class _Export(_Struct):
    resource_metrics: list[_ResourceMetrics] = []


_DECODER = msgspec.json.Decoder(_Export)


def otlp_json_to_protobuf(raw: bytes) -> bytes | None:
    """The body as ExportMetricsServiceRequest protobuf bytes, or None: use json_format."""
    if _SNAKE_KEY.search(raw):
        return None
    try:
        export = _DECODER.decode(raw)
        return b"".join(_field(1, _resource_metrics(rm)) for rm in export.resource_metrics)
    except (msgspec.DecodeError, _Fallback, struct.error, OverflowError, ValueError):
        return None


def _resource_metrics(rm: _ResourceMetrics) -> bytes:
    parts = [] if rm.resource is None else [_field(1, _attributes(1, rm.resource.attributes))]
    for scope in rm.scope_metrics:
        parts.append(_field(2, b"".join(_field(2, _metric(m)) for m in scope.metrics)))
    return b"".join(parts)


def _metric(m: _Metric) -> bytes:
    head = _text(1, m.name) + _text(2, m.description) + _text(3, m.unit)
    members = (5, m.gauge), (7, m.sum), (9, m.histogram), (10, m.exponential_histogram)
    data = [(n, body) for n, body in (*members, (11, m.summary)) if body is not None]
    if len(data) > 1:
        raise _Fallback  # two members of the oneof: json_format's error
    if not data:
        return head
    number, body = data[0]
    return head + _field(number, _DATA[type(body)](body))


def _numbers(data: _Numbers) -> bytes:
    parts = [_field(1, _number_point(p)) for p in data.data_points]
    parts.append(_varint_field(2, _enum(data.aggregation_temporality)))
    parts.append(_varint_field(3, int(data.is_monotonic)))
    return b"".join(parts)


def _number_point(p: _NumberPoint) -> bytes:
    out = _attributes(7, p.attributes)
    time = _int(p.time_unix_nano)
    if p.as_double is not None:
        if p.as_int is not None:
            raise _Fallback
        out += _TIME_DOUBLE(0x19, time, 0x21, _float(p.as_double))
    elif p.as_int is not None:
        out += _TIME_INT(0x19, time, 0x31, _int(p.as_int))
    else:
        out += b"\x19" + _FIXED64(time)
    return out + _varint_field(8, _uint32(p.flags)) if p.flags else out


def _histogram(data: _Histogram) -> bytes:
    parts = [_field(1, _histogram_point(p)) for p in data.data_points]
    parts.append(_varint_field(2, _enum(data.aggregation_temporality)))
    return b"".join(parts)


def _histogram_point(p: _HistogramPoint) -> bytes:
    out = _attributes(9, p.attributes) + b"\x19" + _FIXED64(_int(p.time_unix_nano))
    out += b"\x21" + _FIXED64(_int(p.count))
    if p.sum is not None:
        out += b"\x29" + _DOUBLE(_float(p.sum))
    counts = b"".join(_FIXED64(_int(c)) for c in p.bucket_counts)
    bounds = b"".join(_DOUBLE(_float(b)) for b in p.explicit_bounds)
    return out + _field(6, counts) + _field(7, bounds) + _varint_field(10, _uint32(p.flags))


def _summary(data: _Summary) -> bytes:
    return b"".join(_field(1, _summary_point(p)) for p in data.data_points)


def _summary_point(p: _SummaryPoint) -> bytes:
    out = _attributes(7, p.attributes) + b"\x19" + _FIXED64(_int(p.time_unix_nano))
    out += b"\x21" + _FIXED64(_int(p.count)) + b"\x29" + _DOUBLE(_float(p.sum))
    for q in p.quantile_values:
        out += _field(6, b"\x09" + _DOUBLE(_float(q.quantile)) + b"\x11" + _DOUBLE(_float(q.value)))
    return out + _varint_field(8, _uint32(p.flags))


def _points(data: _Points) -> bytes:
    """Exponential histogram points are only counted (and refused): one empty point each."""
    return b"\x0a\x00" * len(data.data_points)


_DATA: dict[type, Callable[..., bytes]] = {
    _Numbers: _numbers,
    _Histogram: _histogram,
    _Points: _points,
    _Summary: _summary,
}


# --- values ---------------------------------------------------------------------------------
def _int(v: Int) -> int:
    if isinstance(v, int):  # never a bool: msgspec refuses true for an int
        return v
    if (v.isdigit() or (v[:1] == "-" and v[1:].isdigit())) and v.isascii():
        return int(v)
    raise _Fallback


def _uint32(v: Int) -> int:
    n = _int(v)
    if not 0 <= n < 2**32:
        raise _Fallback
    return n


def _enum(v: Int) -> int:
    n = _TEMPORALITY.get(v) if isinstance(v, str) else _int(v)
    if n is None or not -(2**31) <= n < 2**31:
        raise _Fallback
    return n


def _float(v: Float) -> float:
    if isinstance(v, float):  # a JSON integer arrives as a float too
        if math.isfinite(v):
            return v
        raise _Fallback  # a number too large: json_format's "use quoted Infinity"
    special = _SPECIAL.get(v)
    if special is None:
        raise _Fallback
    return special


# --- wire -----------------------------------------------------------------------------------
def _attributes(number: int, attributes: Attributes) -> bytes:
    return _attribute_fields(number, bytes(attributes))


@lru_cache(maxsize=16_384)  # distinct attribute lists; about 1 KB each at most
def _attribute_fields(number: int, raw: bytes) -> bytes:
    """A JSON array of KeyValue as repeated field `number`; json_format on each KeyValue, so
    its semantics (int64 strings, base64 bytes, nested values); once per distinct text."""
    try:
        items = _ATTRIBUTE_LIST.decode(raw)
        return b"".join(
            _field(number, json_format.Parse(bytes(kv), KeyValue(), ignore_unknown_fields=True)
                   .SerializeToString())
            for kv in items
        )  # fmt: skip
    except (msgspec.DecodeError, json_format.ParseError, ValueError):
        raise _Fallback from None


_ATTRIBUTE_LIST = msgspec.json.Decoder(list[msgspec.Raw])


def _field(number: int, body: bytes) -> bytes:
    n = len(body)
    return _SMALL[number << 3 | 2] + (_SMALL[n] if n < 0x80 else encode_varint(n)) + body


def _varint_field(number: int, n: int) -> bytes:
    return encode_varint(number << 3) + encode_varint(n) if n else b""


def _text(number: int, text: str) -> bytes:
    return _field(number, text.encode()) if text else b""
