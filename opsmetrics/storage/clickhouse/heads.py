"""The newest sample of each series this node has written or asked for.

`write` moves heads forward; a series not in the cache is read from ClickHouse (one argMax
query for all of them) and then cached. Samples another node writes for a cached series are
not seen here; the ingest path only uses heads for the late-data window.
"""

from __future__ import annotations

import threading

import numpy as np

from opsmetrics.model import Float64Array, Int64Array

NO_TS = np.iinfo(np.int64).min


class HeadCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heads: dict[int, tuple[int, int]] = {}  # id -> (ts, value bits)

    def unknown(self, ids: Int64Array) -> Int64Array:
        with self._lock:
            wanted = np.unique(ids)
            return wanted[[int(i) not in self._heads for i in wanted.tolist()]]

    def get(self, ids: Int64Array) -> tuple[Int64Array, Float64Array]:
        ts = np.full(len(ids), NO_TS, np.int64)
        values = np.full(len(ids), np.nan)
        bits = values.view(np.uint64)
        with self._lock:
            for k, i in enumerate(ids.tolist()):
                head = self._heads.get(i)
                if head is not None:
                    ts[k] = head[0]
                    bits[k] = head[1]
        return ts, values

    def update(self, ids: Int64Array, ts: Int64Array, values: Float64Array) -> None:
        """Set the heads read from the table (one row per series)."""
        self._merge(ids, ts, values, known_only=False)

    def _merge(
        self, ids: Int64Array, ts: Int64Array, values: Float64Array, known_only: bool
    ) -> None:
        rows = zip(ids.tolist(), ts.tolist(), values.view(np.uint64).tolist(), strict=True)
        with self._lock:
            for i, t, b in rows:
                current = self._heads.get(i)
                if current is None and known_only:
                    continue  # the table may hold newer samples: read it when asked
                if current is None or t > current[0]:
                    self._heads[i] = (t, b)

    def advance(self, ids: Int64Array, ts: Int64Array, values: Float64Array) -> None:
        """Move each cached head to its newest written sample, if newer."""
        order = np.lexsort((ts, ids))
        sorted_ids = ids[order]
        last = np.r_[sorted_ids[1:] != sorted_ids[:-1], True]
        self._merge(sorted_ids[last], ts[order][last], values[order][last], known_only=True)
