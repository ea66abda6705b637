"""Traffic shape: an evening peak each day, a night trough, quieter weekends, noise."""

from __future__ import annotations

import numpy as np

from opsmetrics.model import Float64Array, Int64Array

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: 1970-01-01 was a Thursday; with Monday as 0 the epoch day has weekday 3.
EPOCH_WEEKDAY = 3
WEEKEND_FACTOR = 0.72
PEAK_HOUR_UTC = 19.5
TROUGH_HOUR_UTC = 4.0


def daily_factor(ts_ms: Int64Array) -> Float64Array:
    """Lowest around 04:00 UTC, a working-day plateau, and the highest peak in the evening."""
    hour = (ts_ms % DAY_MS) / HOUR_MS
    wave = 0.5 - 0.5 * np.cos(2 * np.pi * (hour - TROUGH_HOUR_UTC) / 24)
    evening = np.exp(-(((hour - PEAK_HOUR_UTC) / 2.2) ** 2))
    out: Float64Array = 0.3 + 0.5 * wave + 0.45 * evening
    return out


def weekly_factor(ts_ms: Int64Array) -> Float64Array:
    weekday = (ts_ms // DAY_MS + EPOCH_WEEKDAY) % 7
    out: Float64Array = np.where(weekday >= 5, WEEKEND_FACTOR, 1.0)
    return out


def load_factor(ts_ms: Int64Array, rng: np.random.Generator) -> Float64Array:
    """Relative traffic per timestamp (about 1 at a weekday's busiest hours)."""
    noise = rng.lognormal(0.0, 0.06, size=len(ts_ms))
    out: Float64Array = daily_factor(ts_ms) * weekly_factor(ts_ms) * noise
    return out
