"""An in-memory series index: label sets ↔ ids, postings for matcher selection, series heads.

The embedded backend keeps it in memory (as Prometheus's head block does) and rebuilds it at
start from the series table. It is thread-safe: readers and the single writer share one lock.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from opsmetrics.model import (
    METRIC_NAME,
    Float64Array,
    Int64Array,
    Labels,
    Matcher,
    MatchOp,
    Series,
    metric_name,
)

NO_TS = np.iinfo(np.int64).min


class SeriesIndex:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ids: dict[Labels, int] = {}
        self._labels: dict[int, Labels] = {}
        self._postings: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        self._per_metric: dict[str, int] = defaultdict(int)
        self._head_ts: Int64Array = np.full(1024, NO_TS, np.int64)
        self._head_val: Float64Array = np.full(1024, np.nan, np.float64)
        self._next_id = 1

    # --- building -----------------------------------------------------------------------
    def add(self, series: Iterable[Series]) -> None:
        with self._lock:
            for s in series:
                if s.labels in self._ids:
                    continue
                self._ids[s.labels] = s.id
                self._labels[s.id] = s.labels
                for name, value in s.labels:
                    self._postings[name][value].add(s.id)
                self._per_metric[metric_name(s.labels)] += 1
                self._next_id = max(self._next_id, s.id + 1)
            self._grow(self._next_id)

    def allocate(self, count: int) -> list[int]:
        with self._lock:
            first = self._next_id
            self._next_id += count
            self._grow(self._next_id)
            return list(range(first, first + count))

    def _grow(self, size: int) -> None:
        if size <= len(self._head_ts):
            return
        new_size = max(size, 2 * len(self._head_ts))
        ts = np.full(new_size, NO_TS, np.int64)
        val = np.full(new_size, np.nan, np.float64)
        ts[: len(self._head_ts)] = self._head_ts
        val[: len(self._head_val)] = self._head_val
        self._head_ts, self._head_val = ts, val

    def update_heads(self, series_ids: Int64Array, ts: Int64Array, values: Float64Array) -> None:
        """Move each series' head forward to its newest sample in the given rows."""
        if len(ts) == 0:
            return
        order = np.lexsort((ts, series_ids))
        ids_sorted = series_ids[order]
        last = np.r_[ids_sorted[1:] != ids_sorted[:-1], True]
        ids, newest_ts, newest_val = ids_sorted[last], ts[order][last], values[order][last]
        with self._lock:
            newer = newest_ts > self._head_ts[ids]
            self._head_ts[ids[newer]] = newest_ts[newer]
            self._head_val[ids[newer]] = newest_val[newer]

    # --- reading ------------------------------------------------------------------------
    def lookup(self, labels: Sequence[Labels]) -> list[int | None]:
        with self._lock:
            get = self._ids.get
            return [get(lbl) for lbl in labels]

    def labels_of(self, series_id: int) -> Labels:
        with self._lock:
            return self._labels[series_id]

    def heads(self, series_ids: Int64Array) -> tuple[Int64Array, Float64Array]:
        with self._lock:
            return self._head_ts[series_ids].copy(), self._head_val[series_ids].copy()

    def count(self) -> int:
        with self._lock:
            return len(self._ids)

    def series_count(self, metric: str) -> int:
        with self._lock:
            return self._per_metric.get(metric, 0)

    def label_names(self) -> list[str]:
        with self._lock:
            return sorted(n for n, values in self._postings.items() if values)

    def label_values(self, name: str) -> list[str]:
        with self._lock:
            values = self._postings.get(name, {})
            return sorted(v for v, ids in values.items() if ids)

    def select(self, matchers: Sequence[Matcher]) -> list[Series]:
        with self._lock:
            candidates = self._candidates(matchers)
            out = [
                Series(i, self._labels[i])
                for i in candidates
                if all(m.matches_labels(self._labels[i]) for m in matchers)
            ]
        out.sort(key=lambda s: s.labels)
        return out

    def _candidates(self, matchers: Sequence[Matcher]) -> Iterable[int]:
        """Narrow the search with postings of equality and regex matchers on non-empty values."""
        best: set[int] | None = None
        for m in matchers:
            ids = self._postings_for(m)
            if ids is not None and (best is None or len(ids) < len(best)):
                best = ids
        return list(best) if best is not None else list(self._labels)

    def _postings_for(self, m: Matcher) -> set[int] | None:
        values = self._postings.get(m.name)
        if m.op is MatchOp.EQ and m.value != "":
            return set(values.get(m.value, ())) if values else set()
        if m.op is MatchOp.RE and m.name == METRIC_NAME and not m.matches(""):
            if not values:
                return set()
            out: set[int] = set()
            for value, ids in values.items():
                if m.matches(value):
                    out |= ids
            return out
        return None
