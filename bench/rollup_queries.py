"""Time long-range queries with rollups vs raw samples (a measurement, not a test).

    .venv/bin/python -m bench.rollup_queries [--series 2000] [--days 3] [--dir PATH]

Writes `series` series (half counters with resets, half gauges) at 15 s for `days` days into a
fresh DuckDB, compacts, then times each query with rollups on and forced raw (median of 3).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from opsmetrics.model import Series
from opsmetrics.query.promql.engine import evaluate_range
from opsmetrics.storage.base import WriteBatch
from opsmetrics.storage.duckdb import DuckDBStorage

T0 = 1_700_006_400_000
HOUR, DAY, SCRAPE = 3_600_000, 86_400_000, 15_000
QUERIES = [
    ("sum by (job) (rate(bench_requests_total[1h]))", HOUR),
    ("sum by (job) (increase(bench_requests_total[1d]))", HOUR),
    ("avg_over_time(bench_gauge[1h])", HOUR),
    ("max_over_time(bench_gauge[1d])", HOUR),
    ("sum by (job) (rate(bench_requests_total[5m]))", 300_000),
    ("avg_over_time(bench_gauge[5m])", 300_000),
]


def write(store: DuckDBStorage, n_series: int, days: int) -> None:
    rng = np.random.default_rng(1)
    labels = [
        (
            ("__name__", "bench_requests_total" if i % 2 == 0 else "bench_gauge"),
            ("instance", f"i{i}"),
            ("job", f"j{i % 10}"),
        )
        for i in range(n_series)
    ]
    ids = store.allocate_series_ids(labels)
    new = [Series(sid, lab) for sid, lab in zip(ids, labels, strict=True)]
    per_chunk = HOUR * 6
    for start in range(T0, T0 + days * DAY, per_chunk):
        ts = np.arange(start, start + per_chunk, SCRAPE, dtype=np.int64)
        inc = rng.random((n_series, len(ts))) * 5
        values = np.cumsum(inc, axis=1) + (start - T0) / 1000
        values[1::2] = rng.normal(100, 10, (n_series // 2, len(ts)))
        store.write(
            WriteBatch(
                new,
                np.repeat(np.array(ids, np.int64), len(ts)),
                np.tile(ts, n_series),
                values.ravel(),
            )
        )
        new = []
    store.compact(T0 + days * DAY + 2 * HOUR)


def median_s(
    store: DuckDBStorage, expr: str, start: int, end: int, step: int, rollups: bool
) -> float:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        evaluate_range(store, expr, start, end, step, use_rollups=rollups, max_samples=10**9)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="rollup_bench_"))
    store = DuckDBStorage(root / "data", now_ms=T0, partition_ms=DAY)
    t = time.perf_counter()
    write(store, args.series, args.days)
    print(f"wrote {args.series} series x {args.days} d in {time.perf_counter() - t:.0f} s")
    start, end = T0 + DAY, T0 + args.days * DAY - HOUR
    print(f"{'query':55} {'step':>6} {'raw s':>8} {'rollup s':>9} {'speed-up':>9}")
    for expr, step in QUERIES:
        raw = median_s(store, expr, start, end, step, rollups=False)
        fast = median_s(store, expr, start, end, step, rollups=True)
        print(f"{expr:55} {step // 60_000:>5}m {raw:8.3f} {fast:9.3f} {raw / fast:8.1f}x")


if __name__ == "__main__":
    main()
