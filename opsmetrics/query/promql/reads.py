"""What the engine reads from storage, and a read-through memo that several queries share.

`SeriesReader` is the part of the `Storage` protocol the PromQL engine uses: every selector
reads through it. `SharedReads` wraps one for the queries of one rule-group evaluation (all at
the same instant): a selector that several rules share asks storage once, and the samples of a
selector whose series are among those of one already read over the same window are cut from
that read instead of being read again. Results are the ones storage gave, so queries over a
`SharedReads` return exactly what they return over the storage itself.

The memo holds what storage held when it was read: whoever writes through the ingestor while
using one calls `forget()` before the next read that may see the write.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from opsmetrics.model import Matcher, SampleRows, Series
from opsmetrics.storage.base import RollupRows


class SeriesReader(Protocol):
    """The storage reads of the PromQL engine (a `Storage` is one)."""

    def select_series(
        self, matchers: Sequence[Matcher], start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Series]: ...

    def read_samples(self, series_ids: Sequence[int], start_ms: int, end_ms: int) -> SampleRows: ...

    def read_rollups(
        self, series_ids: Sequence[int], start_ms: int, end_ms: int, width_ms: int
    ) -> RollupRows: ...

    def rollup_spans(self) -> list[tuple[int, int]]: ...


@dataclass(slots=True)
class ReadCounts:
    """How a `SharedReads` answered: from storage (`reads`) or from memory (`shared`)."""

    reads: int = 0
    shared: int = 0


@dataclass(frozen=True, slots=True)
class _SampleRead:
    ids: frozenset[int]
    rows: SampleRows


class SharedReads:
    """A `SeriesReader` over `storage` that reads each distinct request once."""

    def __init__(self, storage: SeriesReader) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self._series: dict[tuple[tuple[Matcher, ...], int | None, int | None], list[Series]] = {}
        self._samples: dict[tuple[int, int], list[_SampleRead]] = {}
        self._rollups: dict[tuple[tuple[int, ...], int, int, int], RollupRows] = {}
        self._spans: list[tuple[int, int]] | None = None
        self.counts = ReadCounts()

    def forget(self) -> None:
        """Drop everything read so far (storage has changed)."""
        with self._lock:
            self._series.clear()
            self._samples.clear()
            self._rollups.clear()
            self._spans = None

    def select_series(
        self, matchers: Sequence[Matcher], start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Series]:
        key = (tuple(matchers), start_ms, end_ms)
        with self._lock:
            found = self._series.get(key)
            self._count(found is not None)
        if found is None:
            found = self._storage.select_series(matchers, start_ms, end_ms)
            with self._lock:
                self._series[key] = found
        return list(found)

    def read_samples(self, series_ids: Sequence[int], start_ms: int, end_ms: int) -> SampleRows:
        wanted = frozenset(series_ids)
        window = (start_ms, end_ms)
        with self._lock:
            read = next((r for r in self._samples.get(window, ()) if wanted <= r.ids), None)
            self._count(read is not None)
        if read is not None:
            return _subset(read, wanted)
        rows = _read_only(self._storage.read_samples(series_ids, start_ms, end_ms))
        with self._lock:
            self._samples.setdefault(window, []).append(_SampleRead(wanted, rows))
        return rows

    def read_rollups(
        self, series_ids: Sequence[int], start_ms: int, end_ms: int, width_ms: int
    ) -> RollupRows:
        key = (tuple(series_ids), start_ms, end_ms, width_ms)
        with self._lock:
            found = self._rollups.get(key)
            self._count(found is not None)
        if found is None:
            found = self._storage.read_rollups(series_ids, start_ms, end_ms, width_ms)
            with self._lock:
                self._rollups[key] = found
        return found

    def rollup_spans(self) -> list[tuple[int, int]]:
        with self._lock:
            spans = self._spans
            self._count(spans is not None)
        if spans is None:
            spans = self._storage.rollup_spans()
            with self._lock:
                self._spans = spans
        return list(spans)

    def _count(self, shared: bool) -> None:
        if shared:
            self.counts.shared += 1
        else:
            self.counts.reads += 1


def _read_only(rows: SampleRows) -> SampleRows:
    """Shared arrays must not be changed by one reader under another's feet."""
    for array in (rows.series_ids, rows.ts, rows.values):
        array.flags.writeable = False
    return rows


def _subset(read: _SampleRead, wanted: frozenset[int]) -> SampleRows:
    rows = read.rows
    if wanted == read.ids:
        return rows
    keep = np.isin(rows.series_ids, np.fromiter(wanted, dtype=np.int64, count=len(wanted)))
    return _read_only(SampleRows(rows.series_ids[keep], rows.ts[keep], rows.values[keep]))
