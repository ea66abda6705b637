"""Reading one selector's samples: the id filter and the oldest head timestamp."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np

from opsmetrics.model import Int64Array
from opsmetrics.storage.duckdb.read_cache import EMPTY_HEAD
from opsmetrics.storage.duckdb.sql import scalar

#: Read a selector's id range and filter it in memory when at least 1 in DENSE_IDS ids of the
#: range is wanted; sparser sets join with a registered id table in DuckDB.
DENSE_IDS = 4


def head_min(cur: duckdb.DuckDBPyConnection) -> int:
    """The oldest timestamp in the head, or EMPTY_HEAD when it holds no rows."""
    oldest = scalar(cur, "SELECT min(ts) FROM samples_head")
    return EMPTY_HEAD if oldest is None else int(oldest)


def read_ids(
    cur: duckdb.DuckDBPyConnection, source: str, ids: Int64Array, start_ms: int, end_ms: int
) -> dict[str, np.ndarray]:
    """The rows of `source` for the (sorted, unique) ids in [start, end], sorted by (id, ts).

    Ids of one selector are mostly close together: then reading the id range and dropping the
    few others here costs less than DuckDB joining with a registered id table and sorting.
    """
    lo, hi = int(ids[0]), int(ids[-1])
    sql = (
        f"SELECT series_id, ts, value, nan_bits FROM ({source}) "
        f"WHERE ts >= ? AND ts <= ? AND series_id BETWEEN {lo} AND {hi}"
    )
    if len(ids) * DENSE_IDS >= hi - lo + 1:
        got = cur.execute(sql, [start_ms, end_ms]).fetchnumpy()
        return _sorted_rows(got, ids if len(ids) < hi - lo + 1 else None)
    cur.register("wanted", {"sid": ids.astype(np.uint32)})
    try:
        rows: dict[str, np.ndarray] = cur.execute(
            sql + " AND series_id IN (SELECT sid FROM wanted) ORDER BY series_id, ts",
            [start_ms, end_ms],
        ).fetchnumpy()
    finally:
        cur.unregister("wanted")
    return rows


def _sorted_rows(got: dict[str, Any], keep_ids: Int64Array | None) -> dict[str, np.ndarray]:
    """The fetched columns, only the rows of `keep_ids` (all when None), sorted by (id, ts)."""
    sid = np.asarray(got["series_id"], dtype=np.int64)
    ts = np.asarray(got["ts"], dtype=np.int64)
    order = np.lexsort((ts, sid))
    if keep_ids is not None:
        order = order[np.isin(sid[order], keep_ids)]
    return {name: column[order] for name, column in got.items()}
