"""Rollups: per-series 5-minute and 1-hour buckets of closed partitions.

Bucket `b` of width `w` holds the samples with b < ts <= b + w: left-open like a PromQL range
window, so a window (t - W, t] with t and W multiples of w is exactly W / w whole buckets. Each
bucket row holds min, max, sum, count, first (value and ts), last (value and ts) and the counter
increase *inside* the bucket: the sum over consecutive sample pairs of the delta, where a drop
counts as a reset (the new value is the increase), as Prometheus's `increase` does without
extrapolation. Keeping `first` and `last` makes buckets composable: the increase over several
buckets is the sum of their increases plus the deltas across each boundary (see
`RollupRows.increase_over`).

Only finite samples are aggregated. Stale markers are ignored; other NaNs and ±Inf are counted
in `nonfinite` (a bucket with only such samples has a row with n = 0) so that queries can fall
back to the raw samples, which give them PromQL's special-value semantics. Rollups are rebuilt
in the same transaction that compacts a partition, so a crash leaves either the old partition
and its old rollups or the new ones. Each width has its own table (`table(width)`, migration 9),
written partition after partition and sorted by (series, bucket) inside one: a table's row groups
then cover few days each, so DuckDB's min/max zone maps skip every row group outside a query's
time range (in one table of both widths, 1-hour and 5-minute bucket indexes shared row groups
and no scan could skip any).

The stored shape is smaller than `RollupRows` (migration 7): the bucket as its index
`bucket / width` (it falls back at each series change by one partition's buckets, not by a day of
milliseconds), `first_ts`/`last_ts` as offsets from the bucket start (0 when the bucket has no
finite sample), and `min_v`, `max_v` and `inc` as NULL when they equal `first_v`, `last_v` and
`last_v - first_v` exactly (finite and non-zero, so the bits are the same), as they do for
counters without resets. `read` decodes every column back to the values aggregated.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np

from opsmetrics.model import STALE_NAN_BITS
from opsmetrics.storage.base import ROLLUP_WIDTHS_MS, RollupRows
from opsmetrics.storage.duckdb import partitions as parts

_MAX_SID = 2**32 - 1


def table(width_ms: int) -> str:
    """The table holding one width's buckets: `rollups_300s`, `rollups_3600s`."""
    if width_ms not in ROLLUP_WIDTHS_MS:
        raise ValueError(f"no rollups of width {width_ms} ms; widths are {ROLLUP_WIDTHS_MS}")
    return f"rollups_{width_ms // 1000}s"


def _unless_same(column: str, same_as: str) -> str:
    """NULL when `column` equals `same_as` exactly: finite and non-zero, so the bits agree."""
    return (
        f"CASE WHEN isfinite({column}) AND {column} <> 0 AND {column} = {same_as} "
        f"THEN NULL ELSE {column} END"
    )


def _encoded_sql(width_ms: int) -> str:
    """The stored columns, in table order, from the aggregates (min_v, …, nonfinite) of a bucket."""
    w = int(width_ms)
    return (
        f"series_id, bucket // {w}, {_unless_same('min_v', 'first_v')}, "
        f"{_unless_same('max_v', 'last_v')}, sum_v, n, first_v, "
        "CASE WHEN n = 0 THEN 0 ELSE first_ts - bucket END, last_v, "
        "CASE WHEN n = 0 THEN 0 ELSE last_ts - bucket END, "
        f"{_unless_same('inc', 'last_v - first_v')}, nonfinite"
    )


def encoded_sql(width_ms: int) -> str:
    """`_encoded_sql`, for rows restored from an archive (storage/duckdb/archive.py)."""
    return _encoded_sql(width_ms)


def _decoded_sql(width_ms: int) -> str:
    """The aggregates back from the stored columns: the inverse of `_encoded_sql`."""
    bucket = f"bidx * {int(width_ms)}"
    return (
        f"series_id, {bucket} AS bucket, coalesce(min_v, first_v) AS min_v, "
        "coalesce(max_v, last_v) AS max_v, sum_v, n, first_v, "
        f"CASE WHEN n = 0 THEN 0 ELSE {bucket} + first_dt END AS first_ts, last_v, "
        f"CASE WHEN n = 0 THEN 0 ELSE {bucket} + last_dt END AS last_ts, "
        "coalesce(inc, last_v - first_v) AS inc, nonfinite"
    )


def _bucket_sql(width_ms: int) -> str:
    """The start of the left-open bucket (start, start + width] holding `ts`."""
    return f"CAST(floor((ts - 1) / {int(width_ms)}) AS BIGINT) * {int(width_ms)}"


def _finite_sql() -> str:
    delta = "CASE WHEN prev IS NULL THEN 0 WHEN value >= prev THEN value - prev ELSE value END"
    return (
        "SELECT series_id, bucket, min(value) AS min_v, max(value) AS max_v, "
        "fsum(value) AS sum_v, count(*) AS n, arg_min(value, ts) AS first_v, "
        "min(ts) AS first_ts, arg_max(value, ts) AS last_v, max(ts) AS last_ts, "
        f"sum({delta}) AS inc "
        "FROM (SELECT *, lag(value) OVER (PARTITION BY series_id, bucket ORDER BY ts) AS prev "
        "FROM live WHERE isfinite(value)) GROUP BY series_id, bucket"
    )


def _nonfinite_sql() -> str:
    return (
        "SELECT series_id, bucket, count(*) AS nonfinite FROM live "
        f"WHERE (value IS NULL AND nan_bits <> {STALE_NAN_BITS}) OR isinf(value) "
        "GROUP BY series_id, bucket"
    )


def _insert_sql(width_ms: int, lo: int, hi: int, source: str) -> str:
    """Aggregate one width's buckets holding lo < ts <= hi from `source` (everything
    interpolated is an integer we computed, or SQL we built)."""
    nan = "'NaN'::DOUBLE"
    return (
        f"INSERT INTO {table(width_ms)} WITH live AS (SELECT series_id, ts, value, nan_bits, "
        f"{_bucket_sql(width_ms)} AS bucket FROM ({source}) "
        f"WHERE ts > {int(lo)} AND ts <= {int(hi)}), "
        f"agg AS (SELECT series_id, bucket, coalesce(min_v, {nan}) AS min_v, "
        f"coalesce(max_v, {nan}) AS max_v, coalesce(sum_v, {nan}) AS sum_v, "
        f"coalesce(n, 0) AS n, coalesce(first_v, {nan}) AS first_v, "
        f"coalesce(first_ts, 0) AS first_ts, coalesce(last_v, {nan}) AS last_v, "
        f"coalesce(last_ts, 0) AS last_ts, coalesce(inc, {nan}) AS inc, "
        "coalesce(nonfinite, 0) AS nonfinite "
        f"FROM ({_finite_sql()}) FULL JOIN ({_nonfinite_sql()}) USING (series_id, bucket)) "
        f"SELECT {_encoded_sql(width_ms)} FROM agg ORDER BY series_id, bucket"
    )


def rebuild(cur: duckdb.DuckDBPyConnection, start_ms: int, end_ms: int, now_ms: int) -> None:
    """Recompute every bucket that holds a sample of the partition [start, end), at each width.

    A bucket that straddles a partition boundary (with left-open buckets and aligned partitions
    that is the one ending at `start`) is computed from all the data it covers, so it is right
    whichever of the two partitions is compacted last.
    """
    for width in ROLLUP_WIDTHS_MS:
        lo = (start_ms - 1) // width * width  # start of the bucket holding ts = start
        hi = (end_ms - 2) // width * width + width  # end of the bucket holding ts = end - 1
        cur.execute(
            f"DELETE FROM {table(width)} WHERE bidx >= ? AND bidx < ?",
            [lo // width, hi // width],
        )
        source = parts.range_source(cur, 0, _MAX_SID, lo + 1, hi)
        cur.execute(_insert_sql(width, lo, hi, source))
    cur.execute("DELETE FROM rollup_backlog WHERE start_ms = ?", [start_ms])
    cur.execute("INSERT OR REPLACE INTO rollup_spans VALUES (?, ?, ?)", [start_ms, end_ms, now_ms])


def backlog(cur: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """Partitions compacted before rollups existed (recorded by migration 3) still to build."""
    rows = cur.execute("SELECT start_ms, end_ms FROM rollup_backlog ORDER BY start_ms").fetchall()
    return [(int(s), int(e)) for s, e in rows]


def drop_expired(cur: duckdb.DuckDBPyConnection, cutoff_ms: int) -> int:
    """Delete buckets that end at or before the cutoff; returns how many rows went."""
    dropped = 0
    for width in ROLLUP_WIDTHS_MS:
        # (bidx + 1) * width <= cutoff, as a bound on bidx so zone maps can skip row groups
        expired = f"DELETE FROM {table(width)} WHERE bidx <= ?"
        rows = cur.execute(expired, [cutoff_ms // width - 1]).fetchall()
        dropped += int(rows[0][0]) if rows else 0
    cur.execute("DELETE FROM rollup_spans WHERE end_ms <= ?", [cutoff_ms])
    cur.execute("DELETE FROM rollup_backlog WHERE end_ms <= ?", [cutoff_ms])
    return dropped


def read(
    cur: duckdb.DuckDBPyConnection,
    series_ids: Sequence[int],
    start_ms: int,
    end_ms: int,
    width_ms: int,
) -> RollupRows:
    """Buckets of `width_ms` whose start is in [start, end], sorted by (series, bucket)."""
    source = table(width_ms)
    ids = np.unique(np.asarray(series_ids, dtype=np.int64))
    if not len(ids):
        return RollupRows.empty()
    cur.register("wanted_rollups", {"sid": ids.astype(np.uint32)})
    try:
        got = cur.execute(
            f"SELECT {_decoded_sql(width_ms)} FROM {source} "
            "WHERE bidx >= ? AND bidx <= ? "
            "AND series_id IN (SELECT sid FROM wanted_rollups) ORDER BY series_id, bidx",
            [-(-start_ms // width_ms), end_ms // width_ms],
        ).fetchnumpy()
    finally:
        cur.unregister("wanted_rollups")
    return _rows(got)


def covered(cur: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """The [start, end) spans whose rollups are built and current, oldest first.

    Late samples for a compacted partition wait in the head until the next compaction rebuilds
    its rollups; until then every span from the oldest such sample on is left out, so queries
    read raw samples there.
    """
    rows = cur.execute(
        "SELECT start_ms, end_ms FROM rollup_spans "
        "WHERE end_ms <= coalesce((SELECT min(ts) FROM samples_head), end_ms) ORDER BY start_ms"
    ).fetchall()
    return [(int(s), int(e)) for s, e in rows]


def stored_spans(cur: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """Every [start, end) span whose rollups are built, oldest first (`covered` without the
    late-sample cut, which the backend applies from its cached oldest head timestamp)."""
    rows = cur.execute("SELECT start_ms, end_ms FROM rollup_spans ORDER BY start_ms").fetchall()
    return [(int(s), int(e)) for s, e in rows]


def _rows(got: dict[str, np.ndarray]) -> RollupRows:
    def f64(name: str) -> np.ndarray:
        return np.asarray(got[name], dtype=np.float64)

    def i64(name: str) -> np.ndarray:
        return np.asarray(got[name], dtype=np.int64)

    return RollupRows(
        series_ids=i64("series_id"),
        bucket=i64("bucket"),
        min=f64("min_v"),
        max=f64("max_v"),
        sum=f64("sum_v"),
        count=i64("n"),
        first=f64("first_v"),
        last=f64("last_v"),
        last_ts=i64("last_ts"),
        increase=f64("inc"),
        first_ts=i64("first_ts"),
        nonfinite=i64("nonfinite"),
    )
