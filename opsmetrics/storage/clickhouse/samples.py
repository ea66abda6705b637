"""Sample rows in ClickHouse: insert with a deduplication token, read deduplicated.

`samples` is a ReplacingMergeTree ordered by (metric, series_id, ts): a resent sample is one
row once parts merge, and every read says FINAL, so it is one row before that too (the last
written value wins). Each insert carries `insert_deduplication_token` = a hash of the rows, so
a retried batch is not even written twice. A NaN's exact bits (the stale marker among them)
are kept in `nan_bits`, 0 for every other value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from opsmetrics.model import Float64Array, Int64Array
from opsmetrics.storage.clickhouse.connect import ClickHouse

COLUMNS = ["metric", "series_id", "ts", "value", "nan_bits"]
#: FINAL without merging across partitions: a (series, ts) key always lies in one partition.
FINAL_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}


def content_token(table: str, *arrays: Any) -> str:
    """A deduplication token from the rows' content: a retried write carries the same one."""
    h = hashlib.blake2b(table.encode(), digest_size=16)
    for a in arrays:
        h.update(
            np.ascontiguousarray(a).tobytes() if isinstance(a, np.ndarray) else repr(a).encode()
        )
    return h.hexdigest()


def nan_bits(values: Float64Array) -> np.ndarray:
    bits = values.view(np.uint64)
    return np.where(np.isnan(values), bits, np.uint64(0))


def values_from(value: np.ndarray, bits: np.ndarray) -> Float64Array:
    """float64 values bit-exactly: where nan_bits is set, those are the bits."""
    out = np.asarray(value, dtype=np.float64).copy()
    bits = np.asarray(bits, dtype=np.uint64)
    nan = bits != 0
    out.view(np.uint64)[nan] = bits[nan]
    return out


def insert(
    client: ClickHouse, metrics: list[str], ids: Int64Array, ts: Int64Array, values: Float64Array
) -> None:
    columns: list[Any] = [metrics, ids, ts, values, nan_bits(values)]
    token = content_token("samples", ids, ts, values.view(np.uint64))
    client.insert(
        "samples",
        columns,
        column_names=COLUMNS,
        column_oriented=True,
        settings={"insert_deduplication_token": token},
    )


def fetch(
    client: ClickHouse, sql: str, params: dict[str, Any], dtypes: dict[str, Any]
) -> dict[str, np.ndarray]:
    """The query's columns as numpy arrays of the given dtypes (empty ones when no rows)."""
    got = client.query_np(sql, parameters=params, settings=FINAL_SETTINGS)
    if not len(got):
        return {name: np.empty(0, dtype) for name, dtype in dtypes.items()}
    if got.dtype.names is None:  # one column comes back two-dimensional
        (name,) = dtypes
        return {name: np.asarray(got[:, 0], dtype=dtypes[name])}
    return {name: np.asarray(got[name], dtype=dtype) for name, dtype in dtypes.items()}


ROW_TYPES = {"series_id": np.int64, "ts": np.int64, "value": np.float64, "nan_bits": np.uint64}


def id_filter(metrics: Sequence[str] | None, params: dict[str, Any], ids: Sequence[int]) -> str:
    """`metric IN … AND series_id IN …`: the metrics let the primary key skip granules."""
    params["ids"] = [int(i) for i in ids]
    cond = "series_id IN {ids:Array(Int64)}"
    if metrics is not None:
        params["metrics"] = sorted(set(metrics))
        cond = "metric IN {metrics:Array(String)} AND " + cond
    return cond


def read(
    client: ClickHouse,
    metrics: Sequence[str] | None,
    ids: Sequence[int],
    start_ms: int,
    end_ms: int,
) -> dict[str, np.ndarray]:
    params: dict[str, Any] = {"lo": start_ms, "hi": end_ms}
    sql = (
        "SELECT series_id, ts, value, nan_bits FROM samples FINAL "
        f"WHERE {id_filter(metrics, params, ids)} AND ts >= {{lo:Int64}} AND ts <= {{hi:Int64}} "
        "ORDER BY series_id, ts"
    )
    return fetch(client, sql, params, ROW_TYPES)


def read_points(
    client: ClickHouse, metrics: Sequence[str] | None, ids: Int64Array, ts: Int64Array
) -> dict[str, np.ndarray]:
    """Rows at any of the ids and any of the timestamps (a superset of the wanted pairs)."""
    params: dict[str, Any] = {"ts": sorted({int(t) for t in ts})}
    sql = (
        "SELECT series_id, ts, value, nan_bits FROM samples FINAL "
        f"WHERE {id_filter(metrics, params, np.unique(ids).tolist())} "
        "AND ts IN {ts:Array(Int64)}"
    )
    return fetch(client, sql, params, ROW_TYPES)


def read_heads(
    client: ClickHouse, metrics: Sequence[str] | None, ids: Sequence[int]
) -> dict[str, np.ndarray]:
    """Newest ts and value per series that has samples."""
    params: dict[str, Any] = {}
    sql = (
        "SELECT series_id, max(ts) AS ts, argMax(value, s.ts) AS value, "
        "argMax(nan_bits, s.ts) AS nan_bits FROM samples AS s FINAL "
        f"WHERE {id_filter(metrics, params, ids)} GROUP BY series_id"
    )
    return fetch(client, sql, params, ROW_TYPES)
