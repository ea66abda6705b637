"""Core records shared by every layer: series labels, sample batches, events, annotations."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

#: A series identity: label pairs sorted by name, `__name__` included.
Labels = tuple[tuple[str, str], ...]

METRIC_NAME = "__name__"
#: Prometheus's staleness marker: a NaN with this exact bit pattern means "series ended".
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = float(np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0])

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
Int32Array = npt.NDArray[np.int32]


def make_labels(pairs: dict[str, str]) -> Labels:
    """Canonical label set: sorted by name, empty values dropped (Prometheus semantics)."""
    return tuple(sorted((k, v) for k, v in pairs.items() if v != ""))


def metric_name(labels: Labels) -> str:
    for name, value in labels:
        if name == METRIC_NAME:
            return value
    return ""


def is_stale(values: Float64Array) -> npt.NDArray[np.bool_]:
    stale: npt.NDArray[np.bool_] = values.view(np.uint64) == STALE_NAN_BITS
    return stale


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Samples in columnar form: `series[i]` holds the labels of sample rows where `index == i`."""

    series: list[Labels]
    index: Int32Array
    ts: Int64Array
    values: Float64Array

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @staticmethod
    def empty() -> SampleBatch:
        return SampleBatch(
            [], np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64)
        )


class SampleBatchBuilder:
    """Accumulates rows from a decoder, then builds a SampleBatch in one go."""

    def __init__(self) -> None:
        self._ids: dict[Labels, int] = {}
        self._series: list[Labels] = []
        self._index: list[int] = []
        self._ts: list[int] = []
        self._values: list[float] = []

    def series_index(self, labels: Labels) -> int:
        idx = self._ids.get(labels)
        if idx is None:
            idx = self._ids[labels] = len(self._series)
            self._series.append(labels)
        return idx

    def add(self, labels: Labels, ts: int, value: float) -> None:
        self._index.append(self.series_index(labels))
        self._ts.append(ts)
        self._values.append(value)

    def add_many(self, idx: int, ts: list[int], values: list[float]) -> None:
        self._index.extend([idx] * len(ts))
        self._ts.extend(ts)
        self._values.extend(values)

    def __len__(self) -> int:
        return len(self._ts)

    def build(self) -> SampleBatch:
        return SampleBatch(
            self._series,
            np.array(self._index, dtype=np.int32),
            np.array(self._ts, dtype=np.int64),
            np.array(self._values, dtype=np.float64),
        )


class MetricType(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    GAUGE_HISTOGRAM = "gaugehistogram"
    SUMMARY = "summary"
    INFO = "info"
    STATESET = "stateset"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MetricMetadata:
    metric: str
    type: MetricType
    help: str = ""
    unit: str = ""


Scalar = str | int | float | bool | None


class Event(msgspec.Struct, frozen=True, gc=False):
    """A business fact. `value` is numeric (money in minor units, a score…).

    Not tracked by the garbage collector (`gc=False`): its fields are strings, numbers and a
    dict of scalars, so it can never be part of a reference cycle, and batches of millions
    (a SQL source's pull, a backfill) no longer set off full collections."""

    name: str
    ts: int
    entity: str = ""
    value: float | None = None
    props: dict[str, Scalar] = msgspec.field(default_factory=dict)
    id: str | None = None


class Annotation(msgspec.Struct, frozen=True):
    """A marked moment or span: a deploy, an incident, a campaign, a definition change."""

    id: str
    ts: int
    title: str
    end: int | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    text: str = ""


class MatchOp(enum.Enum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """A label matcher; regexes are fully anchored, as in Prometheus."""

    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def of(name: str, op: MatchOp | str, value: str) -> Matcher:
        op = MatchOp(op)
        regex = None
        if op in (MatchOp.RE, MatchOp.NRE):
            regex = re.compile(f"(?s:{value})")
        return Matcher(name, op, value, regex)

    def matches(self, value: str) -> bool:
        match self.op:
            case MatchOp.EQ:
                return value == self.value
            case MatchOp.NE:
                return value != self.value
            case MatchOp.RE:
                assert self._regex is not None
                return self._regex.fullmatch(value) is not None
            case MatchOp.NRE:
                assert self._regex is not None
                return self._regex.fullmatch(value) is None

    def matches_labels(self, labels: Labels) -> bool:
        # A missing label has the empty value.
        return self.matches(dict(labels).get(self.name, ""))


@dataclass(frozen=True, slots=True)
class Series:
    id: int
    labels: Labels


@dataclass(frozen=True, slots=True)
class SampleRows:
    """Samples read back, sorted by (series id, ts)."""

    series_ids: Int64Array
    ts: Int64Array
    values: Float64Array


JsonDict = dict[str, Any]
