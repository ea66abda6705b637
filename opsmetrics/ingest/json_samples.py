"""The JSON samples endpoint: series objects decoded into typed structs, samples into columns.

The body format is json_formats's. Here the usual body (numbers for timestamps and values) is
decoded by msgspec straight into structs whose samples are `(int, float)` pairs, and numpy
lays every sample of the request into two columns at once; a series' labels are looked up by
the raw bytes of its `labels` object, so a sender's repeated series cost a dictionary hit.
Anything else (strings such as "NaN" or RFC 3339 times, a `__name__` label, a field of the
wrong type, a bad `type`) goes to json_formats's plain decoder, which also words every error,
so both paths accept the same bodies and refuse them with the same messages.
"""

from __future__ import annotations

import threading
from itertools import chain
from typing import Annotated

import msgspec
import numpy as np

from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.json_formats import INT64_MAX, INT64_MIN, decode_samples_plain
from opsmetrics.model import (
    METRIC_NAME,
    Float64Array,
    Int64Array,
    Labels,
    MetricMetadata,
    MetricType,
    SampleBatch,
)

Ms = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
#: Integers below this are exact as float64, so timestamps may pass through a float column.
_EXACT = float(2**53)
_EMPTY = msgspec.Raw(b"{}")


class _Series(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    labels: msgspec.Raw = _EMPTY
    type: str | None = None
    help: str | None = None
    unit: str | None = None
    ts: Ms | None = None
    value: float | None = None
    samples: list[tuple[Ms, float]] | None = None


class _Fallback(Exception):
    """The body needs the plain decoder (which also words any error)."""


_ITEMS = msgspec.json.Decoder(list[_Series])
_ITEM = msgspec.json.Decoder(_Series)
_LABELS = msgspec.json.Decoder(dict[str, str])


class SeriesLabels:
    """Labels by (name, raw `labels` JSON), shared by the requests of one app; starts over when
    it holds `limit` entries, so label churn cannot grow it without bound."""

    def __init__(self, limit: int = 200_000) -> None:
        self._found: dict[tuple[str, bytes], Labels] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._found)

    def labels(self, name: str, raw: msgspec.Raw) -> Labels:
        key = (name, bytes(raw))
        found = self._found.get(key)
        if found is None:
            found = _labels(name, raw)
            with self._lock:
                if len(self._found) >= self._limit:
                    self._found = {}
                self._found[key] = found
        return found


def _labels(name: str, raw: msgspec.Raw) -> Labels:
    try:
        pairs = _LABELS.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise _Fallback from None
    if METRIC_NAME in pairs:
        raise _Fallback
    pairs[METRIC_NAME] = name
    return tuple(sorted((k, v) for k, v in pairs.items() if v != ""))


def decode_samples_json(
    body: bytes, now_ms: int, cache: SeriesLabels | None = None
) -> DecodedSamples:
    """A JSON array (or NDJSON lines) of series objects → samples; see json_formats."""
    try:
        return _decode(body, now_ms, SeriesLabels() if cache is None else cache)
    except _Fallback:
        return decode_samples_plain(body, now_ms)


def _decode(body: bytes, now_ms: int, cache: SeriesLabels) -> DecodedSamples:
    stripped = body.lstrip()
    if not stripped:
        raise _Fallback
    try:
        if stripped[:1] == b"[":
            items = _ITEMS.decode(stripped)
        else:
            items = [_ITEM.decode(line) for line in stripped.splitlines() if line.strip()]
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        # The structs are flat, so a deeply nested body fails here (msgspec counts its
        # recursion) and the plain decoder refuses it with json_depth's message.
        raise _Fallback from None
    batch = _batch(items, now_ms, cache)
    return DecodedSamples(batch, [_metadata(item) for item in items if _described(item)])


def _batch(items: list[_Series], now_ms: int, cache: SeriesLabels) -> SampleBatch:
    slots: dict[Labels, int] = {}
    index = [slots.setdefault(cache.labels(item.name, item.labels), len(slots)) for item in items]
    pairs = [_pairs(item, now_ms) for item in items]
    counts = np.fromiter(map(len, pairs), np.int64, len(pairs))
    ts, values = _columns(pairs, int(counts.sum()))
    rows = np.repeat(np.array(index, np.int32), counts)
    return SampleBatch(list(slots), rows, ts, values)


def _pairs(item: _Series, now_ms: int) -> list[tuple[int, float]]:
    if item.samples is not None:
        return item.samples
    if item.value is None:
        raise _Fallback  # neither `value` nor `samples`: the plain decoder says so
    return [(now_ms if item.ts is None else item.ts, item.value)]


def _columns(pairs: list[list[tuple[int, float]]], total: int) -> tuple[Int64Array, Float64Array]:
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(pairs)), np.float64, 2 * total)
    as_float, values = flat[0::2], flat[1::2].copy()
    if (np.abs(as_float) < _EXACT).all():
        return as_float.astype(np.int64), values
    # Timestamps past 2**53 (not milliseconds of this era, but valid int64s): exact ints.
    ts = np.fromiter((t for t, _ in chain.from_iterable(pairs)), np.int64, total)
    return ts, values


def _described(item: _Series) -> bool:
    return bool(item.type or item.help or item.unit)


def _metadata(item: _Series) -> MetricMetadata:
    try:
        kind = MetricType(item.type or "unknown")
    except ValueError:
        raise _Fallback from None
    return MetricMetadata(item.name, kind, item.help or "", item.unit or "")
