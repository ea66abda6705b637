"""The local spool in front of a remote data store (storage/spool.py).

The store behind the spool is a real DuckDB backend; `Outage` stands between them and raises
StorageUnavailableError while `down` is set, as the ClickHouse backend does when its server
does not answer. The end-to-end case (a ClickHouse front stopped and started under a running
server) is in tests/test_two_nodes.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from opsmetrics.clock import FakeClock
from opsmetrics.errors import StorageUnavailableError
from opsmetrics.model import Annotation, Event, MetricMetadata, MetricType, Series
from opsmetrics.storage.base import StoredEvent, WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.spool import SUFFIX, Spool, decode, encode
from tests.storage_contract import NOW, SPECIAL, T0, bits, labels


class Outage:
    """Passes batches to the store unless `down`; remembers the order they arrived in."""

    def __init__(self, store: DuckDBStorage) -> None:
        self.store = store
        self.down = threading.Event()
        self.refuse = False
        self.written: list[int] = []

    def __call__(self, batch: WriteBatch) -> None:
        if self.down.is_set():
            raise StorageUnavailableError("connection refused (test outage)")
        if self.refuse:
            raise ValueError("the store refuses this batch")
        self.store.write(batch)
        self.written.append(int(batch.ts[0]))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStorage]:
    s = DuckDBStorage(tmp_path / "data", now_ms=NOW)
    yield s
    s.close()


def batch(sid: int, ts: int, value: float, new: bool = False) -> WriteBatch:
    series = [Series(sid, labels("m", i=str(sid)))] if new else []
    return WriteBatch(
        new_series=series,
        series_ids=np.array([sid], np.int64),
        ts=np.array([ts], np.int64),
        values=np.array([value]),
    )


def test_encode_decode_round_trip_is_exact() -> None:
    ts = np.arange(len(SPECIAL), dtype=np.int64) + T0
    original = WriteBatch(
        new_series=[Series(7, labels("m", job="api", é="ü"))],
        series_ids=np.full(len(SPECIAL), 7, np.int64),
        ts=ts,
        values=np.array(SPECIAL),
        events=[StoredEvent(42, Event("signup", T0, "u1", 3.5, {"plan": "pro", "n": 2}, "e1"))],
        annotations=[Annotation("deploy-1", T0, "deploy", T0 + 5, ["api"], "v2")],
        metadata=[MetricMetadata("m", MetricType.COUNTER, "help", "seconds")],
    )
    back = decode(encode(original))
    assert back.new_series == original.new_series
    assert back.series_ids.tolist() == original.series_ids.tolist()
    assert back.ts.tolist() == ts.tolist()
    assert bits(back.values) == bits(original.values)  # NaN payloads and -0.0 survive
    assert back.events == original.events
    assert back.annotations == original.annotations
    assert back.metadata == original.metadata


def test_an_outage_spools_durably_and_drains_in_order(tmp_path: Path, store: DuckDBStorage) -> None:
    sink = Outage(store)
    clock = FakeClock(NOW)
    spool = Spool(tmp_path / "spool", sink, clock, max_bytes=1 << 20)
    try:
        spool.write(batch(1, T0, 1.0, new=True))  # the store is up: straight through
        assert spool.stats().batches == 0 and sink.written == [T0]
        sink.down.set()
        for i in range(1, 6):
            spool.write(batch(1, T0 + i, float(i)))  # acknowledged: on disk
        files = sorted((tmp_path / "spool").glob("*" + SUFFIX))
        assert len(files) == 5
        stats = spool.stats()
        assert stats.batches == 5 and stats.bytes == sum(f.stat().st_size for f in files)
        assert stats.oldest_ms == NOW
        sink.down.clear()
        assert spool.wait_drained(30)
        spool.write(batch(1, T0 + 6, 6.0))  # and straight through again
    finally:
        spool.close()
    assert sink.written == [T0 + i for i in range(7)]  # the order they were acknowledged in
    rows = store.read_samples([1], T0, T0 + 10)
    assert rows.values.tolist() == [1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert not list((tmp_path / "spool").glob("*" + SUFFIX))


def test_a_full_spool_refuses_and_keeps_nothing_of_the_request(
    tmp_path: Path, store: DuckDBStorage
) -> None:
    sink = Outage(store)
    sink.down.set()
    one = len(encode(batch(1, T0, 1.0, new=True)))
    spool = Spool(tmp_path / "spool", sink, FakeClock(NOW), max_bytes=2 * one + one // 2)
    try:
        spool.write(batch(1, T0, 1.0, new=True))
        spool.write(batch(1, T0 + 1, 2.0, new=True))
        assert not spool.stats().full
        with pytest.raises(StorageUnavailableError, match="spool is full"):
            spool.write(batch(1, T0 + 2, 3.0, new=True))
        assert spool.stats().batches == 2 and spool.stats().full
        sink.down.clear()
        assert spool.wait_drained(30)
        assert not spool.stats().full  # room again
    finally:
        spool.close()


def test_spooled_batches_survive_a_restart(tmp_path: Path, store: DuckDBStorage) -> None:
    sink = Outage(store)
    sink.down.set()
    first = Spool(tmp_path / "spool", sink, FakeClock(NOW), max_bytes=1 << 20)
    first.write(batch(3, T0, 1.5, new=True))
    first.write(batch(3, T0 + 1, 2.5))
    first.close()
    (tmp_path / "spool" / "00000000000000000099-1.tmp").write_bytes(b"half a batch")
    sink.down.clear()
    again = Spool(tmp_path / "spool", sink, FakeClock(NOW), max_bytes=1 << 20)
    try:
        assert again.wait_drained(30)
    finally:
        again.close()
    assert store.read_samples([3], T0, T0 + 1).values.tolist() == [1.5, 2.5]
    assert not list((tmp_path / "spool").glob("*.tmp"))  # never acknowledged: dropped


def test_a_batch_the_store_refuses_is_set_aside_not_lost(
    tmp_path: Path, store: DuckDBStorage
) -> None:
    sink = Outage(store)
    sink.down.set()
    spool = Spool(tmp_path / "spool", sink, FakeClock(NOW), max_bytes=1 << 20)
    try:
        spool.write(batch(4, T0, 1.0, new=True))
        sink.refuse = True
        sink.down.clear()
        assert spool.wait_drained(30)
        assert spool.stats().rejected == 1
    finally:
        spool.close()
    (kept,) = (tmp_path / "spool" / "rejected").glob("*" + SUFFIX)
    assert decode(kept.read_bytes()).values.tolist() == [1.0]
