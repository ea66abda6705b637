"""Simulated daily KPI series for calibrating analysis/impact.py (tests and bench).

A level of 100, a trend of +0.05 a day, a weekly pattern (weekends lower), AR(1) noise with
coefficient `phi` and innovations of sd 3 (about 3.5% of the level, a KPI's usual day-to-day
noise). A planted effect of +10% adds 10% of the counterfactual's mean over the post-period to
every post-period day, so the true relative effect is exactly `effect`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opsmetrics.analysis.impact import interrupted_time_series
from opsmetrics.analysis.series import DAY_MS, Series

#: Monday 2026-10-05 00:00 UTC: the first simulated day (the start falls n_pre days later).
T0 = 1_791_158_400_000
_WEEK = np.array([0.0, 4.0, 6.0, 4.0, 2.0, -8.0, -8.0])  # Monday first


@dataclass(frozen=True)
class Calibration:
    runs: int
    null_covered: float  # share of no-effect runs whose 95% interval holds 0
    effect_found: float  # share of +effect runs whose interval holds the truth and excludes 0


def simulate(
    rng: np.random.Generator, n_pre: int, n_post: int, effect: float, phi: float = 0.5
) -> tuple[Series, float]:
    n = n_pre + n_post
    t = np.arange(n)
    counterfactual = 100.0 + 0.05 * t + _WEEK[t % 7]
    noise = np.empty(n)
    noise[0] = rng.normal(0.0, 3.0 / np.sqrt(1 - phi * phi))
    shocks = rng.normal(0.0, 3.0, n)
    for i in range(1, n):
        noise[i] = phi * noise[i - 1] + shocks[i]
    y = counterfactual + noise
    y[n_pre:] += effect * counterfactual[n_pre:].mean()
    return Series.of(y, DAY_MS, T0), effect


def calibrate(
    runs: int, seed: int, n_pre: int = 56, n_post: int = 28, phi: float = 0.5
) -> Calibration:
    rng = np.random.default_rng(seed)
    start = T0 + n_pre * DAY_MS
    covered = found = 0
    for _ in range(runs):
        series, _ = simulate(rng, n_pre, n_post, 0.0, phi)
        got = interrupted_time_series(series, start, None, "up")
        covered += bool(got.relative_low <= 0 <= got.relative_high)  # type: ignore[operator]
        series, truth = simulate(rng, n_pre, n_post, 0.10, phi)
        got = interrupted_time_series(series, start, None, "up")
        lo, hi = got.relative_low, got.relative_high
        found += bool(lo is not None and hi is not None and 0 < lo <= truth <= hi)
    return Calibration(runs, covered / runs, found / runs)
