"""The storage contract against the embedded DuckDB backend, plus DuckDB-only checks."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from opsmetrics.errors import CorruptDataError
from opsmetrics.model import Event, Series
from opsmetrics.storage import StoredEvent, WriteBatch
from opsmetrics.storage.base import DAY_MS, RetentionPolicy
from opsmetrics.storage.duckdb import DuckDBStorage, partitions
from opsmetrics.storage.duckdb.read_cache import ReadCache
from tests.storage_contract import *  # noqa: F403 - the contract's tests run here
from tests.storage_contract import T0


# --- DuckDB only: a damaged data file is refused at start --------------------------------
def sample_rows(store: DuckDBStorage) -> WriteBatch:
    (sid,) = store.allocate_series_ids([(("__name__", "m"),)])
    n = 400_000
    return WriteBatch(
        new_series=[Series(sid, (("__name__", "m"),))],
        series_ids=np.full(n, sid, np.int64),
        ts=T0 + np.arange(n, dtype=np.int64),
        values=np.random.default_rng(5).normal(size=n),
    )


def event_rows(store: DuckDBStorage) -> WriteBatch:
    noise = np.random.default_rng(5).bytes(30_000 * 40).hex()
    events = [
        StoredEvent(i, Event("purchase", T0 + i, f"u{i}", props={"n": noise[i * 80 : i * 80 + 80]}))
        for i in range(30_000)
    ]
    return WriteBatch(events=events)


@pytest.fixture(params=[sample_rows, event_rows], ids=["samples", "events"])
def data_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A checkpointed data file of many blocks, filled mostly with samples or with events.

    The index rebuild at start reads every sample block anyway; the events case shows the
    start-up scan also covers tables nothing reads at start.
    """
    store = DuckDBStorage(tmp_path / "data", now_ms=T0)
    store.write(request.param(store))
    store.close()  # checkpoints: the blocks move from the WAL into the main file
    return store.path


def assert_refused(path: Path) -> None:
    with pytest.raises(CorruptDataError) as info:
        DuckDBStorage(path.parent, now_ms=T0)
    assert str(path) in info.value.message
    assert "backup" in info.value.message


def test_truncated_file_is_refused(data_file: Path) -> None:
    size = data_file.stat().st_size
    with data_file.open("r+b") as f:
        f.truncate(size // 2)
    assert_refused(data_file)


def test_garbage_in_the_middle_is_refused(data_file: Path) -> None:
    size = data_file.stat().st_size
    with data_file.open("r+b") as f:
        f.seek(size // 2)
        f.write(np.random.default_rng(1).bytes(4096))
    assert_refused(data_file)


def test_partitions_in_the_older_plain_layout_are_still_read(tmp_path: Path) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0)
    (sid,) = store.allocate_series_ids([(("__name__", "m"),)])
    batch = WriteBatch(
        new_series=[Series(sid, (("__name__", "m"),))],
        series_ids=np.full(3, sid, np.int64),
        ts=T0 + np.arange(3, dtype=np.int64),
        values=np.array([1.0, float("nan"), -0.0]),
    )
    store.write(batch)
    expected = store.read_samples([sid], T0, T0 + 10)
    store.close()
    con = duckdb.connect(str(store.path))  # rewrite day 0 the way older versions compacted it
    con.execute(f'CREATE TABLE "samples_p{T0}" AS SELECT * FROM samples_head ORDER BY ts')
    con.execute("DELETE FROM samples_head")
    con.execute("INSERT INTO partitions VALUES (?, ?, 3, ?)", [T0, T0 + DAY_MS, T0])
    partitions.replace_view(con)
    con.close()
    store = DuckDBStorage(tmp_path / "data", now_ms=T0)
    try:
        got = store.read_samples([sid], T0, T0 + 10)
        assert got.ts.tolist() == expected.ts.tolist()
        assert got.values.view(np.uint64).tolist() == expected.values.view(np.uint64).tolist()
        store.write(
            WriteBatch(series_ids=np.array([sid]), ts=np.array([T0 + 5]), values=np.ones(1))
        )
        assert store.compact(T0 + 2 * DAY_MS) == 1  # merges into the new layout
        assert store.read_samples([sid], T0, T0 + 10).ts.tolist() == [T0, T0 + 1, T0 + 2, T0 + 5]
        assert store.stats().samples == 4
    finally:
        store.close()


# --- the read path's in-memory facts (read_cache.py) follow every change ------------------
HOUR = 3_600_000


def hourly_store(tmp_path: Path) -> tuple[DuckDBStorage, list[int]]:
    """Two series at 1-minute steps over hours 0-4 after T0, in one-hour partitions."""
    store = DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=HOUR, late_window_ms=HOUR)
    sids = store.allocate_series_ids([(("__name__", f"m{i}"),) for i in range(2)])
    ts = T0 + np.arange(0, 4 * HOUR, 60_000, dtype=np.int64)
    store.write(
        WriteBatch(
            new_series=[Series(s, (("__name__", f"m{s}"),)) for s in sids],
            series_ids=np.repeat(np.array(sids, np.int64), len(ts)),
            ts=np.tile(ts, 2),
            values=np.tile(np.arange(len(ts), dtype=np.float64), 2),
        )
    )
    return store, sids


def late_sample(store: DuckDBStorage, sid: int, ts: int, value: float) -> None:
    store.write(WriteBatch(series_ids=np.array([sid]), ts=np.array([ts]), values=np.full(1, value)))


def test_compaction_after_a_read_is_seen_by_the_next_read(tmp_path: Path) -> None:
    store, sids = hourly_store(tmp_path)
    try:
        before = store.read_samples(sids, T0, T0 + 2 * HOUR)
        assert store.rollup_spans() == []
        assert store.compact(T0 + 3 * HOUR) == 2  # hours 0 and 1 move to partitions
        assert store.rollup_spans() == [(T0, T0 + HOUR), (T0 + HOUR, T0 + 2 * HOUR)]
        after = store.read_samples(sids, T0, T0 + 2 * HOUR)
        assert after.ts.tolist() == before.ts.tolist()
        assert after.series_ids.tolist() == before.series_ids.tolist()
        assert store.stats().samples_head < store.stats().samples
    finally:
        store.close()


def test_a_late_sample_after_a_read_is_seen_and_uncovers_its_span(tmp_path: Path) -> None:
    store, sids = hourly_store(tmp_path)
    try:
        store.compact(T0 + 4 * HOUR)  # hours 0-2 compacted; the head holds hour 3 only
        assert store.rollup_spans()[-1] == (T0 + 2 * HOUR, T0 + 3 * HOUR)
        old = store.read_samples([sids[0]], T0 + HOUR, T0 + HOUR + 90_000)
        assert old.values.tolist() == [60.0, 61.0]
        late_sample(store, sids[0], T0 + HOUR + 30_000, -1.0)
        got = store.read_samples([sids[0]], T0 + HOUR, T0 + HOUR + 90_000)
        assert got.values.tolist() == [60.0, -1.0, 61.0]
        # Rollups of hours 1 and 2 miss the late sample until compaction rebuilds them.
        assert store.rollup_spans() == [(T0, T0 + HOUR)]
        store.compact(T0 + 4 * HOUR)
        assert store.rollup_spans()[-1] == (T0 + 2 * HOUR, T0 + 3 * HOUR)
        rows = store.read_rollups([sids[0]], T0 + HOUR, T0 + HOUR, HOUR)
        assert rows.min.tolist() == [-1.0]  # the rebuilt rollup holds it
    finally:
        store.close()


def test_retention_after_a_read_is_seen_by_the_next_read(tmp_path: Path) -> None:
    store, sids = hourly_store(tmp_path)
    try:
        store.compact(T0 + 4 * HOUR)
        assert len(store.read_samples(sids, T0, T0 + 4 * HOUR).ts) == 2 * 4 * 60
        assert len(store.rollup_spans()) == 3
        policy = RetentionPolicy(raw_ms=2 * HOUR, rollups_ms=2 * HOUR, events_ms=DAY_MS)
        store.apply_retention(T0 + 4 * HOUR, policy)
        got = store.read_samples(sids, T0, T0 + 4 * HOUR)
        assert int(got.ts.min()) >= T0 + 2 * HOUR
        assert store.rollup_spans() == [(T0 + 2 * HOUR, T0 + 3 * HOUR)]
    finally:
        store.close()


def test_a_cache_fill_racing_a_writer_is_not_kept() -> None:
    cache = ReadCache()
    calls: list[int] = []

    def racing() -> int:
        calls.append(1)
        cache.forget()  # maintenance commits while the reader computes
        return 5

    assert cache.head_min(racing) == 5
    assert cache.head_min(lambda: 7) == 7  # recomputed, then kept
    assert cache.head_min(lambda: 9) == 7
    cache.head_written(3)
    assert cache.head_min(lambda: 9) == 3
    assert calls == [1]


@pytest.mark.parametrize("pick", [[0, 11], [0, 1, 2, 3], [2, 5, 7, 8, 11]], ids=str)
def test_sparse_and_dense_id_sets_read_the_same_rows(tmp_path: Path, pick: list[int]) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=HOUR, late_window_ms=HOUR)
    try:
        sids = store.allocate_series_ids([(("__name__", f"m{i}"),) for i in range(12)])
        ts = T0 + np.arange(0, 2 * HOUR, 60_000, dtype=np.int64)
        rng = np.random.default_rng(3)
        order = rng.permutation(len(sids) * len(ts))  # arrival order unlike (series, ts)
        store.write(
            WriteBatch(
                new_series=[Series(s, (("__name__", "m"), ("i", str(s)))) for s in sids],
                series_ids=np.repeat(np.array(sids, np.int64), len(ts))[order],
                ts=np.tile(ts, len(sids))[order],
                values=rng.normal(size=len(sids) * len(ts))[order],
            )
        )
        store.compact(T0 + 2 * HOUR)  # hour 0 in a partition, hour 1 in the head
        wanted = [sids[i] for i in pick]
        got = store.read_samples(wanted[::-1], T0 + 30 * 60_000, T0 + 90 * 60_000)
        one_by_one = [store.read_samples([s], T0 + 30 * 60_000, T0 + 90 * 60_000) for s in wanted]
        assert got.series_ids.tolist() == [s for r in one_by_one for s in r.series_ids.tolist()]
        assert got.ts.tolist() == [t for r in one_by_one for t in r.ts.tolist()]
        assert got.values.tolist() == [v for r in one_by_one for v in r.values.tolist()]
        assert len(got.ts) == len(wanted) * 61
    finally:
        store.close()
