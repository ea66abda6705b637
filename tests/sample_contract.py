"""The SampleStore contract, run against DuckDB and ClickHouse (chdb) alike.

tests/storage_contract.py holds the contract of the whole Storage (with state); this module
covers every SampleStore method over a `DataStore` opened per data location, so a backend
without state (ClickHouse) runs it too. A test module imports it with
`from tests.sample_contract import *`. A ClickHouse "data location" is a database named from
the path, on the test process's one chdb engine (tests/clickhouse_engine.py), or on the
session's chshim process through the real HTTP transport, opened from a clickhouse:// URL by
the product's own open_data_store (tests/chshim_fixture.py): "clickhouse-http" without
compression, and for a subset (`WITH_LZ4`: inserts with row counts, reads, the NaN round trip,
rollups) "clickhouse-http-lz4" with lz4 bodies both ways, to keep the time down.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from opsmetrics.clock import FakeClock
from opsmetrics.model import STALE_NAN_BITS, Annotation, Event, Matcher, MetricMetadata, MetricType
from opsmetrics.model import Series as SeriesRow
from opsmetrics.settings import Settings
from opsmetrics.storage import RetentionPolicy, StoredEvent, WriteBatch
from opsmetrics.storage.base import DAY_MS, RollupRows
from opsmetrics.storage.clickhouse import ClickHouseStorage
from opsmetrics.storage.clickhouse.connect import ClickHouse, Target
from opsmetrics.storage.composite import DataStore
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.open import open_data_store
from opsmetrics.storage.series_id import series_id
from tests.chshim_fixture import (
    HTTP_VARIANTS,
    SERVER_VARIANTS,
    drop_database,
    drop_server_database,
    server_url,
    shim_url,
)
from tests.clickhouse_engine import chdb_client
from tests.storage_contract import CASES, NOW, SPECIAL, T0, bits, labels

#: Opens (or reopens) a data store over one data location.
DataOpener = Callable[[Path], DataStore]


def clickhouse_database(data_dir: Path) -> str:
    return "t_" + hashlib.blake2b(str(data_dir).encode(), digest_size=6).hexdigest()


def open_clickhouse_at(chdb_path: Path, data_dir: Path) -> ClickHouseStorage:
    database = clickhouse_database(data_dir)
    chdb_client(chdb_path).command(f"CREATE DATABASE IF NOT EXISTS {database}")
    target = Target("chdb", database, path=str(chdb_path))
    return ClickHouseStorage(ClickHouse(chdb_client(chdb_path, database), target), now_ms=NOW)


BACKENDS = ["clickhouse", "clickhouse-http", "duckdb", *SERVER_VARIANTS]
#: Marks a test that also runs with lz4-compressed HTTP bodies.
WITH_LZ4 = pytest.mark.parametrize("data_opener", [*BACKENDS, "clickhouse-http-lz4"], indirect=True)


@pytest.fixture(params=BACKENDS)
def data_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataOpener]:
    if request.param == "duckdb":
        yield lambda data_dir: DuckDBStorage(data_dir, now_ms=NOW)
        return
    if request.param in HTTP_VARIANTS:
        yield from _http_opener(request.getfixturevalue("chshim_port"), request.param)
        return
    if request.param in SERVER_VARIANTS:
        yield from _server_opener()
        return
    chdb_path: Path = request.getfixturevalue("chdb_path")
    opened: set[str] = set()

    def opener(data_dir: Path) -> DataStore:
        opened.add(clickhouse_database(data_dir))
        return open_clickhouse_at(chdb_path, data_dir)

    yield opener
    for database in opened:
        chdb_client(chdb_path).command(f"DROP DATABASE IF EXISTS {database} SYNC")


def _server_opener() -> Iterator[DataOpener]:
    opened: set[str] = set()

    def opener(data_dir: Path) -> DataStore:
        database = clickhouse_database(data_dir)
        opened.add(database)
        return open_data_store(server_url(database), Settings(), FakeClock(NOW))

    yield opener
    for database in opened:
        drop_server_database(database)


def _http_opener(port: int, variant: str) -> Iterator[DataOpener]:
    opened: set[str] = set()

    def opener(data_dir: Path) -> DataStore:
        database = clickhouse_database(data_dir)
        opened.add(database)
        url = shim_url(port, database, HTTP_VARIANTS[variant])
        return open_data_store(url, Settings(), FakeClock(NOW))

    yield opener
    for database in opened:
        drop_database(port, database)


@pytest.fixture
def store(data_opener: DataOpener, tmp_path: Path) -> Iterator[DataStore]:
    s = data_opener(tmp_path / "data")
    yield s
    s.close()


# --- helpers ----------------------------------------------------------------------------
def make_series(store: DataStore, *label_sets: tuple[tuple[str, str], ...]) -> list[SeriesRow]:
    ids = store.allocate_series_ids(label_sets)
    return [SeriesRow(i, lbl) for i, lbl in zip(ids, label_sets, strict=True)]


def batch(
    ids: list[int], ts: list[int], values: list[float], series: list[SeriesRow] | None = None
) -> WriteBatch:
    return WriteBatch(
        new_series=series or [],
        series_ids=np.array(ids, np.int64),
        ts=np.array(ts, np.int64),
        values=np.array(values, np.float64),
    )


def put(
    store: DataStore, lbl: tuple[tuple[str, str], ...], ts: list[int], vals: list[float]
) -> int:
    (s,) = make_series(store, lbl)
    store.write(batch([s.id] * len(ts), ts, vals, [s]))
    return s.id


def everything(store: DataStore, ids: list[int]) -> list[tuple[int, int, int]]:
    rows = store.read_samples(ids, 0, 2**62)
    return list(zip(rows.series_ids.tolist(), rows.ts.tolist(), bits(rows.values), strict=True))


def days(store: DataStore, n: int = 3) -> list[int]:
    """Two series, a sample every 6 h for n days; every fifth value a stale marker."""
    a, b = make_series(store, labels("m", i="a"), labels("m", i="b"))
    ts = [T0 + d * DAY_MS + k * 3_600_000 for d in range(n) for k in range(0, 24, 6)]
    values = [float(i % 7) if i % 5 else SPECIAL[0] for i in range(2 * len(ts))]
    store.write(batch([a.id, b.id] * len(ts), [t for t in ts for _ in (0, 1)], values, [a, b]))
    return [a.id, b.id]


# --- samples ----------------------------------------------------------------------------
@WITH_LZ4
def test_sample_round_trip_is_bit_exact(store: DataStore) -> None:
    ts = [T0 + i * 1000 for i in range(len(SPECIAL))]
    sid = put(store, labels("m"), ts, SPECIAL)
    rows = store.read_samples([sid], T0, T0 + 60_000)
    assert rows.ts.tolist() == ts and rows.series_ids.tolist() == [sid] * len(ts)
    assert bits(rows.values) == bits(np.array(SPECIAL))


@WITH_LZ4
def test_sample_reads_are_sorted_and_inclusive(store: DataStore) -> None:
    a, b = make_series(store, labels("m", i="a"), labels("m", i="b"))
    store.write(batch([b.id, a.id, b.id, a.id], [T0 + 2, T0 + 3, T0 + 1, T0], [1, 2, 3, 4], [a, b]))
    rows = store.read_samples([b.id, a.id], T0 + 1, T0 + 3)
    expected = sorted([(b.id, T0 + 1), (b.id, T0 + 2), (a.id, T0 + 3)])
    assert list(zip(rows.series_ids.tolist(), rows.ts.tolist(), strict=True)) == expected
    assert store.read_samples([], T0, T0 + 10).ts.tolist() == []


@WITH_LZ4
def test_heads_track_the_newest_sample(store: DataStore) -> None:
    a, b, c = make_series(store, labels("m", i="a"), labels("m", i="b"), labels("m", i="c"))
    store.write(batch([a.id, a.id, b.id], [T0 + 5, T0 + 9, T0], [1.0, SPECIAL[0], 7.0], [a, b, c]))
    store.write(batch([a.id], [T0 + 7], [3.0]))  # older: the head stays
    ts, values = store.series_heads(np.array([a.id, b.id, c.id, a.id], np.int64))
    assert ts.tolist() == [T0 + 9, T0, np.iinfo(np.int64).min, T0 + 9]
    assert bits(values)[:2] == [STALE_NAN_BITS, bits(np.array([7.0]))[0]]
    assert np.isnan(values[2])


@WITH_LZ4
def test_a_large_write_arrives_whole(store: DataStore) -> None:
    """Enough rows for several insert blocks, each its own lz4 frame over HTTP: a server that
    read only the first frame would keep a fraction of them without an error."""
    a, b = make_series(store, labels("m", i="a"), labels("m", i="b"))
    n = 150_000
    ts = T0 + np.arange(n, dtype=np.int64) * 1000
    values = np.arange(2 * n, dtype=np.float64) / 8
    store.write(
        WriteBatch(
            new_series=[a, b],
            series_ids=np.repeat(np.array([a.id, b.id], np.int64), n),
            ts=np.tile(ts, 2),
            values=values,
        )
    )
    assert store.stats().samples == 2 * n
    rows = store.read_samples([a.id, b.id], 0, 2**62)
    assert len(rows.ts) == 2 * n
    at_a = rows.series_ids == a.id
    assert rows.ts[at_a].tolist() == ts.tolist()
    assert bits(rows.values[at_a]) == bits(values[:n])
    assert store.series_heads(np.array([b.id], np.int64))[0].tolist() == [int(ts[-1])]


def test_existing_samples_answer_per_pair(store: DataStore) -> None:
    sid = put(store, labels("m"), [T0, T0 + 1], [1.5, SPECIAL[0]])
    probe = np.array([sid, sid, sid, sid + 99], np.int64), np.array([T0 + 1, T0, T0 + 2, T0])
    found, values = store.existing_samples(probe[0], probe[1].astype(np.int64))
    assert found.tolist() == [True, True, False, False]
    assert bits(values[:2]) == [STALE_NAN_BITS, bits(np.array([1.5]))[0]]


@WITH_LZ4
def test_a_retried_write_is_stored_once(store: DataStore) -> None:
    (s,) = make_series(store, labels("m"))
    again = batch([s.id] * 3, [T0, T0 + 1, T0 + 2], [1.0, 2.0, SPECIAL[1]], [s])
    store.write(again)
    if store.idempotent_writes:
        store.write(again)
    else:  # the embedded backend refuses the resend; ingest checks existing_samples first
        with pytest.raises(Exception):  # noqa: B017 - the driver's own constraint error
            store.write(again)
    assert len(store.read_samples([s.id], 0, 2**62).ts) == 3
    assert (store.stats().samples, store.stats().series) == (3, 1)
    assert store.series_count("m") == 1


# --- series and labels ------------------------------------------------------------------
@pytest.fixture
def named(store: DataStore) -> dict[str, int]:
    sets = {
        "api500": labels("http_requests_total", service="api", code="500"),
        "api200": labels("http_requests_total", service="api", code="200"),
        "web200": labels("http_requests_total", service="web", code="200"),
        "nocode": labels("http_requests_total", service="batch"),
        "up": labels("up", job="api"),
    }
    series = make_series(store, *sets.values())
    ids = [s.id for s in series]
    store.write(batch(ids, [T0] * len(ids), [1.0] * len(ids), series))
    return dict(zip(sets, ids, strict=True))


@pytest.mark.parametrize(("spec", "expected"), CASES)
def test_matchers_select_series(
    store: DataStore, named: dict[str, int], spec: list[tuple[str, str, str]], expected: set[str]
) -> None:
    found = store.select_series([Matcher.of(*m) for m in spec])
    by_id = {v: k for k, v in named.items()}
    assert {by_id[s.id] for s in found} == expected
    assert store.labels_of_many([s.id for s in found]) == [s.labels for s in found]
    assert all(store.labels_of(s.id) == s.labels for s in found)


def test_select_series_within_a_time_range(store: DataStore, named: dict[str, int]) -> None:
    up = [Matcher.of("__name__", "=", "up")]
    assert [s.id for s in store.select_series(up, T0, T0 + 10)] == [named["up"]]
    assert store.select_series(up, T0 + 1, T0 + 10) == []
    http = [Matcher.of("__name__", "=~", "http.*"), Matcher.of("code", "!=", "500")]
    assert len(store.select_series(http, T0 - 5, T0)) == 3


@WITH_LZ4
def test_label_names_values_counts_lookups(store: DataStore, named: dict[str, int]) -> None:
    assert store.label_names() == ["__name__", "code", "job", "service"]
    assert store.label_values("code") == ["200", "500"]
    assert store.label_values("missing") == []
    assert store.series_count("http_requests_total") == 4
    assert store.lookup_series([labels("up", job="api"), labels("up")]) == [named["up"], None]
    with pytest.raises(KeyError):
        store.labels_of(12345)


def test_series_ids_per_backend(store: DataStore) -> None:
    sets = [labels("m", i="a"), labels("m", i="b")]
    ids = store.allocate_series_ids(sets)
    assert len(set(ids)) == 2
    if store.idempotent_writes:  # shared by nodes: the label hash
        assert ids == [series_id(s) for s in sets]


# --- metadata, annotations --------------------------------------------------------------
def test_metadata_and_annotations_upsert(store: DataStore) -> None:
    store.write(WriteBatch(metadata=[MetricMetadata("up", MetricType.GAUGE, "old")]))
    new_up = MetricMetadata("up", MetricType.GAUGE, "Target is up", "1")
    store.write(WriteBatch(metadata=[new_up, MetricMetadata("req", MetricType.COUNTER)]))
    assert store.metadata("up") == [new_up]
    assert [m.metric for m in store.metadata()] == ["req", "up"]
    store.write(WriteBatch(annotations=[Annotation("d1", T0, "v1", tags=["deploy"], text="a")]))
    fixed = Annotation("d1", T0, "v1.0.1", end=T0 + 60_000, tags=["deploy", "api"])
    store.write(WriteBatch(annotations=[fixed]))
    assert store.read_annotations(T0 + 30_000, T0 + 30_000) == [fixed]
    assert store.read_annotations(T0 + 61_000, T0 + 99_000) == []
    assert store.stats().annotations == 1


# --- failures and persistence -----------------------------------------------------------
def test_a_refused_write_leaves_nothing(store: DataStore) -> None:
    sid = put(store, labels("m", i="a"), [T0], [1.0])
    (fresh,) = make_series(store, labels("m", i="b"))
    wrong = SeriesRow(sid, labels("m", i="dup"))  # an id already stored for other labels
    bad = batch([fresh.id, sid], [T0 + 1, T0 + 1], [2.0, 3.0], [fresh, wrong])
    bad.metadata = [MetricMetadata("m", MetricType.GAUGE)]
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own error
        store.write(bad)
    assert everything(store, [sid, fresh.id]) == [(sid, T0, bits(np.array([1.0]))[0])]
    assert store.lookup_series([labels("m", i="b")]) == [None]
    assert store.metadata() == []
    assert store.series_heads(np.array([sid], np.int64))[0].tolist() == [T0]


def test_reopen_keeps_series_samples_and_heads(data_opener: DataOpener, tmp_path: Path) -> None:
    first = data_opener(tmp_path / "data")
    a = put(first, labels("m", i="a"), [T0, T0 + 5], [1.0, SPECIAL[0]])
    first.close()
    again = data_opener(tmp_path / "data")
    try:
        assert again.lookup_series([labels("m", i="a")]) == [a]
        ts, values = again.series_heads(np.array([a], np.int64))
        assert ts.tolist() == [T0 + 5] and bits(values) == [STALE_NAN_BITS]
        assert again.label_values("i") == ["a"]
        assert again.allocate_series_ids([labels("m", i="b")])[0] != a
    finally:
        again.close()


# --- maintenance ------------------------------------------------------------------------
def test_compaction_keeps_reads_and_covers_spans(store: DataStore) -> None:
    ids = days(store)
    before = everything(store, ids)
    assert store.rollup_spans() == []
    assert store.compact(T0 + 2 * DAY_MS + 2 * 3_600_000) == 2  # days 0 and 1 are closed
    assert everything(store, ids) == before
    assert store.rollup_spans() == [(T0, T0 + DAY_MS), (T0 + DAY_MS, T0 + 2 * DAY_MS)]
    assert store.compact(T0 + 2 * DAY_MS + 2 * 3_600_000) == 0
    assert store.stats().partitions == 2
    sids, ts, _ = zip(*before, strict=True)
    found, values = store.existing_samples(np.array(sids), np.array(ts))
    assert found.all() and bits(values) == [b for _, _, b in before]


def test_late_rows_reopen_a_compacted_partition(store: DataStore) -> None:
    ids = days(store)
    assert store.compact(NOW) == 3
    expected = sorted([*everything(store, ids), (ids[0], T0 + 1, bits(np.array([42.0]))[0])])
    store.write(batch([ids[0]], [T0 + 1], [42.0]))
    assert store.rollup_spans() == []  # day 0 changed: raw samples until compacted again
    assert store.compact(NOW) == 1
    assert everything(store, ids) == expected
    assert len(store.rollup_spans()) == 3
    stats = store.stats()
    assert (stats.samples, stats.samples_head) == (25, 0)


def test_retention_drops_expired_partitions(store: DataStore) -> None:
    ids = days(store)
    old, new = Event("signup", T0, "u1"), Event("signup", T0 + 2 * DAY_MS, "u2")
    store.write(WriteBatch(events=[StoredEvent(1, old), StoredEvent(2, new)]))
    store.compact(NOW)
    rollups_before = len(store.read_rollups(ids, 0, 2**62, 3_600_000))
    policy = RetentionPolicy(raw_ms=3 * DAY_MS, rollups_ms=3 * DAY_MS, events_ms=4 * DAY_MS)
    result = store.apply_retention(T0 + 5 * DAY_MS, policy)
    assert (result.partitions_dropped, result.samples_deleted, result.events_deleted) == (2, 16, 1)
    assert result.rollups_deleted > 0
    assert {t for _, t, _ in everything(store, ids)} == {
        T0 + 2 * DAY_MS + k * 3_600_000 for k in range(0, 24, 6)
    }
    assert len(store.read_rollups(ids, 0, 2**62, 3_600_000)) < rollups_before
    assert store.read_events(None, 0, 2**62) == [new]
    stats = store.stats()
    assert (stats.samples, stats.events, stats.partitions) == (8, 1, 1)


def test_stats_count_what_is_stored(store: DataStore) -> None:
    empty = store.stats()
    assert (empty.series, empty.samples, empty.events, empty.annotations) == (0, 0, 0, 0)
    days(store)
    stats = store.stats()
    assert (stats.series, stats.samples, stats.samples_head, stats.partitions) == (2, 24, 24, 0)
    assert stats.bytes_on_disk + stats.wal_bytes > 0


def rollup_data(store: DataStore) -> list[int]:
    """Counters with resets, a gauge with NaN, ±Inf and stale markers, over two days."""
    rng = np.random.default_rng(3)
    a, b, c = make_series(store, labels("r", i="a"), labels("r", i="b"), labels("r", i="c"))
    ts = np.arange(T0, T0 + 2 * DAY_MS, 15_000, dtype=np.int64)
    counter = np.cumsum(rng.integers(0, 5, len(ts))).astype(np.float64)
    counter[len(ts) // 3 :] -= counter[len(ts) // 3] - 1  # a reset
    gauge = rng.normal(0, 10, len(ts)).round(3)
    gauge[rng.choice(len(ts), 30, replace=False)] = np.nan
    gauge[rng.choice(len(ts), 30, replace=False)] = np.inf
    gauge[rng.choice(len(ts), 30, replace=False)] = SPECIAL[0]
    sparse = np.where(np.arange(len(ts)) % 97 == 0, 1.0, SPECIAL[0])  # stale-only buckets
    ids = [a.id, b.id, c.id]
    store.write(
        WriteBatch(
            new_series=[a, b, c],
            series_ids=np.repeat(np.array(ids, np.int64), len(ts)),
            ts=np.tile(ts, 3),
            values=np.concatenate([counter, gauge, sparse]),
        )
    )
    return ids


def rollup_tuples(rows: RollupRows, index: list[int]) -> list[tuple[object, ...]]:
    """Rows with series ids replaced by the series' position (ids differ between backends),
    in that order, NaN-safe for comparison."""
    at = {sid: k for k, sid in enumerate(index)}

    def f(x: float) -> object:
        return "nan" if np.isnan(x) else round(float(x), 9)

    return sorted(
        (at[int(s)], int(b), f(lo), f(hi), f(sm), int(n), f(fv), int(ft), f(lv), int(lt),
         f(inc), int(nf))
        for s, b, lo, hi, sm, n, fv, ft, lv, lt, inc, nf in zip(
            rows.series_ids, rows.bucket, rows.min, rows.max, rows.sum, rows.count, rows.first,
            rows.first_ts, rows.last, rows.last_ts, rows.increase, rows.nonfinite, strict=True
        )
    )  # fmt: skip


@WITH_LZ4
def test_rollups_are_those_of_the_reference(store: DataStore, tmp_path: Path) -> None:
    reference = DuckDBStorage(tmp_path / "reference", now_ms=NOW)
    try:
        ids, ref_ids = rollup_data(store), rollup_data(reference)
        assert store.compact(NOW) == reference.compact(NOW) == 2
        assert store.rollup_spans() == reference.rollup_spans()
        for width in (300_000, 3_600_000):
            got = store.read_rollups(ids, T0 - width, T0 + 2 * DAY_MS, width)
            want = reference.read_rollups(ref_ids, T0 - width, T0 + 2 * DAY_MS, width)
            assert len(got) == len(want) > 0
            assert rollup_tuples(got, ids) == rollup_tuples(want, ref_ids)
            part = store.read_rollups(ids[:1], T0 + 3_600_000, T0 + 2 * 3_600_000, width)
            assert (part.bucket >= T0 + 3_600_000).all() and (part.bucket <= T0 + 7_200_000).all()
    finally:
        reference.close()
