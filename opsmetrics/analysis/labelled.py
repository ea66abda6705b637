"""A labelled set for judging the anomaly and level-shift detectors, and how to score them.

Synthetic series (fixed seeds): daily × weekly seasonality with multiplicative noise; one kind
carries injected spikes and dips (1-6 points, ±30-60 % of the level) after the first week, the
other one level shift (×0.6-0.75 or ×1.35-1.6) somewhere in the second half. Scoring is by event:
an injected anomaly is found when a flagged point falls in its window (± one step); a flagged
run (points ≤ 2 steps apart) is a true positive when it touches an injected window. A change
point is right within ±`tolerance_ms` of an injected shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from opsmetrics.analysis.series import DAY_MS, HOUR_MS, Series

MINUTE_MS = 60_000
#: Monday 2026-01-05 00:00 UTC: the synthetic series start on a week boundary.
ORIGIN_MS = 1_767_571_200_000


@dataclass(frozen=True)
class Labelled:
    series: Series
    windows: list[tuple[int, int]] = field(default_factory=list)  # [start, end] ms, inclusive
    shifts: list[int] = field(default_factory=list)  # ms


@dataclass(frozen=True, slots=True)
class Score:
    true_pos: int
    false_pos: int
    false_neg: int

    @property
    def precision(self) -> float:
        found = self.true_pos + self.false_pos
        return self.true_pos / found if found else 1.0

    @property
    def recall(self) -> float:
        wanted = self.true_pos + self.false_neg
        return self.true_pos / wanted if wanted else 1.0

    def __add__(self, other: Score) -> Score:
        return Score(
            self.true_pos + other.true_pos,
            self.false_pos + other.false_pos,
            self.false_neg + other.false_neg,
        )


def seasonal_values(n: int, step_ms: int, rng: np.random.Generator, level: float) -> np.ndarray:
    ts = ORIGIN_MS + np.arange(n, dtype=np.int64) * step_ms
    hours = (ts % DAY_MS) / HOUR_MS
    weekday = ((ts // DAY_MS) + 3) % 7
    daily = 1.0 + 0.45 * np.sin(2 * np.pi * (hours - 9) / 24)
    weekly = np.where(weekday >= 5, 0.75, 1.0)
    base = level * daily * weekly
    noise = rng.normal(0.0, 0.04, n)
    return np.asarray(base * (1.0 + noise), dtype=np.float64)


def spiky(seed: int, days: int = 28, step_ms: int = 15 * MINUTE_MS, count: int = 6) -> Labelled:
    rng = np.random.default_rng([seed, 1])
    n = days * DAY_MS // step_ms
    values = seasonal_values(n, step_ms, rng, level=float(rng.uniform(200, 5000)))
    ts = ORIGIN_MS + np.arange(n, dtype=np.int64) * step_ms
    first = 8 * DAY_MS // step_ms
    starts = np.sort(rng.choice(np.arange(first, n - 8, 12), size=count, replace=False))
    windows = []
    for s in starts.tolist():
        width = int(rng.integers(1, 7))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        values[s : s + width] *= 1.0 + sign * rng.uniform(0.3, 0.6)
        windows.append((int(ts[s]), int(ts[s + width - 1])))
    series = Series(ts, values, name=f"synthetic_spiky_{seed}", step_ms=step_ms)
    return Labelled(series, windows=windows)


def shifted(seed: int, days: int = 28, step_ms: int = 15 * MINUTE_MS) -> Labelled:
    rng = np.random.default_rng([seed, 2])
    n = days * DAY_MS // step_ms
    values = seasonal_values(n, step_ms, rng, level=float(rng.uniform(200, 5000)))
    ts = ORIGIN_MS + np.arange(n, dtype=np.int64) * step_ms
    at = int(rng.integers(n // 2, n - 3 * DAY_MS // step_ms))
    factor = rng.uniform(0.6, 0.75) if rng.random() < 0.5 else rng.uniform(1.35, 1.6)
    values[at:] *= factor
    series = Series(ts, values, name=f"synthetic_shift_{seed}", step_ms=step_ms)
    return Labelled(series, shifts=[int(ts[at])])


def synthetic_set(seeds: Sequence[int] = range(10)) -> list[Labelled]:
    """Spiky and shifted series for every seed."""
    return [spiky(s) for s in seeds] + [shifted(s) for s in seeds]


def score_points(flagged_ts: Sequence[int], item: Labelled, step_ms: int) -> Score:
    """Event-level score of flagged points against the injected windows of `item`."""
    runs = _runs(sorted(flagged_ts), 2 * step_ms)
    hit = [False] * len(item.windows)
    true_pos = false_pos = 0
    for lo, hi in runs:
        touched = [
            i for i, (a, b) in enumerate(item.windows) if lo <= b + step_ms and hi >= a - step_ms
        ]
        for i in touched:
            hit[i] = True
        if touched:
            true_pos += 1
        else:
            false_pos += 1
    return Score(true_pos, false_pos, hit.count(False))


def score_shifts(found_ts: Sequence[int], item: Labelled, tolerance_ms: int) -> Score:
    matched = set()
    true_pos = false_pos = 0
    for t in found_ts:
        near = [i for i, s in enumerate(item.shifts) if abs(t - s) <= tolerance_ms]
        free = [i for i in near if i not in matched]
        if free:
            matched.add(free[0])
            true_pos += 1
        else:
            false_pos += 1
    return Score(true_pos, false_pos, len(item.shifts) - len(matched))


def _runs(ts: list[int], gap_ms: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for t in ts:
        if runs and t - runs[-1][1] <= gap_ms:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    return runs
