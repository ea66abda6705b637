"""The analysis parts of a trend chart: a forecast band after the last point, and anomalies.

Both come from opsmetrics.analysis (forecast.py, anomalies.py), which picks the season (a day of
sub-daily points, a week of daily points) and the method with the best backtest. Only complete
periods go in. A series too short to analyse gets no band rather than an error.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from opsmetrics.analysis.anomalies import Anomaly, detect
from opsmetrics.analysis.forecast import forecast
from opsmetrics.analysis.series import Series
from opsmetrics.dashboards.context import TimeRange
from opsmetrics.errors import OpsMetricsError

log = logging.getLogger(__name__)
Points = list[list[Any]]
MIN_POINTS = 4


def complete(points: Points, end_ms: int) -> Points:
    """The points whose period ended by `end_ms`: the current, partial period would read as
    a sudden drop."""
    if len(points) < 2:
        return points
    step = points[1][0] - points[0][0]
    return [p for p in points if p[0] + step <= end_ms]


def as_series(points: Points) -> Series | None:
    known = [p for p in points if p[1] is not None]
    if len(known) < MIN_POINTS:
        return None
    ts = np.array([p[0] for p in points], dtype=np.int64)
    values = np.array([math.nan if p[1] is None else p[1] for p in points], dtype=np.float64)
    return Series(ts, values, step_ms=int(ts[1] - ts[0]))


def forecast_of(points: Points, rng: TimeRange) -> dict[str, Any] | None:
    """`{points: [[ts, mean, lower, upper]], method, mase, level}` for the next fifth of the
    points (at least one step), from complete periods (see `complete`)."""
    series = as_series(points)
    if series is None:
        return None
    try:
        got = forecast(series, max(1, len(series.ts) // 5))
    except OpsMetricsError:
        return None
    except Exception:  # a model that cannot fit this series must not take the chart down
        log.exception("forecast failed on %d points", len(series.ts))
        return None
    rows = zip(got.ts.tolist(), got.mean.tolist(), got.lower.tolist(), got.upper.tolist(),
               strict=True)  # fmt: skip
    return {"points": [[int(t), _n(m), _n(lo), _n(hi)] for t, m, lo, hi in rows],
            "method": got.method, "mase": _n(got.mase), "level": got.level}  # fmt: skip


def anomalies_of(points: Points) -> list[dict[str, Any]]:
    """Points outside the expected (seasonal baseline) band, each with a sentence."""
    series = as_series(points)
    if series is None:
        return []
    try:
        found = detect(series, with_change_points=False).anomalies
    except OpsMetricsError:
        return []
    except Exception:
        log.exception("anomaly detection failed on %d points", len(series.ts))
        return []
    return [_anomaly(a) for a in found]


def _anomaly(a: Anomaly) -> dict[str, Any]:
    return {
        "ts": int(a.ts),
        "value": _n(a.value),
        "expected_low": _n(a.expected_low),
        "expected_high": _n(a.expected_high),
        "explanation": a.explanation,
    }


def _n(value: float | None) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None
