"""One regular time series to analyse: a KPI or a PromQL expression over a range at a step.

    fetch_series(storage, catalog, clock, source, start_ms, end_ms, step_ms) -> Series

`source` is a catalog KPI name (evaluated per calendar period by KpiEvaluator, at the grain
nearest below the step: hour, day, week, month, quarter or year) or else a PromQL expression
(evaluated with the engine at exactly `step_ms`). A PromQL expression must yield one series;
several are an error unless the caller asks to `sum` them (`reduce="sum"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from opsmetrics.catalog.kpi_model import Grain
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.clock import Clock
from opsmetrics.errors import BadDataError
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.query.promql.engine import evaluate_range
from opsmetrics.query.promql.values import InstantVector, Scalar
from opsmetrics.storage.base import Storage

Int64Array = NDArray[np.int64]
Float64Array = NDArray[np.float64]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Nominal length of each KPI grain, longest first: a step picks the longest grain within it.
_GRAIN_MS = (
    (Grain.YEAR, 365 * DAY_MS),
    (Grain.QUARTER, 90 * DAY_MS),
    (Grain.MONTH, 28 * DAY_MS),
    (Grain.WEEK, 7 * DAY_MS),
    (Grain.DAY, DAY_MS),
    (Grain.HOUR, HOUR_MS),
)
#: The most points one analysis reads: 11,000 like a Prometheus range query, times 10.
MAX_POINTS = 110_000


@dataclass(frozen=True)
class Series:
    """Regularly spaced points: `ts` (int64 ms, ascending), `values` (float64, NaN = gap)."""

    ts: Int64Array
    values: Float64Array
    name: str = "series"
    unit: str = ""
    step_ms: int = field(default=0)

    def __post_init__(self) -> None:
        if len(self.ts) != len(self.values):
            raise BadDataError(
                f"series {self.name!r}: {len(self.ts)} timestamps but {len(self.values)} values"
            )
        if self.step_ms <= 0:
            step = int(np.median(np.diff(self.ts))) if len(self.ts) > 1 else DAY_MS
            object.__setattr__(self, "step_ms", max(step, 1))

    def __len__(self) -> int:
        return len(self.values)

    @staticmethod
    def of(
        values: list[float] | Float64Array,
        step_ms: int,
        start_ms: int = 0,
        name: str = "series",
        unit: str = "",
    ) -> Series:
        """Plain numbers at a fixed step starting at `start_ms` (NaN = gap)."""
        arr = np.asarray(values, dtype=np.float64)
        ts = start_ms + np.arange(len(arr), dtype=np.int64) * np.int64(step_ms)
        return Series(ts, arr, name=name, unit=unit, step_ms=step_ms)


def fetch_series(
    storage: Storage,
    catalog: Catalog,
    clock: Clock,
    source: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    reduce: str | None = None,
) -> Series:
    """The KPI called `source`, or else the PromQL expression `source`, over [start, end]."""
    _check_range(start_ms, end_ms, step_ms)
    if source in catalog:
        return fetch_kpi(storage, catalog, clock, source, start_ms, end_ms, step_ms)
    return fetch_promql(storage, source, start_ms, end_ms, step_ms, reduce=reduce)


def fetch_kpi(
    storage: Storage,
    catalog: Catalog,
    clock: Clock,
    name: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
) -> Series:
    """A catalog KPI per calendar period (UTC) at the longest grain that fits in `step_ms`."""
    kpi = catalog.get(name)
    grain = grain_for_step(step_ms)
    got = KpiEvaluator(storage, catalog, clock).series(name, start_ms, end_ms, grain=grain)
    points = [p for p in got.points if not p.group]
    ts = np.array([p.start_ms for p in points], dtype=np.int64)
    values = np.array([np.nan if p.value is None else p.value for p in points], dtype=np.float64)
    step = dict(_GRAIN_MS)[grain]
    return Series(ts, values, name=name, unit=kpi.unit.value, step_ms=step)


def fetch_promql(
    storage: Storage,
    expr: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    reduce: str | None = None,
) -> Series:
    """A PromQL range query that yields one series (or several summed with `reduce="sum"`)."""
    if reduce not in (None, "sum"):
        raise BadDataError(f'invalid parameter "reduce": {reduce!r}; the only reducer is sum')
    value = evaluate_range(storage, expr, start_ms, end_ms, step_ms)
    ts = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    if isinstance(value, Scalar):
        return Series(ts, np.asarray(value.values, dtype=np.float64), name=expr, step_ms=step_ms)
    assert isinstance(value, InstantVector)
    values = _one_row(value, expr, reduce, len(ts))
    return Series(ts, values, name=expr, step_ms=step_ms)


def _one_row(vector: InstantVector, expr: str, reduce: str | None, steps: int) -> Float64Array:
    masked = np.where(vector.present, vector.values, np.nan)
    if len(vector) == 0:
        return np.full(steps, np.nan)
    if len(vector) == 1:
        return np.asarray(masked[0], dtype=np.float64)
    if reduce == "sum":
        summed = np.nansum(masked, axis=0)
        return np.where(vector.present.any(axis=0), summed, np.nan)
    first = ", ".join(_labels_text(lab) for lab in vector.labels[:3])
    raise BadDataError(
        f'invalid parameter "query": {expr!r} returns {len(vector)} series ({first}…) but '
        f"analysis needs one; wrap it in sum(...) (e.g. sum({expr})) or pass reduce=sum"
    )


def _labels_text(labels: tuple[tuple[str, str], ...]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"


def grain_for_step(step_ms: int) -> Grain:
    """The longest KPI grain no longer than `step_ms` (hour for anything shorter)."""
    for grain, length in _GRAIN_MS:
        if step_ms >= length:
            return grain
    return Grain.HOUR


def _check_range(start_ms: int, end_ms: int, step_ms: int) -> None:
    if step_ms <= 0:
        raise BadDataError('invalid parameter "step": it must be a positive duration, e.g. 5m')
    if end_ms <= start_ms:
        raise BadDataError('invalid parameter "end": it must be after "start"')
    if (end_ms - start_ms) // step_ms > MAX_POINTS:
        raise BadDataError(
            f'invalid parameter "step": more than {MAX_POINTS:,} points between start and end; '
            "use a larger step or a shorter range"
        )
