"""The contract every Storage backend passes. Backends are params of the `storage` fixture.

A test module imports this module's tests (`from tests.storage_contract import *`) and so runs
them against every backend in BACKENDS. Add a backend by adding an `Opener` there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsmetrics.model import (
    STALE_NAN_BITS,
    Annotation,
    Event,
    Labels,
    Matcher,
    MetricMetadata,
    MetricType,
    Series,
)
from opsmetrics.storage import RetentionPolicy, Storage, StoredEvent, WriteBatch
from opsmetrics.storage.base import DAY_MS
from opsmetrics.storage.duckdb import DuckDBStorage

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a partition boundary
NOW = T0 + 10 * DAY_MS

#: Opens (or reopens) a backend over one data location.
Opener = Callable[[Path], Storage]


def open_duckdb(data_dir: Path) -> Storage:
    return DuckDBStorage(data_dir, now_ms=NOW)


BACKENDS: dict[str, Opener] = {"duckdb": open_duckdb}


@pytest.fixture(params=sorted(BACKENDS))
def opener(request: pytest.FixtureRequest) -> Opener:
    return BACKENDS[request.param]


@pytest.fixture
def storage(opener: Opener, tmp_path: Path) -> Iterator[Storage]:
    store = opener(tmp_path / "data")
    yield store
    store.close()


# --- helpers ----------------------------------------------------------------------------
def labels(metric: str, **pairs: str) -> Labels:
    return tuple(sorted({"__name__": metric, **pairs}.items()))


def bits(values: np.ndarray) -> list[int]:
    return [int(b) for b in np.asarray(values, np.float64).view(np.uint64)]


def new_series(store: Storage, *label_sets: Labels) -> list[Series]:
    ids = store.allocate_series_ids(label_sets)
    return [Series(i, lbl) for i, lbl in zip(ids, label_sets, strict=True)]


def sample_batch(
    ids: list[int], ts: list[int], values: Sequence[float], series: list[Series] | None = None
) -> WriteBatch:
    return WriteBatch(
        new_series=series or [],
        series_ids=np.array(ids, np.int64),
        ts=np.array(ts, np.int64),
        values=np.array(values, np.float64),
    )


def write_series(store: Storage, lbl: Labels, ts: list[int], values: Sequence[float]) -> int:
    (s,) = new_series(store, lbl)
    store.write(sample_batch([s.id] * len(ts), ts, values, [s]))
    return s.id


def read_all(store: Storage, ids: list[int]) -> list[tuple[int, int, int]]:
    rows = store.read_samples(ids, 0, 2**62)
    return list(zip(rows.series_ids.tolist(), rows.ts.tolist(), bits(rows.values), strict=True))


SPECIAL = [
    float(np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0]),
    float("nan"),
    float(np.array([0xFFF8000000000001], np.uint64).view(np.float64)[0]),  # negative payload NaN
    float("inf"),
    float("-inf"),
    -0.0,
    0.0,
    5e-324,
    1.7976931348623157e308,
]


# --- samples ----------------------------------------------------------------------------
def test_round_trip_is_bit_exact(storage: Storage) -> None:
    ts = [T0 + i * 1000 for i in range(len(SPECIAL))]
    sid = write_series(storage, labels("m"), ts, SPECIAL)
    rows = storage.read_samples([sid], T0, T0 + 60_000)
    assert rows.ts.tolist() == ts
    assert rows.series_ids.tolist() == [sid] * len(ts)
    assert bits(rows.values) == bits(np.array(SPECIAL))


def test_read_samples_is_sorted_and_bounded(storage: Storage) -> None:
    a, b = new_series(storage, labels("m", i="a"), labels("m", i="b"))
    storage.write(
        sample_batch([b.id, a.id, b.id, a.id], [T0 + 2, T0 + 3, T0 + 1, T0], [1, 2, 3, 4], [a, b])
    )
    rows = storage.read_samples([b.id, a.id], T0 + 1, T0 + 2)
    assert list(zip(rows.series_ids.tolist(), rows.ts.tolist(), strict=True)) == [
        (b.id, T0 + 1),
        (b.id, T0 + 2),
    ]
    assert storage.read_samples([], T0, T0 + 10).ts.tolist() == []


def test_series_heads_track_newest_sample(storage: Storage) -> None:
    a, b, c = new_series(storage, labels("m", i="a"), labels("m", i="b"), labels("m", i="c"))
    storage.write(
        sample_batch([a.id, a.id, b.id], [T0 + 5, T0 + 9, T0], [1.0, SPECIAL[0], 7.0], [a, b, c])
    )
    storage.write(sample_batch([a.id], [T0 + 7], [3.0]))  # older: the head stays
    ts, values = storage.series_heads(np.array([a.id, b.id, c.id], np.int64))
    assert ts.tolist() == [T0 + 9, T0, np.iinfo(np.int64).min]
    assert bits(values)[:2] == [STALE_NAN_BITS, bits(np.array([7.0]))[0]]
    assert np.isnan(values[2])


def test_existing_samples(storage: Storage) -> None:
    sid = write_series(storage, labels("m"), [T0, T0 + 1], [1.5, SPECIAL[0]])
    found, values = storage.existing_samples(
        np.array([sid, sid, sid, sid + 99], np.int64), np.array([T0 + 1, T0, T0 + 2, T0], np.int64)
    )
    assert found.tolist() == [True, True, False, False]
    assert bits(values[:2]) == [STALE_NAN_BITS, bits(np.array([1.5]))[0]]


# --- series and labels ------------------------------------------------------------------
@pytest.fixture
def catalog(storage: Storage) -> dict[str, int]:
    sets = {
        "api500": labels("http_requests_total", service="api", code="500"),
        "api200": labels("http_requests_total", service="api", code="200"),
        "web200": labels("http_requests_total", service="web", code="200"),
        "nocode": labels("http_requests_total", service="batch"),
        "up": labels("up", job="api"),
    }
    series = new_series(storage, *sets.values())
    ids = [s.id for s in series]
    storage.write(sample_batch(ids, [T0] * len(ids), [1.0] * len(ids), series))
    return dict(zip(sets, ids, strict=True))


CASES = [
    ([("__name__", "=", "http_requests_total"), ("code", "=", "200")], {"api200", "web200"}),
    ([("__name__", "=", "http_requests_total"), ("code", "!=", "200")], {"api500", "nocode"}),
    ([("__name__", "=~", "http_.*"), ("code", "=~", "2..")], {"api200", "web200"}),
    ([("__name__", "=~", "http_requests")], set()),  # regexes are anchored
    ([("__name__", "=~", "requests_total")], set()),
    ([("__name__", "=~", ".*requests.*"), ("code", "!~", "5..")], {"api200", "web200", "nocode"}),
    ([("__name__", "=", "http_requests_total"), ("code", "=", "")], {"nocode"}),  # missing = ""
    (
        [("__name__", "=", "http_requests_total"), ("code", "!=", "")],
        {"api500", "api200", "web200"},
    ),
    ([("__name__", "=", "http_requests_total"), ("code", "=~", "")], {"nocode"}),
    ([("__name__", "=", "http_requests_total"), ("code", "=~", "5..|")], {"api500", "nocode"}),
    ([("job", "=", "api")], {"up"}),
    ([("service", "=", "nope")], set()),
]


@pytest.mark.parametrize(("spec", "expected"), CASES)
def test_select_series(
    storage: Storage,
    catalog: dict[str, int],
    spec: list[tuple[str, str, str]],
    expected: set[str],
) -> None:
    found = storage.select_series([Matcher.of(*m) for m in spec])
    by_id = {v: k for k, v in catalog.items()}
    assert {by_id[s.id] for s in found} == expected
    assert all(storage.labels_of(s.id) == s.labels for s in found)


def test_select_series_by_time_range(storage: Storage, catalog: dict[str, int]) -> None:
    up = [Matcher.of("__name__", "=", "up")]
    assert [s.id for s in storage.select_series(up, T0, T0 + 10)] == [catalog["up"]]
    assert storage.select_series(up, T0 + 1, T0 + 10) == []


def test_label_names_and_values(storage: Storage, catalog: dict[str, int]) -> None:
    assert storage.label_names() == ["__name__", "code", "job", "service"]
    assert storage.label_values("code") == ["200", "500"]
    assert storage.label_values("service") == ["api", "batch", "web"]
    assert storage.label_values("missing") == []
    assert storage.series_count("http_requests_total") == 4
    assert storage.lookup_series([labels("up", job="api"), labels("up")]) == [catalog["up"], None]


# --- events, annotations, metadata -----------------------------------------------------
def test_events_are_idempotent_by_key(storage: Storage) -> None:
    buy = Event("purchase", T0, "u1", 1999.0, {"plan": "pro", "n": 2, "ok": True, "x": None})
    other = Event("signup", T0 + 1, "u2", None, {}, id="evt-2")
    storage.write(WriteBatch(events=[StoredEvent(1, buy), StoredEvent(2, other)]))
    storage.write(
        WriteBatch(events=[StoredEvent(1, buy), StoredEvent(2, other), StoredEvent(2, other)])
    )
    assert storage.read_events(None, T0, T0 + 10) == [buy, other]
    assert storage.read_events("signup", T0, T0 + 10) == [other]
    assert storage.read_events(None, T0, T0 + 10, limit=1) == [buy]
    assert storage.stats().events == 2


def test_annotations_upsert(storage: Storage) -> None:
    first = Annotation("dep-1", T0, "deploy v1", tags=["deploy"], text="first")
    storage.write(WriteBatch(annotations=[first]))
    fixed = Annotation("dep-1", T0, "deploy v1.0.1", end=T0 + 60_000, tags=["deploy", "api"])
    storage.write(WriteBatch(annotations=[fixed]))
    assert storage.read_annotations(T0 + 30_000, T0 + 30_000) == [fixed]
    assert storage.read_annotations(T0 + 61_000, T0 + 99_000) == []


def test_metadata_upsert(storage: Storage) -> None:
    storage.write(WriteBatch(metadata=[MetricMetadata("up", MetricType.GAUGE, "old")]))
    storage.write(
        WriteBatch(
            metadata=[
                MetricMetadata("up", MetricType.GAUGE, "Target is up", "1"),
                MetricMetadata("req", MetricType.COUNTER),
            ]
        )
    )
    assert storage.metadata("up") == [MetricMetadata("up", MetricType.GAUGE, "Target is up", "1")]
    assert [m.metric for m in storage.metadata()] == ["req", "up"]


# --- atomicity and persistence ----------------------------------------------------------
def test_failed_write_leaves_nothing_behind(storage: Storage) -> None:
    sid = write_series(storage, labels("m", i="a"), [T0], [1.0])
    (fresh,) = new_series(storage, labels("m", i="b"))
    bad = sample_batch(
        [fresh.id, sid], [T0 + 1, T0 + 1], [2.0, 3.0], [fresh, Series(sid, labels("m", i="dup"))]
    )
    bad.events = [StoredEvent(9, Event("purchase", T0, "u1"))]
    bad.metadata = [MetricMetadata("m", MetricType.GAUGE)]
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own driver error
        storage.write(bad)
    assert read_all(storage, [sid, fresh.id]) == [(sid, T0, bits(np.array([1.0]))[0])]
    assert storage.lookup_series([labels("m", i="b")]) == [None]
    assert storage.read_events(None, 0, 2**62) == []
    assert storage.metadata() == []
    assert storage.series_heads(np.array([sid], np.int64))[0].tolist() == [T0]


def test_reopen_keeps_data_and_rebuilds_index(opener: Opener, tmp_path: Path) -> None:
    store = opener(tmp_path / "data")
    a = write_series(store, labels("m", i="a"), [T0, T0 + 5], [1.0, SPECIAL[0]])
    store.write(WriteBatch(events=[StoredEvent(1, Event("signup", T0))]))
    store.close()
    store = opener(tmp_path / "data")
    try:
        assert store.lookup_series([labels("m", i="a")]) == [a]
        ts, values = store.series_heads(np.array([a], np.int64))
        assert ts.tolist() == [T0 + 5] and bits(values) == [STALE_NAN_BITS]
        assert store.label_values("i") == ["a"]
        assert store.allocate_series_ids([labels("m", i="b")])[0] != a
        assert len(store.read_events(None, 0, 2**62)) == 1
    finally:
        store.close()


# --- maintenance ------------------------------------------------------------------------
def three_days(store: Storage) -> list[int]:
    a, b = new_series(store, labels("m", i="a"), labels("m", i="b"))
    ts = [T0 + d * DAY_MS + k * 3_600_000 for d in range(3) for k in range(0, 24, 6)]
    ids = [a.id, b.id] * len(ts)
    values = [float(i % 7) if i % 5 else SPECIAL[0] for i in range(len(ids))]
    store.write(sample_batch(ids, [t for t in ts for _ in (0, 1)], values, [a, b]))
    return [a.id, b.id]


def test_compaction_keeps_results_identical(storage: Storage) -> None:
    ids = three_days(storage)
    before = read_all(storage, ids)
    window = storage.read_samples(ids[:1], T0 + DAY_MS // 2, T0 + 2 * DAY_MS)
    assert storage.compact(T0 + 2 * DAY_MS + 2 * 3_600_000) == 2  # days 0 and 1 are closed
    assert read_all(storage, ids) == before
    again = storage.read_samples(ids[:1], T0 + DAY_MS // 2, T0 + 2 * DAY_MS)
    assert bits(again.values) == bits(window.values) and again.ts.tolist() == window.ts.tolist()
    assert storage.stats().partitions == 2
    assert storage.compact(T0 + 2 * DAY_MS + 2 * 3_600_000) == 0
    sids, ts, _ = zip(*before, strict=True)
    found, values = storage.existing_samples(np.array(sids), np.array(ts))
    assert found.all() and bits(values) == [b for _, _, b in before]


def test_late_rows_merge_into_compacted_partition(storage: Storage) -> None:
    ids = three_days(storage)
    storage.compact(NOW)
    expected = sorted([*read_all(storage, ids), (ids[0], T0 + 1, bits(np.array([42.0]))[0])])
    storage.write(sample_batch([ids[0]], [T0 + 1], [42.0]))
    assert read_all(storage, ids) == expected
    assert storage.compact(NOW) == 1
    assert read_all(storage, ids) == expected
    stats = storage.stats()
    assert (stats.samples, stats.samples_head) == (len(expected), 0)


def test_compaction_survives_reopen_between_steps(opener: Opener, tmp_path: Path) -> None:
    store = opener(tmp_path / "data")
    ids = three_days(store)
    before = read_all(store, ids)
    store.close()
    store = opener(tmp_path / "data")
    store.compact(T0 + DAY_MS + 3_600_000)  # day 0 only
    store.close()
    store = opener(tmp_path / "data")
    try:
        assert read_all(store, ids) == before
        store.compact(NOW)
        assert read_all(store, ids) == before
        assert store.stats().partitions == 3
    finally:
        store.close()


def test_retention_drops_old_partitions_and_events(storage: Storage) -> None:
    ids = three_days(storage)
    old, new = Event("signup", T0, "u1"), Event("signup", T0 + 2 * DAY_MS, "u2")
    storage.write(WriteBatch(events=[StoredEvent(1, old), StoredEvent(2, new)]))
    storage.compact(NOW)
    total = storage.stats().samples
    now = T0 + 5 * DAY_MS
    policy = RetentionPolicy(raw_ms=3 * DAY_MS, events_ms=4 * DAY_MS)
    result = storage.apply_retention(now, policy)
    assert (result.partitions_dropped, result.samples_deleted, result.events_deleted) == (2, 16, 1)
    assert {t for _, t, _ in read_all(storage, ids)} == {
        T0 + 2 * DAY_MS + k * 3_600_000 for k in range(0, 24, 6)
    }
    assert storage.read_events(None, 0, 2**62) == [new]
    stats = storage.stats()
    assert (stats.samples, stats.events, stats.partitions) == (total - 16, 1, 1)


def test_stats(storage: Storage) -> None:
    empty = storage.stats()
    assert (empty.series, empty.samples, empty.events, empty.annotations) == (0, 0, 0, 0)
    three_days(storage)
    storage.write(WriteBatch(annotations=[Annotation("a", T0, "x")]))
    stats = storage.stats()
    assert (stats.series, stats.samples, stats.samples_head) == (2, 24, 24)
    assert (stats.annotations, stats.partitions) == (1, 0)
    assert stats.bytes_on_disk + stats.wal_bytes > 0


# --- properties -------------------------------------------------------------------------
PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
any_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from(SPECIAL),
    st.integers(0, 2**64 - 1).map(lambda b: float(np.array([b], np.uint64).view(np.float64)[0])),
)
# (series slot, ts offset in seconds) -> value; dict keys keep (series, ts) unique.
sample_sets = st.dictionaries(
    st.tuples(st.integers(0, 2), st.integers(0, 3 * 86_400)), any_value, max_size=40
)


@PROPERTY_SETTINGS
@given(samples=sample_sets, split=st.integers(1, 4))
def test_property_write_then_read_returns_the_same_samples(
    storage: Storage, samples: dict[tuple[int, int], float], split: int
) -> None:
    # Each example writes fresh series, so examples sharing the store do not interfere.
    series = new_series(storage, *(labels("prop", slot=str(i)) for i in range(3)))
    ids = [series[slot].id for slot, _ in samples]
    ts = [T0 + sec * 1000 for _, sec in samples]
    values = np.array(list(samples.values()), np.float64)
    storage.write(WriteBatch(new_series=series))
    for part in np.array_split(np.arange(len(ts)), split):  # several commits, any order
        storage.write(
            sample_batch([ids[i] for i in part], [ts[i] for i in part], values[part].tolist())
        )
    expected = sorted(zip(ids, ts, bits(values), strict=True))
    assert read_all(storage, [s.id for s in series]) == expected


@PROPERTY_SETTINGS
@given(
    values=st.lists(st.integers(-1000, 1000), min_size=1, max_size=60),
    cut=st.integers(0, 60),
    compact=st.booleans(),
)
def test_property_range_sum_equals_sum_of_parts(
    storage: Storage, values: list[int], cut: int, compact: bool
) -> None:
    step = DAY_MS // 20  # 60 samples span three partitions
    sid = write_series(storage, labels("sum"), [T0 + i * step for i in range(len(values))], values)
    if compact:
        storage.compact(NOW)
    end = T0 + len(values) * step
    mid = T0 + min(cut, len(values)) * step

    def total(lo: int, hi: int) -> float:
        return float(storage.read_samples([sid], lo, hi).values.sum())

    assert total(T0, end) == total(T0, mid - 1) + total(mid, end) == sum(values)
