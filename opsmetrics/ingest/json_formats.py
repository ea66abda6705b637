"""JSON / NDJSON bodies for samples, events and annotations, decoded with typed msgspec structs.

Samples: a JSON array (or NDJSON lines) of series objects:
    {"name": "http_requests_total", "labels": {"code": "200"}, "type": "counter",
     "samples": [[1700000000000, 1.5], [1700000015000, "NaN"]]}
  or one sample per object: {"name": ..., "labels": ..., "ts": 1700000000000, "value": 2}.
  `ts` is milliseconds since the epoch or an RFC 3339 string; missing means "now".
  Values are numbers or the strings "NaN", "+Inf", "-Inf", "stale".
Events: an array (or NDJSON) of {"name", "ts", "entity", "value", "props", "id"}.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TypeVar

import msgspec

from opsmetrics.durations import parse_time_ms
from opsmetrics.errors import BadDataError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.json_depth import check_json_depth
from opsmetrics.model import (
    METRIC_NAME,
    STALE_NAN,
    Annotation,
    Event,
    MetricMetadata,
    MetricType,
    SampleBatchBuilder,
    Scalar,
)

TimeValue = int | float | str
NumberOrWord = float | int | str


class JsonSeries(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    labels: dict[str, str] = {}
    type: str | None = None
    help: str | None = None
    unit: str | None = None
    ts: TimeValue | None = None
    value: NumberOrWord | None = None
    samples: list[tuple[TimeValue, NumberOrWord]] | None = None


class JsonEvent(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    ts: TimeValue | None = None
    entity: str = ""
    value: float | None = None
    props: dict[str, Scalar] = {}
    id: str | None = None


class JsonAnnotation(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    ts: TimeValue | None = None
    end: TimeValue | None = None
    tags: list[str] = []
    text: str = ""
    id: str | None = None


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_WORDS = {"nan": float("nan"), "+inf": float("inf"), "inf": float("inf"), "-inf": float("-inf")}
T = TypeVar("T")


def decode_items(body: bytes, item_type: type[T], what: str) -> list[T]:
    """A JSON array, a single object, or NDJSON lines of `item_type`."""
    stripped = body.lstrip()
    if not stripped:
        raise BadDataError(f"empty body: send a JSON array of {what} or NDJSON lines")
    check_json_depth(stripped)
    if stripped[:1] == b"[":
        return _decode(msgspec.json.Decoder(list[item_type]), stripped, what)  # type: ignore[valid-type]
    decoder = msgspec.json.Decoder(item_type)
    return [_decode(decoder, line, what, n) for n, line in _lines(stripped)]


def _lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    for n, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            yield n, line


def _decode(decoder: msgspec.json.Decoder[T], data: bytes, what: str, line: int = 0) -> T:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        where = f"line {line}: " if line else ""
        raise BadDataError(f"{where}invalid {what}: {exc}", reason="invalid_json") from None
    except msgspec.DecodeError as exc:
        where = f"line {line}: " if line else ""
        raise BadDataError(f"{where}malformed JSON: {exc}", reason="invalid_json") from None


def to_ms(value: TimeValue | None, now_ms: int, field: str) -> int:
    if value is None:
        return now_ms
    if isinstance(value, str):
        return parse_time_ms(value, field=field)
    if isinstance(value, float):
        raise BadDataError(f"{field}: use integer milliseconds since the epoch, got {value}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise BadDataError(f"{field}: {value} is out of range for milliseconds since the epoch")
    return value


def to_value(value: NumberOrWord, field: str) -> float:
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "stale":
            return STALE_NAN
        if word in _WORDS:
            return _WORDS[word]
        raise BadDataError(f"{field}: {value!r} is not a number; use a number, NaN, +Inf, -Inf")
    try:
        return float(value)
    except OverflowError:
        raise BadDataError(f"{field}: the integer is too large for a float64; write +Inf") from None


def decode_samples_plain(body: bytes, now_ms: int) -> DecodedSamples:
    """Series objects → samples, one sample at a time: the fallback of json_samples, which
    decodes the usual bodies in bulk; every error of the samples endpoint is worded here."""
    items = decode_items(body, JsonSeries, "series objects")
    builder = SampleBatchBuilder()
    metadata: list[MetricMetadata] = []
    for i, item in enumerate(items):
        _add_series(builder, item, i, now_ms)
        if item.type or item.help or item.unit:
            metadata.append(_metadata(item, i))
    return DecodedSamples(builder.build(), metadata)


def _add_series(builder: SampleBatchBuilder, item: JsonSeries, i: int, now_ms: int) -> None:
    where = f"[{i}]"
    if METRIC_NAME in item.labels:
        raise BadDataError(f"{where}.labels: put the metric name in `name`, not in __name__")
    pairs = dict(item.labels)
    pairs[METRIC_NAME] = item.name
    idx = builder.series_index(tuple(sorted((k, v) for k, v in pairs.items() if v != "")))
    if item.samples is not None:
        ts = [to_ms(t, now_ms, f"{where}.samples[{j}][0]") for j, (t, _) in enumerate(item.samples)]
        vals = [to_value(v, f"{where}.samples[{j}][1]") for j, (_, v) in enumerate(item.samples)]
        builder.add_many(idx, ts, vals)
    elif item.value is not None:
        builder.add_many(
            idx, [to_ms(item.ts, now_ms, f"{where}.ts")], [to_value(item.value, f"{where}.value")]
        )
    else:
        raise BadDataError(f"{where}: give `value` (with optional `ts`) or `samples`")


def _metadata(item: JsonSeries, i: int) -> MetricMetadata:
    try:
        kind = MetricType(item.type or "unknown")
    except ValueError:
        allowed = ", ".join(t.value for t in MetricType)
        raise BadDataError(f"[{i}].type: {item.type!r} is not one of {allowed}") from None
    return MetricMetadata(item.name, kind, item.help or "", item.unit or "")


def decode_events_json(body: bytes, now_ms: int) -> list[Event]:
    items = decode_items(body, JsonEvent, "events")
    return [
        Event(
            name=e.name,
            ts=to_ms(e.ts, now_ms, f"events[{i}].ts"),
            entity=e.entity,
            value=e.value,
            props=e.props,
            id=e.id,
        )
        for i, e in enumerate(items)
    ]


def decode_annotations_json(body: bytes, now_ms: int) -> list[Annotation]:
    items = decode_items(body, JsonAnnotation, "annotations")
    out = []
    for i, a in enumerate(items):
        start = to_ms(a.ts, now_ms, f"[{i}].ts")
        end = None if a.end is None else to_ms(a.end, now_ms, f"[{i}].end")
        if end is not None and end < start:
            raise BadDataError(f"[{i}].end: before ts; an annotation cannot end before it starts")
        out.append(
            Annotation(
                id=a.id or uuid.uuid4().hex,
                ts=start,
                title=a.title,
                end=end,
                tags=a.tags,
                text=a.text,
            )
        )
    return out
