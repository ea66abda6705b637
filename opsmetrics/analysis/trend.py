"""Trends: short-term and long-term views, growth rates and seasonal decomposition (STL).

- Views: SHORT (the last 24 h at 5 min) and LONG (the last 90 d at 1 d) of any KPI or PromQL.
- Growth: period over period (value vs the value one period earlier, as a fraction) and the
  compound growth rate per period between the first and the last value:
  (last / first) ** (period / elapsed) − 1 (only for positive values).
- Decomposition: statsmodels STL (robust) into trend + seasonal + remainder, which add up to
  the series (gaps are interpolated first and reported as such).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from opsmetrics.analysis.series import DAY_MS, Float64Array, Series
from opsmetrics.errors import BadDataError

MINUTE_MS = 60_000
#: (range, step) of the two standard views.
#: STL's time grows with points x season. A week of 5-minute points with a daily season
#: (2,016 x 288) takes seconds; 30 days of them (the default range) took 40 s, holding a server
#: thread all along (found by tests/test_api_schema.py). Past this, decomposition is refused.
MAX_STL_WORK = 600_000
VIEWS = {"short": (DAY_MS, 5 * MINUTE_MS), "long": (90 * DAY_MS, DAY_MS)}


@dataclass(frozen=True)
class Growth:
    period_ms: int
    latest: float
    previous: float  # the value one period before the latest (NaN when outside the data)
    period_over_period: float  # latest / previous − 1
    compound_rate: float  # per period, first → last value
    slope_per_day: float  # least-squares slope of the values, per day


@dataclass(frozen=True)
class Decomposition:
    period: int
    observed: Float64Array
    trend: Float64Array
    seasonal: Float64Array
    remainder: Float64Array
    filled: int  # gaps interpolated before decomposing


def view_window(view: str, now_ms: int) -> tuple[int, int, int]:
    """(start, end, step) of the `short` or `long` view ending at `now_ms`."""
    if view not in VIEWS:
        raise BadDataError(f'invalid parameter "view": {view!r}; use short or long')
    span, step = VIEWS[view]
    end = now_ms - now_ms % step
    return end - span, end, step


def period_over_period(values: Float64Array, lag: int) -> Float64Array:
    """values[t] / values[t − lag] − 1 for every t (NaN for the first `lag` and zero bases)."""
    out = np.full(len(values), np.nan)
    if lag <= 0 or lag >= len(values):
        return out
    base = values[:-lag]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[lag:] = np.where(base != 0, values[lag:] / base - 1.0, np.nan)
    return out


def compound_growth_rate(first: float, last: float, periods: float) -> float:
    """The constant rate per period that turns `first` into `last` over `periods` periods."""
    if periods <= 0 or not (first > 0 and last > 0):
        return math.nan
    return float((last / first) ** (1.0 / periods) - 1.0)


def growth(series: Series, period_ms: int | None = None) -> Growth:
    """Growth rates of `series` per `period_ms` (default: one step)."""
    period = period_ms or series.step_ms
    ok = np.flatnonzero(np.isfinite(series.values))
    if len(ok) < 2:
        raise BadDataError(f"series {series.name!r} needs two values for growth rates")
    first, last = int(ok[0]), int(ok[-1])
    lag = max(1, round(period / series.step_ms))
    latest = float(series.values[last])
    prev = float(series.values[last - lag]) if last - lag >= 0 else math.nan
    pop = latest / prev - 1.0 if prev not in (0.0,) and math.isfinite(prev) else math.nan
    elapsed = (int(series.ts[last]) - int(series.ts[first])) / period
    cgr = compound_growth_rate(float(series.values[first]), latest, elapsed)
    fit = stats.linregress(series.ts[ok] / DAY_MS, series.values[ok])
    return Growth(period, latest, prev, pop, cgr, float(fit.slope))


def decompose(series: Series, period: int) -> Decomposition:
    """STL into trend, seasonal and remainder (robust to outliers); needs two periods."""
    from statsmodels.tsa.seasonal import STL

    y = np.asarray(series.values, dtype=np.float64)
    ok = np.isfinite(y)
    if period < 2 or ok.sum() < 2 * period:
        raise BadDataError(
            f'invalid parameter "season": decomposing needs two seasons of {period} points '
            f"and the series has {int(ok.sum())} values; use a longer range or a smaller season"
        )
    if len(y) * period > MAX_STL_WORK:
        raise BadDataError(
            f"decomposing {len(y)} points with a season of {period} is too much work for one "
            f"request (points x season over {MAX_STL_WORK:,}); use a coarser step, a shorter "
            "range or a smaller season"
        )
    idx = np.arange(len(y))
    filled = np.interp(idx, idx[ok], y[ok])
    result = STL(filled, period=period, robust=True).fit()
    trend = np.asarray(result.trend, dtype=np.float64)
    seasonal = np.asarray(result.seasonal, dtype=np.float64)
    remainder = filled - trend - seasonal
    return Decomposition(period, filled, trend, seasonal, remainder, int((~ok).sum()))
