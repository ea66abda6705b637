"""Rollups equal the aggregates computed from the raw samples they summarise."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from opsmetrics.model import STALE_NAN, Series
from opsmetrics.storage.base import DAY_MS, ROLLUP_WIDTHS_MS, RetentionPolicy, WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage

T0 = 1_700_006_400_000  # a whole day in UTC, so buckets and partitions line up
HOUR = 3_600_000
STEP = 15_000


def counter_with_resets(rng: np.random.Generator, n: int) -> np.ndarray:
    values = np.cumsum(rng.integers(0, 8, n)).astype(np.float64)
    for at in rng.choice(np.arange(1, n), size=4, replace=False):
        values[at:] -= values[at] - rng.integers(0, 3)  # drops to near zero: a reset
    return values


def gauge(rng: np.random.Generator, n: int) -> np.ndarray:
    # Multiples of 1/4: sums are exact in float64 whatever the order of addition.
    return rng.integers(-400, 400, n).astype(np.float64) / 4


def write_data(store: DuckDBStorage, hours: int = 6, seed: int = 7) -> dict[int, np.ndarray]:
    """Two counters and a gauge with gaps, NaNs and a stale marker, at 15 s over `hours`."""
    rng = np.random.default_rng(seed)
    sids = store.allocate_series_ids([(("__name__", f"m{i}"),) for i in range(3)])
    n = hours * HOUR // STEP
    ts = T0 + np.arange(n, dtype=np.int64) * STEP
    data = {sids[0]: counter_with_resets(rng, n), sids[1]: counter_with_resets(rng, n)}
    g = gauge(rng, n)
    g[[5, 6, 300]] = np.nan
    g[400] = STALE_NAN
    data[sids[2]] = g
    keep = rng.random(n) > 0.1  # gaps
    batch = WriteBatch(
        new_series=[Series(s, (("__name__", f"m{s}"),)) for s in sids],
        series_ids=np.repeat(np.array(sids, np.int64), int(keep.sum())),
        ts=np.tile(ts[keep], 3),
        values=np.concatenate([data[s][keep] for s in sids]),
    )
    store.write(batch)
    return {s: np.stack([ts[keep], data[s][keep]]) for s in sids}


def expected(raw: np.ndarray, width: int) -> dict[int, dict[str, float]]:
    """Per bucket start: the aggregates of the bucket's non-NaN samples, from raw data.

    Buckets are left-open: bucket b holds b < ts <= b + width."""
    ts, values = raw[0].astype(np.int64), raw[1]
    ok = ~np.isnan(values)
    ts, values = ts[ok], values[ok]
    starts = (ts - 1) // width * width
    out: dict[int, dict[str, float]] = {}
    for bucket in np.unique(starts):
        v = values[starts == bucket]
        deltas = np.diff(v)
        out[int(bucket)] = {
            "min": v.min(),
            "max": v.max(),
            "sum": v.sum(),
            "count": len(v),
            "first": v[0],
            "last": v[-1],
            "increase": float(np.where(deltas >= 0, deltas, v[1:]).sum()),
        }
    return out


def raw_increase(values: np.ndarray) -> float:
    v = values[~np.isnan(values)]
    deltas = np.diff(v)
    return float(np.where(deltas >= 0, deltas, v[1:]).sum())


def actual(store: DuckDBStorage, sid: int, width: int) -> dict[int, dict[str, float]]:
    rows = store.read_rollups([sid], T0 - width, T0 + DAY_MS, width)
    assert (rows.series_ids == sid).all()
    assert (np.diff(rows.bucket) > 0).all()
    return {
        int(b): {
            "min": rows.min[i],
            "max": rows.max[i],
            "sum": rows.sum[i],
            "count": int(rows.count[i]),
            "first": rows.first[i],
            "last": rows.last[i],
            "increase": rows.increase[i],
        }
        for i, b in enumerate(rows.bucket)
    }


@pytest.fixture(params=[HOUR, HOUR // 2, 4 * HOUR], ids=["1h-parts", "30m-parts", "4h-parts"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DuckDBStorage:
    return DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=request.param)


def test_rollups_equal_aggregates_of_raw_data(store: DuckDBStorage) -> None:
    raw = write_data(store, hours=8)
    assert store.compact(T0 + 10 * HOUR) > 0
    for sid, series in raw.items():
        for width in ROLLUP_WIDTHS_MS:
            assert actual(store, sid, width) == expected(series, width), (sid, width)
    assert store.rollup_spans()[0][0] == T0


def test_increase_across_buckets_handles_resets(store: DuckDBStorage) -> None:
    raw = write_data(store, hours=8)
    store.compact(T0 + 10 * HOUR)
    for sid, series in raw.items():
        for width in ROLLUP_WIDTHS_MS:
            rows = store.read_rollups([sid], T0 - width, T0 + DAY_MS, width)
            assert rows.increase_over(slice(None)) == pytest.approx(raw_increase(series[1]))


def test_only_closed_partitions_are_rolled_up(tmp_path: Path) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=HOUR)
    write_data(store, hours=4)
    store.compact(T0 + 3 * HOUR)  # late window 1 h: partitions before T0+2h close
    rows = store.read_rollups([0, 1, 2], T0, T0 + DAY_MS, HOUR)
    assert sorted(set(rows.bucket.tolist())) == [T0, T0 + HOUR]
    assert store.rollup_spans() == [(T0, T0 + HOUR), (T0 + HOUR, T0 + 2 * HOUR)]


def test_late_data_rebuilds_the_partition_rollups(tmp_path: Path) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=HOUR)
    sid = store.allocate_series_ids([(("__name__", "late"),)])[0]
    lbl = (("__name__", "late"),)
    ts = T0 + np.arange(0, HOUR, 60_000, dtype=np.int64)
    store.write(WriteBatch([Series(sid, lbl)], np.full(60, sid, np.int64), ts, np.ones(60)))
    store.compact(T0 + 3 * HOUR)
    late = np.array([T0 + 30_000], np.int64)
    store.write(WriteBatch([], np.array([sid], np.int64), late, np.array([5.0])))
    store.compact(T0 + 3 * HOUR)
    rows = store.read_rollups([sid], T0, T0, HOUR)
    # Bucket T0 is (T0, T0 + 1h]: 59 of the first samples (T0 itself is in the bucket before)
    assert (rows.count[0], rows.sum[0], rows.max[0]) == (60, 64.0, 5.0)


def test_unknown_width_is_refused(store: DuckDBStorage) -> None:
    with pytest.raises(ValueError, match="widths are"):
        store.read_rollups([0], T0, T0 + HOUR, 60_000)


def test_retention_drops_rollups_by_their_own_age(tmp_path: Path) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=HOUR)
    write_data(store, hours=6)
    store.compact(T0 + 8 * HOUR)
    policy = RetentionPolicy(raw_ms=HOUR, rollups_ms=6 * HOUR, events_ms=DAY_MS)
    result = store.apply_retention(T0 + 9 * HOUR, policy)  # rollups before T0+3h go
    assert result.rollups_deleted > 0
    assert store.read_samples([0, 1, 2], T0, T0 + DAY_MS).ts.size == 0  # raw all gone
    for width in ROLLUP_WIDTHS_MS:
        rows = store.read_rollups([0, 1, 2], T0, T0 + DAY_MS, width)
        assert rows.bucket.min() == T0 + 3 * HOUR
        assert rows.bucket.max() == T0 + 6 * HOUR - width
    assert store.rollup_spans()[0] == (T0 + 3 * HOUR, T0 + 4 * HOUR)


def test_rollups_survive_reopen(tmp_path: Path) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=HOUR)
    raw = write_data(store, hours=3)
    store.compact(T0 + 5 * HOUR)
    store.close()
    again = DuckDBStorage(tmp_path / "data", now_ms=T0 + 5 * HOUR, partition_ms=HOUR)
    for sid, series in raw.items():
        assert actual(again, sid, 300_000) == expected(series, 300_000)
    again.close()


def test_partitions_compacted_before_rollups_existed_are_backfilled(tmp_path: Path) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=HOUR)
    raw = write_data(store, hours=3)
    store.compact(T0 + 5 * HOUR)
    store.close()
    # The state migration 3 leaves in a data directory compacted by an older version.
    con = duckdb.connect(str(tmp_path / "data" / "opsmetrics.duckdb"))
    con.execute("DELETE FROM rollups_300s; DELETE FROM rollups_3600s; DELETE FROM rollup_spans")
    con.execute("INSERT INTO rollup_backlog SELECT start_ms, end_ms FROM partitions")
    con.close()
    again = DuckDBStorage(tmp_path / "data", now_ms=T0 + 5 * HOUR, partition_ms=HOUR)
    assert again.read_rollups([0], T0, T0 + DAY_MS, HOUR).bucket.size == 0
    again.compact(T0 + 5 * HOUR)
    for sid, series in raw.items():
        assert actual(again, sid, HOUR) == expected(series, HOUR)
    again.close()


def test_migration_9_moves_single_table_rollups_into_one_table_per_width(tmp_path: Path) -> None:
    store = DuckDBStorage(tmp_path / "data", now_ms=T0, partition_ms=HOUR)
    raw = write_data(store, hours=3)
    store.compact(T0 + 5 * HOUR)
    store.close()
    # Put the data directory back in migration 8's shape: both widths in one `rollups` table.
    con = duckdb.connect(str(tmp_path / "data" / "opsmetrics.duckdb"))
    con.execute(
        "CREATE TABLE rollups AS "
        "SELECT 300000::BIGINT AS width_ms, * FROM rollups_300s UNION ALL "
        "SELECT 3600000::BIGINT AS width_ms, * FROM rollups_3600s"
    )
    con.execute("DROP TABLE rollups_300s; DROP TABLE rollups_3600s; DROP TABLE leases")
    con.execute("DROP TABLE alert_timeline; DROP TABLE alert_actions; DROP TABLE initiatives")
    con.execute("DROP TABLE report_runs; DROP TABLE report_deliveries; DROP TABLE report_schedules")
    con.execute("DROP TABLE kpi_reviews")
    con.execute("DROP TABLE source_cursors; DROP TABLE source_runs")
    con.execute("DELETE FROM schema_migrations WHERE version >= 9")
    con.close()
    again = DuckDBStorage(tmp_path / "data", now_ms=T0 + 5 * HOUR, partition_ms=HOUR)
    for width in ROLLUP_WIDTHS_MS:
        for sid, series in raw.items():
            assert actual(again, sid, width) == expected(series, width)
    again.close()
    con = duckdb.connect(str(tmp_path / "data" / "opsmetrics.duckdb"))
    names = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    con.close()
    assert "rollups" not in names
    assert {"rollups_300s", "rollups_3600s"} <= names
