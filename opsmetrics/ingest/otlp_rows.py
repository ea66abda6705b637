"""The rows an OTLP request maps to, and the points it does not store (for partial_success)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from opsmetrics.ingest.proto import otlp_view_pb2 as view
from opsmetrics.model import Float64Array, Int32Array, Int64Array, Labels, SampleBatch


class Rows:
    """The samples of one batch. A series' labels are built once, then found by a cheap key.

    Rows come one at a time (`append`) or as whole columns (`extend`), in order."""

    def __init__(self) -> None:
        self.series: list[Labels] = []
        self._by_labels: dict[Labels, int] = {}
        self._by_key: dict[Hashable, int] = {}
        self._index: list[int] = []
        self._ts: list[int] = []
        self._values: list[float] = []
        self._chunks: list[tuple[Int32Array, Int64Array, Float64Array]] = []

    def find(self, key: Hashable) -> int | None:
        return self._by_key.get(key)

    def register(self, key: Hashable, labels: Labels) -> int:
        index = self._by_key[key] = self._by_labels.setdefault(labels, len(self.series))
        if index == len(self.series):
            self.series.append(labels)
        return index

    def append(self, index: int, ts: int, value: float) -> None:
        self._index.append(index)
        self._ts.append(ts)
        self._values.append(value)

    def extend(self, index: Int32Array, ts: Int64Array, values: Float64Array) -> None:
        self._flush()
        self._chunks.append((index, ts, values))

    def _flush(self) -> None:
        if self._ts:
            index = np.array(self._index, np.int32)
            self._chunks.append((index, np.array(self._ts, np.int64), np.array(self._values)))
            self._index, self._ts, self._values = [], [], []

    def build(self) -> SampleBatch:
        self._flush()
        if not self._chunks:
            empty = SampleBatch.empty()
            return SampleBatch(self.series, empty.index, empty.ts, empty.values)
        index, ts, values = (np.concatenate(column) for column in zip(*self._chunks, strict=True))
        return SampleBatch(self.series, index, ts, values)


@dataclass(slots=True)
class Rejects:
    """Data points not stored, by reason, with the first metric each reason was seen in."""

    count: int = 0
    reasons: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, points: int, reason: str, metric: view.MetricView) -> None:
        if points:
            seen, first = self.reasons.get(reason, (0, metric.name))
            self.reasons[reason] = (seen + points, first)
            self.count += points

    def message(self) -> str:
        if not self.count:
            return ""
        parts = [f"{n} {reason} (metric {name!r})" for reason, (n, name) in self.reasons.items()]
        return f"rejected {self.count} data points: " + "; ".join(parts)
