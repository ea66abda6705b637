"""Anomalies: points far outside their seasonal baseline, with a score and an explanation.

The score is a robust z: (value − median) / σ, where median and σ (1.4826 × MAD) come from the
same hour-of-day × day-of-week slot in the past weeks (baseline.py). A point is flagged when
|score| > `threshold`; its expected band is median ± threshold × σ, so "outside the band" and
"flagged" are the same thing. Level shifts are found separately (changepoints.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from opsmetrics.analysis.baseline import LEVEL_DAY, LEVEL_WEEK, Baseline, seasonal_baseline
from opsmetrics.analysis.changepoints import ChangePoint, change_points
from opsmetrics.analysis.series import DAY_MS, Series
from opsmetrics.errors import BadDataError

DEFAULT_THRESHOLD = 5.0
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class Anomaly:
    ts: int
    value: float
    expected: float
    expected_low: float
    expected_high: float
    score: float
    explanation: str


@dataclass(frozen=True)
class AnomalyReport:
    series: Series
    baseline: Baseline
    threshold: float
    anomalies: list[Anomaly]
    change_points: list[ChangePoint]

    def band(self) -> tuple[np.ndarray, np.ndarray]:
        width = self.threshold * self.baseline.scale
        return self.baseline.expected - width, self.baseline.expected + width


def scores(series: Series, baseline: Baseline) -> np.ndarray:
    """Robust z per point; NaN where the point or its baseline is missing."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (series.values - baseline.expected) / baseline.scale


def detect(
    series: Series,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    with_change_points: bool = True,
    penalty: float | None = None,
) -> AnomalyReport:
    """Flag every point with |robust z| > threshold; find level shifts too."""
    _check_threshold(threshold)
    baseline = seasonal_baseline(series)
    z = scores(series, baseline)
    flagged = np.flatnonzero(np.abs(np.nan_to_num(z, nan=0.0)) > threshold)
    found = [_anomaly(series, baseline, z, int(i), threshold) for i in flagged]
    shifts = change_points(series, penalty=penalty) if with_change_points else []
    return AnomalyReport(series, baseline, threshold, found, shifts)


def is_anomalous_now(
    series: Series, at: int, *, threshold: float = DEFAULT_THRESHOLD
) -> tuple[bool, float, str]:
    """The alert condition: is the latest point at or before `at` (ms) anomalous?

    Returns (flagged, score, explanation); score is NaN and the explanation says why when the
    point is missing or there is not yet a day of history to compare it with.
    """
    _check_threshold(threshold)
    upto = int(np.searchsorted(series.ts, at, side="right"))
    if upto == 0:
        return False, math.nan, f"{series.name}: no point at or before the time asked"
    # Only history up to `at` matters; the baseline for the last point reads nothing later.
    cut = Series(series.ts[:upto], series.values[:upto], series.name, series.unit, series.step_ms)
    baseline = seasonal_baseline(cut)
    i = upto - 1
    z = scores(cut, baseline)
    if math.isnan(cut.values[i]):
        return False, math.nan, f"{series.name}: no value at {when_text(int(cut.ts[i]))}"
    if math.isnan(z[i]):
        return False, math.nan, f"{series.name}: not enough history for a baseline (needs 2 days)"
    found = _anomaly(cut, baseline, z, i, threshold)
    return bool(abs(z[i]) > threshold), float(z[i]), found.explanation


def _anomaly(series: Series, b: Baseline, z: np.ndarray, i: int, threshold: float) -> Anomaly:
    value, expected = float(series.values[i]), float(b.expected[i])
    low = expected - threshold * float(b.scale[i])
    if low < 0 <= float(np.nanmin(series.values)):
        low = 0.0  # a series that is never negative is not expected to be
    high = expected + threshold * float(b.scale[i])
    ts = int(series.ts[i])
    unit = unit_suffix(series.unit)
    text = (
        f"{fmt(value, series.unit)}{unit} vs expected {fmt(low, series.unit)}–"
        f"{fmt(high, series.unit)}{unit} for {slot_label(ts, int(b.level[i]), series.step_ms)}"
    )
    return Anomaly(ts, value, expected, low, high, float(z[i]), text)


def slot_label(ts: int, level: int, step_ms: int) -> str:
    when = datetime.fromtimestamp(ts / 1000, UTC)
    day = _DAYS[when.weekday()]
    if step_ms >= DAY_MS:
        return f"a {day} (past weeks)" if level == LEVEL_WEEK else "the previous days"
    hour = f"{when.hour:02d}:00 UTC"
    if level == LEVEL_WEEK:
        return f"{day} {hour}"
    return f"{hour} (previous days)" if level == LEVEL_DAY else hour


def fmt(value: float, unit: str = "") -> str:
    """A readable number: 1,240 / 12.5 / 0.0341; percent units (fractions) as 3.41%."""
    if math.isnan(value):
        return "n/a"
    if unit == "percent":
        return f"{value * 100:.2f}%"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 1:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def unit_suffix(unit: str) -> str:
    return "" if unit in ("", "count", "percent", "ratio", "score") else f" {unit}"


def when_text(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="seconds")


def _check_threshold(threshold: float) -> None:
    if not (math.isfinite(threshold) and threshold > 0):
        raise BadDataError(f'invalid parameter "threshold": {threshold}; use a positive number')
