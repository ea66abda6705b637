"""What every dashboard widget computes from: the services, the time range, a per-request memo.

The range picks one PromQL step (≤ ~300 points, on 5m/1h boundaries so long ranges read the
rollups) and one KPI grain (hours up to 3 days, days up to 400 days, weeks beyond).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from opsmetrics.alerting.model import Alert
from opsmetrics.catalog.kpi_model import Grain
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.clock import Clock
from opsmetrics.query.kpi import Compare, KpiEvaluator, KpiPoint, KpiSeries
from opsmetrics.query.kpi import periods as cal
from opsmetrics.query.kpi.model import Values
from opsmetrics.query.promql.engine import evaluate_instant, evaluate_range
from opsmetrics.query.promql.values import InstantVector, QueryError, Scalar, Value
from opsmetrics.storage.base import Storage

T = TypeVar("T")
MAX_POINTS = 300
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
STEPS_MS = (15_000, 30_000, MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR,
            6 * HOUR, 12 * HOUR, DAY, 7 * DAY)  # fmt: skip
#: The seed's and the UI's compare names → the KPI evaluator's.
#: How long KPI values and range queries are reused across requests (the KPI list's TTL).
SHARED_TTL_MS = 60_000
MAX_CACHED = 10_000
COMPARES = {"previous_period": Compare.PREVIOUS, "previous_year": Compare.YOY}


class AlertLister(Protocol):
    def active_alerts(self) -> list[Alert]: ...


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_ms: int
    end_ms: int
    step_ms: int
    grain: Grain

    @staticmethod
    def of(start_ms: int, end_ms: int, step_ms: int | None = None) -> TimeRange:
        span = max(end_ms - start_ms, 1)
        step = step_ms or next((s for s in STEPS_MS if span / s <= MAX_POINTS), STEPS_MS[-1])
        grain = Grain.HOUR if span <= 3 * DAY else Grain.DAY if span <= 400 * DAY else Grain.WEEK
        return TimeRange(start_ms, end_ms, step, grain)

    @property
    def span_ms(self) -> int:
        return self.end_ms - self.start_ms

    def steps(self) -> tuple[int, int]:
        """The first and last evaluation time of a PromQL range query, on step boundaries."""
        first = -(-self.start_ms // self.step_ms) * self.step_ms
        last = max(first, self.end_ms // self.step_ms * self.step_ms)
        return first, last

    def ending(self, range_ms: int | None) -> TimeRange:
        """The range of a widget with its own `range:`, ending where this one ends."""
        return self if range_ms is None else TimeRange.of(self.end_ms - range_ms, self.end_ms)

    def shifted(self, by_ms: int) -> TimeRange:
        return TimeRange(self.start_ms - by_ms, self.end_ms - by_ms, self.step_ms, self.grain)


class Memo:
    """Values by key, each computed once even when threads ask for it at the same time, and
    kept `ttl_ms` of clock time (forever without a clock). Failures are not kept."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock
        self._items: dict[Any, tuple[int, Future[Any]]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], T], ttl_ms: int = SHARED_TTL_MS) -> T:
        now = self._clock.now_ms() if self._clock is not None else 0
        with self._lock:
            hit = self._items.get(key)
            fresh = hit is not None and (self._clock is None or now - hit[0] < ttl_ms)
            if hit is not None and fresh:
                future = hit[1]
                owner = False
            else:
                if len(self._items) > MAX_CACHED:
                    self._items.clear()
                future, owner = Future(), True
                self._items[key] = (now, future)
        if owner:
            self._fill(key, future, compute)
        found: T = future.result()
        return found

    def _fill(self, key: Any, future: Future[Any], compute: Callable[[], Any]) -> None:
        try:
            future.set_result(compute())
        except BaseException as exc:
            with self._lock:
                if self._items.get(key, (0, None))[1] is future:
                    del self._items[key]
            future.set_exception(exc)


@dataclass
class DashboardContext:
    """One request's view: its range, a per-request memo, and the memo shared by requests
    (KPI values and range queries, kept for SHARED_TTL_MS as the KPI list keeps values)."""

    storage: Storage
    catalog: Catalog
    evaluator: KpiEvaluator
    range: TimeRange
    alerts: AlertLister | None = None
    shared: Memo | None = None
    #: Whether an alert (by fingerprint) has been acknowledged; None: nobody acknowledges.
    acked: Callable[[str], bool] | None = None
    #: The notes on the stale sources a KPI (by name) reads; None: freshness is not watched.
    stale: Callable[[str], list[str]] | None = None
    _memo: Memo = field(default_factory=Memo)

    def cached(self, key: Any, compute: Callable[[], T], ttl_ms: int = SHARED_TTL_MS) -> T:
        if self.shared is None:
            return self._memo.get(key, compute)
        shared = self.shared
        return self._memo.get(key, lambda: shared.get(key, compute, ttl_ms))

    def analysed(self, kind: str, points: list[list[Any]], compute: Callable[[], T]) -> T:
        """An analysis (forecast, anomalies) of `points`, shared while the points are the same."""
        key = (kind, tuple((p[0], p[1]) for p in points))
        return self.cached(key, compute)

    def kpi_values(self, key: Any, compute: Callable[[], Values]) -> Values:
        """A KPI's values for a list of periods, shared by every formula of the dashboard
        that reads the KPI (revenue, orders and revenue / orders compute revenue once)."""
        return self.cached(key, compute)

    def kpi_series(self, name: str, rng: TimeRange, by: tuple[str, ...] = ()) -> KpiSeries:
        """Values of the periods (the range's grain) overlapping the range; the key is the
        first and last period, so requests a few seconds apart share the answer."""
        first = cal.floor(rng.start_ms, rng.grain, "UTC")
        last = cal.floor(max(rng.start_ms, rng.end_ms - 1), rng.grain, "UTC")
        key = ("series", name, first, last, rng.grain, by)
        return self.cached(
            key,
            lambda: self.evaluator.series(
                name, first, last + 1, grain=rng.grain, by=by, shared=self.kpi_values
            ),
        )

    def kpi_latest(self, name: str, compare: str, by: tuple[str, ...] = ()) -> list[KpiPoint]:
        """The last complete period (the KPI's own grain) before the range end, as the KPI
        list's current value is; one point per group with `by`."""
        kpi = self.catalog.get(name)
        end = self.range.end_ms
        start = cal.add(cal.floor(end, kpi.grain, "UTC"), kpi.grain, -1, "UTC")
        cmp = COMPARES.get(compare)

        def compute() -> list[KpiPoint]:
            got = self.evaluator.series(
                name, start, start + 1, compare=cmp, by=by, shared=self.kpi_values
            )
            return got.points

        return self.cached(("latest", name, start, compare, by), compute)

    def promql_range(self, expr: str, rng: TimeRange) -> InstantVector:
        first, last = rng.steps()
        key = ("range", expr, first, last, rng.step_ms)
        ttl = min(SHARED_TTL_MS, rng.step_ms)
        value = self.cached(
            key, lambda: evaluate_range(self.storage, expr, first, last, rng.step_ms), ttl
        )
        return as_vector(value, (last - first) // rng.step_ms + 1)

    def promql_instant(self, expr: str, at_ms: int) -> InstantVector:
        key = ("instant", expr, at_ms)
        value = self._memo.get(key, lambda: evaluate_instant(self.storage, expr, at_ms))
        return as_vector(value, 1)


def as_vector(value: Value, steps: int) -> InstantVector:
    """A scalar as a one-series vector; anything else but a vector is an error."""
    if isinstance(value, Scalar):
        values = np.asarray(value.values, dtype=np.float64).reshape(1, -1)
        return InstantVector([()], values, np.ones((1, values.shape[1]), dtype=bool))
    if not isinstance(value, InstantVector):
        raise QueryError("the query must return an instant vector or a scalar")
    return value


def vector_points(vector: InstantVector, row: int, first_ms: int, step_ms: int) -> list[list[Any]]:
    """One row of a range result as [[ts, value|null], ...] (gaps as null)."""
    values = vector.values[row]
    present = vector.present[row]
    out: list[list[Any]] = []
    for j in range(values.shape[0]):
        v = float(values[j])
        ok = bool(present[j]) and np.isfinite(v)
        out.append([first_ms + j * step_ms, v if ok else None])
    return out
