"""The values a PromQL expression evaluates to, over all evaluation steps at once.

An instant query is a range query with one step. Every value holds a column per step of
`EvalContext.steps`, so operators and functions work on whole (series × steps) arrays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, overload

import numpy as np
import numpy.typing as npt
import promql_parser as pp

from opsmetrics.errors import BadDataError, UserError
from opsmetrics.model import METRIC_NAME, Float64Array, Int64Array, Labels
from opsmetrics.query.promql.reads import SeriesReader

BoolArray = npt.NDArray[np.bool_]
ArrayT = TypeVar("ArrayT", Int64Array, Float64Array)
LOOKBACK_MS = 5 * 60_000


class QueryError(BadDataError):
    """An expression that cannot be evaluated (Prometheus errorType bad_data, 400)."""

    reason = "query"


class QueryExecutionError(QueryError):
    """An error while evaluating a well-formed query (errorType execution, 422, as Prometheus),
    e.g. two series with the same labels or a many-to-many match."""

    error_type = "execution"


class QueryLimitError(UserError):
    """Too many samples loaded or points produced (422 as in Prometheus: errorType execution)."""

    error_type = "execution"
    reason = "query_limit"


class QueryTimeoutError(UserError):
    """The query ran past its timeout (503, errorType timeout, as in Prometheus)."""

    error_type = "timeout"
    reason = "query_timeout"


@dataclass(slots=True)
class InstantVector:
    """One row per series; `present[i, j]` says whether series i has a value at step j."""

    labels: list[Labels]
    values: Float64Array  # shape (rows, steps)
    present: BoolArray  # shape (rows, steps)
    #: Timestamp (ms) of the sample behind each value, for timestamp(); None = the step time.
    sample_ts: Int64Array | None = None

    @staticmethod
    def empty(steps: int) -> InstantVector:
        return InstantVector([], np.empty((0, steps)), np.empty((0, steps), dtype=bool))

    def __len__(self) -> int:
        return len(self.labels)


class SeriesViews(Sequence[ArrayT]):
    """Item i is series i's part of a flat array, stored series `stored[i]`'s
    `flat[offsets[k]:offsets[k + 1]]`: a view made when asked for, so a range vector need not
    hold one array per series."""

    __slots__ = ("_flat", "_offsets", "_stored")
    _flat: ArrayT
    _offsets: Int64Array
    _stored: Int64Array

    def __init__(self, flat: ArrayT, offsets: Int64Array, stored: Int64Array) -> None:
        self._flat = flat
        self._offsets = offsets
        self._stored = stored

    def __len__(self) -> int:
        return len(self._stored)

    @overload
    def __getitem__(self, i: int) -> ArrayT: ...

    @overload
    def __getitem__(self, i: slice) -> list[ArrayT]: ...

    def __getitem__(self, i: int | slice) -> ArrayT | list[ArrayT]:
        if isinstance(i, slice):
            return [self[k] for k in range(len(self))[i]]
        k = int(self._stored[i])
        part: ArrayT = self._flat[int(self._offsets[k]) : int(self._offsets[k + 1])]
        return part

    def __iter__(self) -> Iterator[ArrayT]:
        return (self[i] for i in range(len(self)))


@dataclass(slots=True)
class RangeVector:
    """A matrix selector or subquery: raw points per series and a window per step.

    Series i (labels[i]) is stored series `stored[i]`: the points of all stored series lie end
    to end in `flat_ts`/`flat_values`, stored series k at offsets[k]:offsets[k + 1]. A selector
    keeps the storage read's order there (by series id) and its labels' order in `labels`;
    `ts[i]`/`values[i]` are views of series i's part. The window of step j is
    (window_end[j] - range_ms, window_end[j]] (left-open), where window_end already includes
    `offset` and `@`. Stale markers are already removed.
    """

    labels: list[Labels]
    flat_ts: Int64Array
    flat_values: Float64Array
    offsets: Int64Array  # shape (series + 1,), in stored order
    stored: Int64Array  # shape (series,): a permutation
    range_ms: int
    window_end: Int64Array  # shape (steps,)

    @staticmethod
    def empty(range_ms: int, window_end: Int64Array) -> RangeVector:
        none = np.zeros(0, dtype=np.int64)
        return RangeVector([], none, np.zeros(0), np.zeros(1, np.int64), none, range_ms, window_end)

    @staticmethod
    def of_series(
        labels: list[Labels],
        ts: Sequence[Int64Array],
        values: Sequence[Float64Array],
        range_ms: int,
        window_end: Int64Array,
    ) -> RangeVector:
        """A range vector of one array of timestamps and one of values per series."""
        if not labels:
            return RangeVector.empty(range_ms, window_end)
        lengths = np.array([len(t) for t in ts], dtype=np.int64)
        return RangeVector(
            labels,
            np.concatenate(ts).astype(np.int64),
            np.concatenate(values).astype(np.float64),
            np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
            np.arange(len(labels), dtype=np.int64),
            range_ms,
            window_end,
        )

    @property
    def ts(self) -> SeriesViews[Int64Array]:
        return SeriesViews(self.flat_ts, self.offsets, self.stored)

    @property
    def values(self) -> SeriesViews[Float64Array]:
        return SeriesViews(self.flat_values, self.offsets, self.stored)

    def stored_labels(self) -> list[Labels]:
        """The labels of the stored series, stored series 0 first."""
        return [self.labels[i] for i in np.argsort(self.stored).tolist()]

    def stored_slice(self, part: slice, stored_labels: list[Labels]) -> RangeVector:
        """Stored series `part` (a slice without a step), as a range vector of views;
        `stored_labels` is what `stored_labels()` returns."""
        start, stop, _ = part.indices(len(self.labels))
        stop = max(start, stop)
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return RangeVector(
            stored_labels[start:stop],
            self.flat_ts[lo:hi],
            self.flat_values[lo:hi],
            self.offsets[start : stop + 1] - lo,
            np.arange(stop - start, dtype=np.int64),
            self.range_ms,
            self.window_end,
        )

    def bounds(self, i: int) -> tuple[Int64Array, Int64Array]:
        """For series i: index of the first and one past the last point in each step's window."""
        ts = self.ts[i]
        lo = np.searchsorted(ts, self.window_end - self.range_ms, side="right")
        hi = np.searchsorted(ts, self.window_end, side="right")
        return lo, hi


@dataclass(slots=True)
class Scalar:
    values: Float64Array  # shape (steps,)


@dataclass(slots=True)
class StringValue:
    value: str


Value = InstantVector | RangeVector | Scalar | StringValue


@dataclass(slots=True)
class EvalContext:
    storage: SeriesReader
    steps: Int64Array  # evaluation timestamps, ms
    start_ms: int
    end_ms: int
    step_ms: int
    lookback_ms: int = LOOKBACK_MS
    max_samples: int = 50_000_000
    deadline: float = field(default_factory=lambda: time.monotonic() + 120.0)
    samples_loaded: int = 0
    #: Serve eligible window functions from rollups (rollup_eval.py); False forces raw samples.
    use_rollups: bool = True

    def count_samples(self, n: int) -> None:
        self.samples_loaded += n
        if self.samples_loaded > self.max_samples:
            raise QueryLimitError(
                "query processing would load too many samples into memory in query execution "
                f"(more than {self.max_samples}); narrow the selectors or the time range"
            )

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeoutError("query timed out in expression evaluation")


def drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != METRIC_NAME)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What a function implementation may need beyond its evaluated arguments."""

    name: str
    arg_exprs: Sequence[pp.Expr]


FunctionImpl = Callable[[list[Value], CallInfo, EvalContext], Value]


@dataclass(frozen=True, slots=True)
class FunctionDef:
    name: str
    impl: FunctionImpl
    #: Argument kinds, e.g. ("range",), ("instant", "scalar"), ("instant", "string", ...).
    arg_kinds: tuple[str, ...]
    #: How many trailing arguments are optional (e.g. round(v, to_nearest=1)).
    optional: int = 0
    variadic: bool = False


#: Every PromQL function by name; filled by the modules of opsmetrics.query.promql.functions.
FUNCTIONS: dict[str, FunctionDef] = {}


def register(
    name: str, arg_kinds: tuple[str, ...], *, optional: int = 0, variadic: bool = False
) -> Callable[[FunctionImpl], FunctionImpl]:
    def wrap(impl: FunctionImpl) -> FunctionImpl:
        FUNCTIONS[name] = FunctionDef(name, impl, arg_kinds, optional, variadic)
        return impl

    return wrap
