"""The storage contract against the embedded DuckDB backend, plus DuckDB-only checks."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from opsmetrics.errors import CorruptDataError
from opsmetrics.model import Event, Series
from opsmetrics.storage import StoredEvent, WriteBatch
from opsmetrics.storage.base import DAY_MS
from opsmetrics.storage.duckdb import DuckDBStorage, partitions
from tests.storage_contract import *  # noqa: F403 - the contract's tests run here
from tests.storage_contract import T0


# --- DuckDB only: a damaged data file is refused at start --------------------------------
def sample_rows(store: DuckDBStorage) -> WriteBatch:
    (sid,) = store.allocate_series_ids(1)
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
    (sid,) = store.allocate_series_ids(1)
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
