"""The records the client sends, and their JSON shapes (see opsmetrics/ingest/json_formats.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

Scalar = str | int | float | bool | None
Timestamp = int | datetime
JsonObject = dict[str, object]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one series. `ts` is milliseconds since the epoch (or a datetime); None = now."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    ts: Timestamp | None = None


SampleTuple = (
    tuple[str, Mapping[str, str], float] | tuple[str, Mapping[str, str], float, Timestamp | None]
)
SampleLike = Sample | SampleTuple


def to_ms(ts: Timestamp) -> int:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {ts!r} has no time zone; use an aware datetime (UTC)")
        return round(ts.timestamp() * 1000)
    return int(ts)


def json_value(value: float) -> float | str:
    """JSON has no NaN or infinities: the API takes them as words."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def as_sample(item: SampleLike) -> Sample:
    if isinstance(item, Sample):
        return item
    if len(item) == 3:
        return Sample(item[0], item[1], item[2])
    return Sample(item[0], item[1], item[2], item[3])


def sample_json(item: SampleLike) -> JsonObject:
    s = as_sample(item)
    out: JsonObject = {"name": s.name, "labels": dict(s.labels), "value": json_value(s.value)}
    if s.ts is not None:
        out["ts"] = to_ms(s.ts)
    return out


def event_json(
    name: str,
    entity: str,
    value: float | None,
    props: Mapping[str, Scalar] | None,
    ts: Timestamp | None,
    event_id: str,
) -> JsonObject:
    out: JsonObject = {"name": name, "entity": entity, "id": event_id, "props": dict(props or {})}
    if value is not None:
        out["value"] = value
    if ts is not None:
        out["ts"] = to_ms(ts)
    return out


def annotation_json(
    title: str,
    tags: tuple[str, ...] | list[str],
    text: str,
    ts: Timestamp | None,
    end: Timestamp | None,
    annotation_id: str,
) -> JsonObject:
    out: JsonObject = {"id": annotation_id, "title": title, "tags": list(tags), "text": text}
    if ts is not None:
        out["ts"] = to_ms(ts)
    if end is not None:
        out["end"] = to_ms(end)
    return out
