"""The data-quality reads (storage/quality_records.py) on every data store: DuckDB, and
ClickHouse in this process and over HTTP (the `store` fixture of tests/sample_contract.py),
with hand-computed answers; and the duplicates the DuckDB store reports per event name."""

from __future__ import annotations

import math
from pathlib import Path

from opsmetrics.analysis.quality_assess import HourlySampleCounts
from opsmetrics.ingest.pipeline import event_key
from opsmetrics.model import STALE_NAN, Event
from opsmetrics.storage import StoredEvent, WriteBatch
from opsmetrics.storage.composite import DataStore
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.quality_records import NameCount, PropTypeCount
from tests.chshim_fixture import chshim_port, shim_database  # noqa: F401
from tests.clickhouse_engine import chdb_path  # noqa: F401
from tests.sample_contract import batch, data_opener, put, store  # noqa: F401
from tests.storage_contract import NOW, T0, labels

EVENTS = [
    Event(name="a", ts=T0, entity="u", props={"x": 1, "s": "q"}),
    Event(name="a", ts=T0 + 1000, entity="u", props={"x": "t"}),
    Event(name="a", ts=T0 + 6000, entity="u", props={"x": None, "b": True, "f": 1.5}),
    Event(name="b", ts=T0 + 2000, entity="v", props={}),
    Event(name="a", ts=T0 + 20_000, entity="u", props={"x": 2}),  # outside the windows
]


def _write_events(s: DataStore) -> None:
    s.write(WriteBatch(events=[StoredEvent(event_key(e), e) for e in EVENTS]))


def test_event_counts_per_name_and_bucket(store: DataStore) -> None:  # noqa: F811
    _write_events(store)
    assert store.event_counts(T0, T0 + 10_000, 5000) == [
        NameCount("a", T0, 2),
        NameCount("a", T0 + 5000, 1),
        NameCount("b", T0, 1),
    ]
    assert store.event_names_newest() == {"a": T0 + 20_000, "b": T0 + 2000}


def test_property_types_per_event_name(store: DataStore) -> None:  # noqa: F811
    _write_events(store)
    profile = store.event_prop_profile(T0, T0 + 10_000)
    assert profile.totals == {"a": 3, "b": 1}
    assert sorted(profile.props, key=lambda p: (p.name, p.prop, p.kind)) == [
        PropTypeCount("a", "b", "boolean", 1),
        PropTypeCount("a", "f", "number", 1),
        PropTypeCount("a", "s", "string", 1),
        PropTypeCount("a", "x", "null", 1),
        PropTypeCount("a", "x", "number", 1),
        PropTypeCount("a", "x", "string", 1),
    ]


def test_sample_counts_per_metric_leave_stale_markers_out(store: DataStore) -> None:  # noqa: F811
    put(store, labels("m1", job="a"), [T0, T0 + 1000, T0 + 2000, T0 + 3000], [1, 2, 3, STALE_NAN])
    put(store, labels("m1", job="b"), [T0 + 100], [math.nan])  # a NaN sample is a sample
    put(store, labels("m2"), [T0 + 500, T0 + 9000], [1, 1])
    assert store.sample_counts(T0, T0 + 5000, 2000) == [
        NameCount("m1", T0, 3),
        NameCount("m1", T0 + 2000, 1),
        NameCount("m2", T0, 1),
    ]


def test_duckdb_reports_the_duplicates_it_ignored(tmp_path: Path) -> None:
    s = DuckDBStorage(tmp_path / "d", now_ms=NOW)
    try:
        stored = [StoredEvent(event_key(e), e) for e in EVENTS]
        first = WriteBatch(events=stored + stored[3:4])  # "b" twice in one batch
        s.write(first)
        assert first.duplicate_events == {"b": 1}
        again = WriteBatch(events=stored[:2])
        s.write(again)
        assert again.duplicate_events == {"a": 2}
        assert s.event_counts(T0, T0 + 30_000, 30_000) == [
            NameCount("a", T0, 4),
            NameCount("b", T0, 1),
        ]
    finally:
        s.close()


def test_hourly_sample_counts_keep_closed_hours_and_count_new_ones(tmp_path: Path) -> None:
    hour = 3_600_000
    s = DuckDBStorage(tmp_path / "h", now_ms=NOW)
    try:
        sid = put(s, labels("m"), [T0 + h * hour + 60_000 for h in range(6)], [1.0] * 6)
        kept = HourlySampleCounts()
        assert kept.counts(s, T0, T0 + 6 * hour) == {"m": {T0 + h * hour: 1 for h in range(6)}}
        # two more samples: one in the open hour, one late into a settled hour (kept as counted)
        more = [T0 + 5 * hour + 120_000, T0 + 6 * hour + 1000]
        s.write(batch([sid, sid], more, [2.0, 2.0]))
        got = kept.counts(s, T0, T0 + 7 * hour)
        fresh = HourlySampleCounts().counts(s, T0, T0 + 7 * hour)
        assert got == fresh
        assert got["m"][T0 + 5 * hour] == 2 and got["m"][T0 + 6 * hour] == 1
    finally:
        s.close()
