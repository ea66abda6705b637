"""Storage benchmark: bytes/sample before and after compaction, range reads, event inserts.

Run: .venv/bin/python bench/storage.py [--series 2000] [--days 3] [--runs 3]

The data set follows the compression issue: N series x D days x 15 s of noisy data, half
gauges (random walks rounded to 2-3 significant decimals) and half counters (increasing by
small integers), written through DuckDBStorage.write in 10k-row batches in arrival (time-major)
order. Then compaction and CHECKPOINT. Every figure is the median of --runs runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from opsmetrics.model import Event, Float64Array, Int64Array, Series
from opsmetrics.storage import StoredEvent, WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage

STEP_MS = 15_000
DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a partition boundary
BATCH_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class RunResult:
    samples: int
    write_s: float
    head_bytes: int
    head_file: int
    compact_s: float
    sorted_bytes: int
    sorted_file: int
    read_head_s: float
    read_sorted_s: float
    open_s: float
    events_per_s: float


def gauge_values(rng: np.random.Generator, steps: int, count: int) -> Float64Array:
    """Random walks around a per-series level, rounded to 2-3 significant decimals."""
    level = 10.0 ** rng.uniform(0, 3, count)
    walk = np.cumsum(rng.normal(0, 0.002, (steps, count)), axis=0)
    raw = level * (1 + walk)
    decimals = np.where(level < 10, 2, 1)
    return np.round(raw * 10.0**decimals) / 10.0**decimals


def counter_values(rng: np.random.Generator, steps: int, count: int) -> Float64Array:
    rate = rng.uniform(0.5, 50, count)
    return np.cumsum(rng.poisson(rate, (steps, count)), axis=0).astype(np.float64)


def make_data(series: int, days: int, seed: int = 7) -> tuple[Int64Array, Int64Array, Float64Array]:
    """Rows in arrival order: every series at t0, then every series at t1, ..."""
    rng = np.random.default_rng(seed)
    steps = days * DAY_MS // STEP_MS
    gauges = series // 2
    values = np.hstack(
        [gauge_values(rng, steps, gauges), counter_values(rng, steps, series - gauges)]
    )
    ids = np.tile(np.arange(1, series + 1, dtype=np.int64), steps)
    ts = np.repeat(START_MS + np.arange(steps, dtype=np.int64) * STEP_MS, series)
    return ids, ts, values.reshape(-1)


def used_bytes(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT block_size, used_blocks FROM pragma_database_size()").fetchall()
    return int(row[0][0]) * int(row[0][1])


def write_all(store: DuckDBStorage, ids: Int64Array, ts: Int64Array, vals: Float64Array) -> float:
    series = [
        Series(int(i), (("__name__", f"bench_metric_{i % 50}"), ("instance", f"host-{i}")))
        for i in np.unique(ids)
    ]
    assert store.allocate_series_ids([s.labels for s in series]) == [s.id for s in series]
    began = time.perf_counter()
    for lo in range(0, len(ts), BATCH_ROWS):
        hi = lo + BATCH_ROWS
        store.write(
            WriteBatch(
                new_series=series if lo == 0 else [],
                series_ids=ids[lo:hi],
                ts=ts[lo:hi],
                values=vals[lo:hi],
            )
        )
    return time.perf_counter() - began


def median_read(store: DuckDBStorage, series: int, days: int) -> float:
    rng = np.random.default_rng(1)
    times = []
    for _ in range(5):
        wanted = sorted(int(i) for i in rng.choice(np.arange(1, series + 1), 100, replace=False))
        start = START_MS + int(rng.integers(0, days * 4 - 1)) * DAY_MS // 4
        began = time.perf_counter()
        rows = store.read_samples(wanted, start, start + DAY_MS // 4 - 1)
        times.append(time.perf_counter() - began)
        assert len(rows.ts) == 100 * (DAY_MS // 4 // STEP_MS)
    return statistics.median(times)


def events_per_second(store: DuckDBStorage, count: int = 200_000) -> float:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**63, count, dtype=np.int64)
    names = ("purchase", "signup", "cart_view", "nps_response")
    events = [
        StoredEvent(
            int(keys[i]),
            Event(
                name=names[i % 4],
                ts=START_MS + i * 1000,
                entity=f"user-{i % 5000}",
                value=float(i % 977) if i % 2 else None,
                props={"source": "ads" if i % 3 else "organic", "plan": "pro"},
            ),
        )
        for i in range(count)
    ]
    began = time.perf_counter()
    for lo in range(0, count, BATCH_ROWS):
        store.write(WriteBatch(events=events[lo : lo + BATCH_ROWS]))
    return count / (time.perf_counter() - began)


def one_run(series: int, days: int, data_dir: Path) -> RunResult:
    ids, ts, vals = make_data(series, days)
    now = START_MS + (days + 1) * DAY_MS
    store = DuckDBStorage(data_dir, now_ms=now)
    write_s = write_all(store, ids, ts, vals)
    store.checkpoint()
    con = store._cursor()
    head_bytes, head_file = used_bytes(con), store.path.stat().st_size
    read_head = median_read(store, series, days)
    began = time.perf_counter()
    store.compact(now)
    store.checkpoint()
    compact_s = time.perf_counter() - began
    sorted_bytes, sorted_file = used_bytes(con), store.path.stat().st_size
    read_sorted = median_read(store, series, days)
    store.close()
    began = time.perf_counter()
    DuckDBStorage(data_dir, now_ms=now).close()
    open_s = time.perf_counter() - began
    events_store = DuckDBStorage(data_dir / "events", now_ms=now)
    eps = events_per_second(events_store)
    events_store.close()
    return RunResult(
        len(ts), write_s, head_bytes, head_file, compact_s, sorted_bytes, sorted_file,
        read_head, read_sorted, open_s, eps,
    )  # fmt: skip


def column_compression(data_dir: Path) -> list[tuple[str, str, str]]:
    con = duckdb.connect(str(data_dir / "opsmetrics.duckdb"), read_only=True)
    tables = [
        str(r[0])
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'samples%' "
            "ORDER BY table_name"
        ).fetchall()
    ]
    out = []
    for t in tables:
        rows = con.execute(
            "SELECT column_name, string_agg(DISTINCT compression, ',') FROM pragma_storage_info(?) "
            "WHERE segment_type <> 'VALIDITY' GROUP BY column_name ORDER BY column_name",
            [t],
        ).fetchall()
        out += [(t, str(c), str(k)) for c, k in rows]
    con.close()
    return out


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs (nproc), {mem:.0f} GiB RAM, "
        f"Python {platform.python_version()}, duckdb {duckdb.__version__}, "
        f"numpy {np.__version__}"
    )


def report(results: list[RunResult], series: int, days: int, layout: list[tuple[str, ...]]) -> str:
    def med(attr: str) -> float:
        return statistics.median(float(getattr(r, attr)) for r in results)

    n = results[0].samples
    lines = [
        f"Data: {series} series x {days} days x 15 s = {n:,} samples (half gauges, half "
        f"counters), written in {BATCH_ROWS:,}-row batches in arrival order; "
        f"median of {len(results)} runs.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| write throughput (storage.write) | {n / med('write_s'):,.0f} samples/s |",
        f"| bytes/sample, head (arrival order), used blocks | {med('head_bytes') / n:.2f} |",
        f"| bytes/sample, head, file size | {med('head_file') / n:.2f} |",
        f"| compaction + CHECKPOINT time | {med('compact_s'):.2f} s |",
        f"| bytes/sample, compacted (sorted), used blocks | {med('sorted_bytes') / n:.2f} |",
        f"| bytes/sample, compacted, file size | {med('sorted_file') / n:.2f} |",
        f"| read_samples 100 series x 6 h, head | {med('read_head_s') * 1000:.1f} ms |",
        f"| read_samples 100 series x 6 h, compacted | {med('read_sorted_s') * 1000:.1f} ms |",
        f"| open (startup integrity scan) after compaction | {med('open_s'):.2f} s |",
        f"| events through storage.write (10k/batch) | {med('events_per_s'):,.0f} events/s |",
        "",
        "Column compression after compaction (pragma_storage_info): "
        + "; ".join(f"{t}.{c}: {k}" for t, c, k in layout[:8]),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    layout: list[tuple[str, ...]] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="opsmetrics-bench-") as tmp:
            results.append(one_run(args.series, args.days, Path(tmp)))
            layout = list(column_compression(Path(tmp)))
        print(f"run {run + 1}: {results[-1]}", flush=True)
    print()
    print(f"Machine: {machine()}")
    print(report(results, args.series, args.days, layout))


if __name__ == "__main__":
    main()
