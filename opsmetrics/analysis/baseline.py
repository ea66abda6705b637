"""The seasonal baseline: what a point is expected to be, from the same slot in the past.

For each point the reference set is the points within ±30 min of the same time of week in the
previous `weeks` weeks (median and MAD, robust to earlier anomalies). While there are fewer
than `pool_below_weeks` such weeks, the same time of day on the previous `days` days of the same
kind (weekday/weekend) joins the pool; with no past week at all those days alone are the
reference (at least `min_days`), and with less the point has no baseline (NaN). A weekend point has
at most one earlier weekend day in six, so where the pool would still hold fewer than
MIN_REFERENCES values it reaches back two weeks for days of its kind (not the weekly slot, which
is already in it). Slots are hours in
UTC, or the step itself when the step is longer than an hour (a daily series compares
Tuesdays with Tuesdays, and falls back to the previous days).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opsmetrics.analysis.series import DAY_MS, HOUR_MS, Float64Array, Int64Array, Series

WEEK_MS = 7 * DAY_MS
#: MAD × 1.4826 estimates the standard deviation of normal data.
MAD_TO_SIGMA = 1.4826
#: Which reference each point used: by weekly slot, by hour of day, or none.
LEVEL_WEEK, LEVEL_DAY, LEVEL_NONE = 2, 1, 0
#: How many references the series-wide noise estimate counts as (see _shrunk).
SHRINK_WEIGHT = 20.0
#: A slot needs this many past values to have a baseline.
MIN_REFERENCES = 3


@dataclass(frozen=True)
class Baseline:
    """Per point: expected value (median), robust scale (σ from MAD) and the level used."""

    expected: Float64Array
    scale: Float64Array
    level: Int64Array


def seasonal_baseline(
    series: Series,
    *,
    weeks: int = 4,
    min_weeks: int = 1,
    days: int = 6,
    min_days: int = 2,
    pool_below_weeks: int = 3,
) -> Baseline:
    values, step = series.values, series.step_ms
    offsets = _offsets(step)
    rows = _stack(values, WEEK_MS // step, weeks, offsets)
    week_count = _cycles_present(rows, len(offsets))
    expected, scale, count = _stats(rows, week_count >= min_weeks)
    level = np.where(np.isnan(expected), LEVEL_NONE, LEVEL_WEEK)
    young = np.flatnonzero(week_count < pool_below_weeks)
    if len(young) and step < WEEK_MS:
        # Few weeks: pool the same time on previous days of the same kind, so one bad week
        # (an incident in the only reference week) cannot become the baseline.
        day_rows = _day_pool(series, rows[:, young], young, days, offsets)
        has_week = week_count[young] >= min_weeks
        enough = has_week | (_cycles_present(day_rows, len(offsets)) >= min_days)
        pooled = _stats(np.vstack([rows[:, young], day_rows]), enough)
        expected[young], scale[young], count[young] = pooled
        level[young] = np.where(
            np.isnan(pooled[0]), LEVEL_NONE, np.where(has_week, LEVEL_WEEK, LEVEL_DAY)
        )
    scale = _shrunk(scale, count, expected, values)
    return Baseline(expected, _floored(scale, expected, values), level.astype(np.int64))


def _day_pool(
    series: Series, week_rows: Float64Array, young: Int64Array, days: int, offsets: list[int]
) -> Float64Array:
    """References from earlier days of the same kind for the `young` points.

    The previous `days` days first; where they and the weekly slot give fewer than
    MIN_REFERENCES values (a weekend has one earlier weekend day in six), the same kind of day
    up to two weeks back joins.
    """
    values, ts, step = series.values, series.ts, series.step_ms
    lag = max(1, DAY_MS // step)
    rows = _days_of_the_same_kind(values, ts, young, lag, list(range(1, days + 1)), offsets)
    short = (~np.isnan(np.vstack([week_rows, rows]))).sum(axis=0) < MIN_REFERENCES
    if not short.any():
        return rows
    far = _days_of_the_same_kind(values, ts, young, lag, _far_days(days, lag, step), offsets)
    far[:, ~short] = np.nan
    return np.vstack([rows, far])


def _far_days(days: int, lag: int, step: int) -> list[int]:
    """Cycles past the first `days` back to two weeks, skipping those on the weekly slot."""
    reach = 2 * WEEK_MS // (lag * step)
    return [j for j in range(days + 1, reach) if (j * lag * step) % WEEK_MS]


def _days_of_the_same_kind(
    values: Float64Array,
    ts: Int64Array,
    idx: Int64Array,
    lag: int,
    cycles: list[int],
    offsets: list[int],
) -> Float64Array:
    """The same time on earlier days (these cycles back) of the same kind only."""
    rows = _stack(values, lag, cycles, offsets, idx)
    _same_kind_of_day(rows, ts, idx, lag, cycles, offsets)
    return rows


def _same_kind_of_day(
    rows: Float64Array,
    ts: Int64Array,
    idx: Int64Array,
    lag: int,
    cycles: list[int],
    offsets: list[int],
) -> None:
    """Blank references from the other kind of day (weekday vs weekend) in place."""
    weekend = ((ts // DAY_MS) + 3) % 7 >= 5
    for r in range(rows.shape[0]):
        j, o = divmod(r, len(offsets))
        src = idx - cycles[j] * lag + offsets[o]
        ok = src >= 0
        differs = np.zeros(len(idx), dtype=bool)
        differs[ok] = weekend[src[ok]] != weekend[idx[ok]]
        rows[r, differs] = np.nan


def _shrunk(
    scale: Float64Array, count: Float64Array, expected: Float64Array, values: Float64Array
) -> Float64Array:
    """σ pulled towards the series-wide relative noise when a slot has few references.

    σ² = (m·σ_slot² + K·σ_all²) / (m + K) with m references and K = SHRINK_WEIGHT, where
    σ_all = 1.4826 × median |x − expected| / |expected| × |expected| (noise as a share).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(values - expected) / np.abs(expected)
    rel = rel[np.isfinite(rel)]
    if len(rel) < 10:
        return scale
    pooled = MAD_TO_SIGMA * float(np.median(rel)) * np.abs(expected)
    return np.sqrt((count * scale**2 + SHRINK_WEIGHT * pooled**2) / (count + SHRINK_WEIGHT))


def _offsets(step_ms: int) -> list[int]:
    """Steps around the same time of day/week that count as "the same slot" (±30 min)."""
    half = (HOUR_MS // 2) // step_ms
    if half <= 0:
        return [0]
    return sorted({int(round(x)) for x in np.linspace(-half, half, 5)})


def _stack(
    values: Float64Array,
    lag: int,
    back: int | list[int],
    offsets: list[int],
    rows: Int64Array | None = None,
) -> Float64Array:
    """Rows = (cycle j, offset o): the value at i − j·lag + o for each point i (NaN outside).

    `back` is how many cycles (1…back), or the cycles themselves.
    """
    idx = np.arange(len(values)) if rows is None else rows
    cycles = list(range(1, back + 1)) if isinstance(back, int) else back
    out = np.full((len(cycles) * len(offsets), len(idx)), np.nan)
    for n, j in enumerate(cycles):
        for k, o in enumerate(offsets):
            src = idx - j * lag + o
            ok = (src >= 0) & (src < idx)
            out[n * len(offsets) + k, ok] = values[src[ok]]
    return out


def _cycles_present(rows: Float64Array, per_cycle: int) -> Int64Array:
    have = ~np.isnan(rows).reshape(-1, per_cycle, rows.shape[1]).all(axis=1)
    return np.asarray(have.sum(axis=0), dtype=np.int64)


def _stats(
    rows: Float64Array, enough: np.ndarray
) -> tuple[Float64Array, Float64Array, Float64Array]:
    """Median, σ (1.4826 MAD) and reference count down each column where `enough`."""
    n = rows.shape[1]
    med = np.full(n, np.nan)
    sig = np.full(n, np.nan)
    count = np.zeros(n)
    cols = np.flatnonzero(enough & ((~np.isnan(rows)).sum(axis=0) >= MIN_REFERENCES))
    if len(cols):
        sub = rows[:, cols]
        m = np.nanmedian(sub, axis=0)
        med[cols] = m
        sig[cols] = MAD_TO_SIGMA * np.nanmedian(np.abs(sub - m), axis=0)
        count[cols] = (~np.isnan(sub)).sum(axis=0)
    return med, sig, count


def _floored(scale: Float64Array, expected: Float64Array, values: Float64Array) -> Float64Array:
    """A floor under σ so flat or quantised history does not flag every wobble.

    The floor is 2 % of the expected level or half the series' mean absolute step-to-step
    change, whichever is larger: sparse counts and ratios (zero all night, then one error)
    would otherwise have a band of width zero.
    """
    finite = values[~np.isnan(values)]
    spread = float(np.mean(np.abs(np.diff(finite)))) if len(finite) > 2 else 0.0
    floor = np.maximum(0.02 * np.abs(expected), 0.5 * spread)
    floor = np.maximum(floor, 1e-9)
    return np.where(np.isnan(scale), np.nan, np.maximum(scale, floor))
