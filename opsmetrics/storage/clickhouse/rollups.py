"""Rollups: per-series 5-minute and 1-hour buckets of compacted partitions, built in SQL.

The same buckets as the DuckDB backend (storage/duckdb/rollups.py has the semantics): bucket
`b` of width `w` holds b < ts <= b + w; min, max, sum, count, first/last value and time over
the finite samples; `increase` the counter increase between consecutive finite samples inside
the bucket (a drop is a reset), from `lagInFrame` over the samples ordered by ts; `nonfinite`
the NaN (not stale) and ±Inf samples left out.

`compact` rebuilds every bucket holding a sample of the partition with one INSERT … SELECT
per width from `samples FINAL`; the tables are ReplacingMergeTrees on (series_id, bucket), so
the new row of a bucket replaces the old one. A bucket with only stale markers gets a row
with n = 0 and nonfinite = 0 (so that it too replaces an older row) that `read` leaves out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from opsmetrics.model import STALE_NAN_BITS
from opsmetrics.storage.base import ROLLUP_WIDTHS_MS, RollupRows
from opsmetrics.storage.clickhouse.connect import ClickHouse
from opsmetrics.storage.clickhouse.ddl import rollups_table
from opsmetrics.storage.clickhouse.samples import FINAL_SETTINGS, fetch

_COLUMNS = (
    "series_id, bucket, min_v, max_v, sum_v, n, first_v, first_ts, last_v, last_ts, inc, nonfinite"
)


def _aggregates() -> str:
    nan = "nan"
    delta = "if(prev IS NULL, 0, if(value >= prev, value - prev, value))"
    return (
        "series_id, bucket, "
        f"if(countIf(fin) = 0, {nan}, minIf(value, fin)) AS min_v, "
        f"if(countIf(fin) = 0, {nan}, maxIf(value, fin)) AS max_v, "
        f"if(countIf(fin) = 0, {nan}, sumKahanIf(value, fin)) AS sum_v, "
        "toUInt32(countIf(fin)) AS n, "
        f"if(countIf(fin) = 0, {nan}, argMinIf(value, ts, fin)) AS first_v, "
        "if(countIf(fin) = 0, 0, minIf(ts, fin)) AS first_ts, "
        f"if(countIf(fin) = 0, {nan}, argMaxIf(value, ts, fin)) AS last_v, "
        "if(countIf(fin) = 0, 0, maxIf(ts, fin)) AS last_ts, "
        f"if(countIf(fin) = 0, {nan}, sumIf({delta}, fin)) AS inc, "
        f"toUInt32(countIf(NOT fin AND nan_bits != {STALE_NAN_BITS})) AS nonfinite"
    )


def rebuild_sql(width_ms: int, lo: int, hi: int) -> str:
    """INSERT the buckets of one width holding lo < ts <= hi (all integers we computed)."""
    w = int(width_ms)
    bucket = f"(ts - 1) - positiveModulo(ts - 1, {w})"
    return (
        f"INSERT INTO {rollups_table(w)} ({_COLUMNS}) SELECT {_aggregates()} FROM ("
        f"SELECT series_id, ts, value, nan_bits, isFinite(value) AS fin, {bucket} AS bucket, "
        "lagInFrame(toNullable(value)) OVER (PARTITION BY series_id, bucket, fin ORDER BY ts "
        "ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev "
        f"FROM samples FINAL WHERE ts > {int(lo)} AND ts <= {int(hi)}"
        ") GROUP BY series_id, bucket"
    )


def rebuild(client: ClickHouse, start_ms: int, end_ms: int) -> None:
    """Recompute every bucket that holds a sample of the partition [start, end), each width.

    A bucket straddling a partition boundary is computed from all the data it covers."""
    for width in ROLLUP_WIDTHS_MS:
        lo = (start_ms - 1) // width * width
        hi = (end_ms - 2) // width * width + width
        client.command(rebuild_sql(width, lo, hi), settings=FINAL_SETTINGS)


_TYPES = {
    "series_id": np.int64,
    "bucket": np.int64,
    "min_v": np.float64,
    "max_v": np.float64,
    "sum_v": np.float64,
    "n": np.int64,
    "first_v": np.float64,
    "first_ts": np.int64,
    "last_v": np.float64,
    "last_ts": np.int64,
    "inc": np.float64,
    "nonfinite": np.int64,
}


def read(
    client: ClickHouse, series_ids: Sequence[int], start_ms: int, end_ms: int, width_ms: int
) -> RollupRows:
    """Buckets of `width_ms` starting in [start, end], sorted by (series, bucket)."""
    ids = sorted({int(i) for i in series_ids})
    if not ids:
        return RollupRows.empty()
    got = fetch(
        client,
        f"SELECT {_COLUMNS} FROM {rollups_table(width_ms)} FINAL "
        "WHERE series_id IN {ids:Array(Int64)} AND bucket >= {lo:Int64} AND bucket <= {hi:Int64} "
        "AND (n > 0 OR nonfinite > 0) ORDER BY series_id, bucket",
        {"ids": ids, "lo": start_ms, "hi": end_ms},
        _TYPES,
    )
    return RollupRows(
        series_ids=got["series_id"],
        bucket=got["bucket"],
        min=got["min_v"],
        max=got["max_v"],
        sum=got["sum_v"],
        count=got["n"],
        first=got["first_v"],
        last=got["last_v"],
        last_ts=got["last_ts"],
        increase=got["inc"],
        first_ts=got["first_ts"],
        nonfinite=got["nonfinite"],
    )
