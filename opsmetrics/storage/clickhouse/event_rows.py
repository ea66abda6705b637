"""The events table's columns, and stored events turned into them for one insert.

A property is kept three ways: the canonical JSON of all of them (`props_json`: read back by
read_events and shown by the v_events view), its JSON text in `props` (what filters and
breakdowns compare, as DuckDB's json_extract_string gives it) and, where that text reads as a
number, in `nums` (order comparisons, value properties, state fields).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

from opsmetrics.model import Event, Scalar
from opsmetrics.storage.base import StoredEvent
from opsmetrics.storage.clickhouse.event_sql import number_of

COLUMNS = ("key", "id", "name", "ts", "entity", "value", "props", "nums", "props_json")

#: Daily partitions; sorted so that a retried event (same key, so same content) has the same
#: sort key and ReplacingMergeTree keeps one; non_replicated_deduplication_window lets a retried
#: insert with the same insert_deduplication_token be dropped whole.
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
    key UInt64,
    id Nullable(String) CODEC(ZSTD(1)),
    name LowCardinality(String),
    ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    entity String CODEC(ZSTD(1)),
    value Nullable(Float64) CODEC(ZSTD(1)),
    props Map(String, String) CODEC(ZSTD(1)),
    nums Map(String, Float64) CODEC(ZSTD(1)),
    props_json String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (name, entity, ts, key)
SETTINGS non_replicated_deduplication_window = 1000""",
    # The view `sql:` KPIs read (docs/kpi_evaluation.md): ts in epoch ms, props as JSON text.
    """CREATE VIEW IF NOT EXISTS v_events AS
SELECT name, toUnixTimestamp64Milli(ts) AS ts, entity, value, props_json AS props
FROM events FINAL""",
]


def event_columns(events: Sequence[StoredEvent]) -> list[list[object]]:
    """Column-oriented data for COLUMNS; a key repeated in the batch is one event (the last)."""
    unique = {e.key: e.event for e in events}
    items = list(unique.values())
    return [
        list(unique.keys()),
        [e.id for e in items],
        [e.name for e in items],
        [e.ts for e in items],  # DateTime64(3) takes integer milliseconds as they are
        [e.entity for e in items],
        [None if e.value is None or math.isnan(e.value) else e.value for e in items],
        [prop_texts(e) for e in items],
        [prop_numbers(e) for e in items],
        [props_json(e) for e in items],
    ]


def dedup_token(events: Sequence[StoredEvent]) -> str:
    """The same for a retry of the same keys, in any order."""
    keys = ",".join(str(k) for k in sorted({e.key for e in events}))
    return "events:" + hashlib.sha256(keys.encode()).hexdigest()


def prop_texts(e: Event) -> dict[str, str]:
    return {k: _text(v) for k, v in e.props.items() if v is not None}


def prop_numbers(e: Event) -> dict[str, float]:
    out = {}
    for k, v in e.props.items():
        n = number_of(_text(v)) if v is not None else None
        if n is not None:
            out[k] = n
    return out


def props_json(e: Event) -> str:
    return json.dumps(e.props, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _text(v: Scalar) -> str:
    """A property's JSON text, strings unquoted (query/events.py prop_text)."""
    return v if isinstance(v, str) else json.dumps(v)
