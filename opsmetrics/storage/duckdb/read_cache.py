"""In-memory facts the read path would otherwise query for on every selector.

Three facts, each cheap to keep and costly to ask DuckDB for (a query scanning the unsorted
head, or one listing every column of every table):

- the oldest timestamp in `samples_head`: a write lowers it *before* it commits, so a reader
  never sees head rows older than it (it may be lower than the truth, which only costs speed);
  maintenance, which deletes head rows, forgets it and the next reader recomputes it;
- the rows of `rollup_spans`, which only maintenance (compaction, rollup builds, retention)
  changes; it forgets them before and after it commits;
- which partition tables use the older plain-`ts` layout, keyed by the partition rows the reader
  sees in its own snapshot, so a stale answer can never be used for a changed partition list.

A reader that recomputes a fact stores it only if no writer touched the cache meanwhile (the
generation is unchanged), so a value read from an older snapshot never outlives a change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: The head holds no rows: every timestamp is older than its oldest row.
EMPTY_HEAD = 2**63 - 1

PartitionRows = tuple[tuple[int, int, int, int], ...]


class ReadCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._head_min: int | None = None
        self._spans: list[tuple[int, int]] | None = None
        self._plain: tuple[PartitionRows, frozenset[str]] | None = None

    # --- writer side --------------------------------------------------------------------
    def head_written(self, oldest_ts: int) -> None:
        """Rows as old as `oldest_ts` are about to be committed to the head."""
        with self._lock:
            self._generation += 1
            if self._head_min is not None:
                self._head_min = min(self._head_min, oldest_ts)

    def forget(self) -> None:
        """Maintenance changed the head, partitions or rollups: recompute everything."""
        with self._lock:
            self._generation += 1
            self._head_min = None
            self._spans = None
            self._plain = None

    # --- reader side --------------------------------------------------------------------
    def head_min(self, compute: Callable[[], int]) -> int:
        with self._lock:
            known, generation = self._head_min, self._generation
        if known is not None:
            return known
        value = compute()
        with self._lock:
            if self._generation == generation:
                self._head_min = value
        return value

    def stored_spans(self, compute: Callable[[], list[tuple[int, int]]]) -> list[tuple[int, int]]:
        with self._lock:
            known, generation = self._spans, self._generation
        if known is not None:
            return list(known)
        value = compute()
        with self._lock:
            if self._generation == generation:
                self._spans = list(value)
        return value

    def plain_tables(
        self, partitions: PartitionRows, compute: Callable[[], set[str]]
    ) -> frozenset[str]:
        with self._lock:
            known = self._plain
        if known is not None and known[0] == partitions:
            return known[1]
        value = frozenset(compute())
        with self._lock:
            self._plain = (partitions, value)
        return value
