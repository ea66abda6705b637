"""Capacity and target outlook from a forecast.

- `capacity(series, limit, horizon_steps)`: when the forecast mean first crosses `limit`
  (upwards when the latest value is below it, else downwards), with an interval: the earliest
  time the optimistic bound crosses and the latest time the pessimistic bound has crossed
  (None when it does not within the horizon).
- `outlook(series, target, period_end_ms, …)`: the probability that the value for the period
  (the last value, the sum or the mean of the period's points) meets the target, with the
  forecast's normal predictive distribution for the points still to come. For sums and means
  the per-step errors are taken as fully correlated: a conservative (wide) spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from scipy import stats

from opsmetrics.analysis.anomalies import fmt, unit_suffix, when_text
from opsmetrics.analysis.forecast import Forecast, forecast
from opsmetrics.analysis.series import Series
from opsmetrics.errors import BadDataError

AGGREGATIONS = ("last", "sum", "mean")
PERIODS = ("month", "quarter")


@dataclass(frozen=True)
class Capacity:
    limit: float
    direction: str  # "up" | "down"
    current: float
    eta_ms: int | None  # the mean crosses
    earliest_ms: int | None  # the optimistic bound crosses
    latest_ms: int | None  # the pessimistic bound crosses (None: not within the horizon)
    forecast: Forecast
    explanation: str


@dataclass(frozen=True)
class Outlook:
    target: float
    direction: str  # higher_is_better | lower_is_better
    agg: str
    period_end_ms: int
    observed: float  # the period's aggregate so far (NaN when nothing observed yet)
    expected: float  # expected value for the whole period
    low: float
    high: float  # forecast interval of the period value at the forecast's level
    probability: float  # of meeting the target
    forecast: Forecast


def capacity(
    series: Series, limit: float, horizon_steps: int, season_steps: int | None = None
) -> Capacity:
    fc = forecast(series, horizon_steps, season_steps)
    ok = np.flatnonzero(np.isfinite(series.values))
    current = float(series.values[ok[-1]])
    up = current < limit
    optimistic, pessimistic = (fc.upper, fc.lower) if up else (fc.lower, fc.upper)
    eta = _first(fc.ts, _crossed(fc.mean, limit, up))
    earliest = _first(fc.ts, _crossed(optimistic, limit, up))
    latest = _first(fc.ts, _crossed(pessimistic, limit, up))
    text = _capacity_text(series, limit, up, eta, earliest, latest)
    return Capacity(limit, "up" if up else "down", current, eta, earliest, latest, fc, text)


def _crossed(values: np.ndarray, limit: float, up: bool) -> np.ndarray:
    return values >= limit if up else values <= limit


def _first(ts: np.ndarray, mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(ts[hits[0]]) if len(hits) else None


def _capacity_text(
    series: Series, limit: float, up: bool, eta: int | None, lo: int | None, hi: int | None
) -> str:
    what = f"{series.name} reaches {fmt(limit, series.unit)}{unit_suffix(series.unit)}"
    if lo is None:
        return f"{what}: not within the forecast horizon (not even at the interval's edge)"
    if eta is None:
        return f"{what}: possible from {when_text(lo)}, but the forecast mean stays short of it"
    later = when_text(hi) if hi is not None else "beyond the horizon"
    return f"{what} around {when_text(eta)} (between {when_text(lo)} and {later})"


def outlook(
    series: Series,
    target: float,
    period_end_ms: int,
    *,
    period_start_ms: int | None = None,
    agg: str = "last",
    direction: str = "higher_is_better",
    season_steps: int | None = None,
) -> Outlook:
    """Probability that the period ending `period_end_ms` meets `target`."""
    if agg not in AGGREGATIONS:
        raise BadDataError(f'invalid parameter "agg": {agg!r}; use one of last, sum, mean')
    last_ts = int(series.ts[np.flatnonzero(np.isfinite(series.values))[-1]])
    steps = math.ceil((period_end_ms - last_ts) / series.step_ms) - 1
    if steps < 1:
        raise BadDataError(
            'invalid parameter "end": the period has already ended; pick a later period end'
        )
    fc = forecast(series, steps, season_steps)
    z = float(stats.norm.ppf(0.5 + fc.level / 2))
    sd = (fc.upper - fc.lower) / (2 * z)
    start = period_start_ms if period_start_ms is not None else last_ts + series.step_ms
    inside = (series.ts >= start) & np.isfinite(series.values)
    seen = series.values[inside]
    mean, spread, observed = _period_value(agg, seen, fc.mean, sd)
    prob = _probability(mean, spread, target, direction)
    return Outlook(
        target,
        direction,
        agg,
        period_end_ms,
        observed,
        mean,
        mean - z * spread,
        mean + z * spread,
        prob,
        fc,
    )


def period_bounds(kind: str, now_ms: int) -> tuple[int, int]:
    """[start, end) in ms of the calendar month or quarter (UTC) holding `now_ms`."""
    if kind not in PERIODS:
        raise BadDataError(f'invalid parameter "period": {kind!r}; use month or quarter')
    day = datetime.fromtimestamp(now_ms / 1000, UTC)
    first_month = day.month if kind == "month" else (day.month - 1) // 3 * 3 + 1
    start = day.replace(month=first_month, day=1, hour=0, minute=0, second=0, microsecond=0)
    years, month0 = divmod(first_month - 1 + (1 if kind == "month" else 3), 12)
    end = start.replace(year=start.year + years, month=month0 + 1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _period_value(
    agg: str, seen: np.ndarray, mean: np.ndarray, sd: np.ndarray
) -> tuple[float, float, float]:
    """(expected, sd, observed so far) of the period's value."""
    if agg == "last":
        return float(mean[-1]), float(sd[-1]), float(seen[-1]) if len(seen) else math.nan
    total = float(seen.sum()) + float(mean.sum())
    spread = float(sd.sum())
    observed = float(seen.sum()) if len(seen) else math.nan
    if agg == "sum":
        return total, spread, observed
    n = len(seen) + len(mean)
    return total / n, spread / n, float(seen.mean()) if len(seen) else math.nan


def _probability(mean: float, sd: float, target: float, direction: str) -> float:
    if direction == "lower_is_better":
        return float(stats.norm.cdf(target, mean, sd)) if sd > 0 else float(mean <= target)
    return float(stats.norm.sf(target, mean, sd)) if sd > 0 else float(mean >= target)
