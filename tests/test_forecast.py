"""Forecasts, capacity and target outlook on simulated series with known answers (fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from opsmetrics.analysis.capacity import capacity, outlook
from opsmetrics.analysis.forecast import BACKTEST_FOLDS, default_season, forecast, mase
from opsmetrics.analysis.series import DAY_MS, HOUR_MS, Series
from opsmetrics.errors import BadDataError

T0 = 1_767_571_200_000  # Monday 2026-01-05 00:00 UTC


def seasonal_trend(n: int, seed: int, sd: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """50 + 0.2 t + 10 sin(2πt/24) + noise, and the noiseless truth for n + 48 steps."""
    t = np.arange(n + 48)
    truth = 50 + 0.2 * t + 10 * np.sin(2 * np.pi * t / 24)
    noise = np.random.default_rng(seed).normal(0, sd, n)
    return truth[:n] + noise, truth[n:]


def test_a_seasonal_trend_series_is_forecast_within_tolerance() -> None:
    y, future = seasonal_trend(24 * 21, seed=1)
    fc = forecast(Series.of(y, HOUR_MS, T0), 24)
    assert fc.season_steps == 24
    assert fc.method == "ets"
    assert float(np.mean(np.abs(fc.mean - future[:24]))) < 1.0  # noise σ is 1
    assert fc.mase < 1.0  # beats seasonal-naive on a trending series
    assert fc.ts[0] == T0 + len(y) * HOUR_MS
    assert np.all(np.diff(fc.ts) == HOUR_MS)


def test_interval_coverage_is_near_nominal_on_simulated_data() -> None:
    inside = total = 0
    for seed in range(15):
        y, future = seasonal_trend(24 * 8, seed=100 + seed, sd=2.0)
        rng = np.random.default_rng(900 + seed)
        actual = future[:24] + rng.normal(0, 2.0, 24)
        fc = forecast(Series.of(y, HOUR_MS, T0), 24, level=0.9)
        inside += int(np.sum((actual >= fc.lower) & (actual <= fc.upper)))
        total += 24
    coverage = inside / total
    assert 0.8 <= coverage <= 0.98, coverage


def _independent_mase(y: np.ndarray, h: int, season: int, predict: object) -> float:
    """Rolling-origin MAE over the last folds, scaled by the in-sample seasonal-naive MAE."""
    errors = []
    for j in range(BACKTEST_FOLDS, 0, -1):
        origin = len(y) - h * j
        mean = predict(y[:origin], h)  # type: ignore[operator]
        errors.extend(np.abs(y[origin : origin + h] - mean))
    scale = np.mean(np.abs(y[season:] - y[:-season]))
    return float(np.mean(errors) / scale)


def test_mase_of_seasonal_naive_matches_an_independent_computation() -> None:
    y, _ = seasonal_trend(24 * 10, seed=3)

    def snaive(train: np.ndarray, h: int) -> np.ndarray:
        return np.array([train[len(train) - 24 + (i % 24)] for i in range(h)])

    fc = forecast(Series.of(y, HOUR_MS, T0), 12, methods=("seasonal_naive",))
    assert fc.method == "seasonal_naive"
    assert fc.mase == pytest.approx(_independent_mase(y, 12, 24, snaive), rel=1e-9)


def test_mase_of_the_linear_model_matches_an_independent_computation() -> None:
    rng = np.random.default_rng(4)
    y = 3.0 * np.arange(200) + rng.normal(0, 5, 200)

    def line(train: np.ndarray, h: int) -> np.ndarray:
        w = max(3 * h, 10)
        x = np.arange(w)
        slope, intercept = stats.linregress(x, train[-w:])[:2]
        return intercept + slope * np.arange(w, w + h)

    fc = forecast(Series.of(y, DAY_MS, T0), 10, season_steps=1, methods=("linear",))
    assert fc.method == "linear"
    assert fc.mase == pytest.approx(_independent_mase(y, 10, 1, line), rel=1e-6)


def test_mase_helper_on_hand_worked_numbers() -> None:
    train = np.array([1.0, 2, 3, 5, 6, 7])  # lag-3 differences: 4, 4, 4 → scale 4
    assert mase(np.array([10.0, 12]), np.array([8.0, 12]), train, 3) == pytest.approx(0.25)


def test_default_season_is_a_day_or_a_week() -> None:
    assert default_season(HOUR_MS, 100) == 24
    assert default_season(5 * 60_000, 1000) == 288
    assert default_season(DAY_MS, 30) == 7
    assert default_season(HOUR_MS, 30) is None  # fewer than two seasons


def test_gaps_are_interpolated_and_trailing_gaps_dropped() -> None:
    y, _ = seasonal_trend(24 * 10, seed=5)
    y[50:55] = np.nan
    y[-3:] = np.nan
    fc = forecast(Series.of(y, HOUR_MS, T0), 6)
    assert np.all(np.isfinite(fc.mean))
    assert fc.ts[0] == T0 + (len(y) - 3) * HOUR_MS


@pytest.mark.parametrize(
    ("values", "horizon", "field"),
    [([1.0, 2.0], 3, "needs at least"), ([1.0] * 20, 0, "horizon"), ([1.0] * 20, 10**6, "horizon")],
)
def test_bad_input_names_the_problem(values: list[float], horizon: int, field: str) -> None:
    with pytest.raises(BadDataError, match=field):
        forecast(Series.of(values, HOUR_MS), horizon)


def test_capacity_crossing_of_a_linear_series_matches_the_analytic_answer() -> None:
    rng = np.random.default_rng(6)
    t = np.arange(120)
    y = 10 + 0.5 * t + rng.normal(0, 0.05, len(t))  # reaches 100 at t = 180
    got = capacity(Series.of(y, HOUR_MS, T0, name="disk", unit="bytes"), 100.0, 100)
    analytic = T0 + 180 * HOUR_MS
    assert got.direction == "up"
    assert got.eta_ms is not None and abs(got.eta_ms - analytic) <= 2 * HOUR_MS
    assert got.earliest_ms is not None and got.earliest_ms <= got.eta_ms
    assert got.latest_ms is None or got.latest_ms >= got.eta_ms
    assert "disk reaches 100 bytes around" in got.explanation


def test_capacity_far_beyond_the_horizon_says_so() -> None:
    y = 10 + 0.01 * np.arange(100) + np.random.default_rng(7).normal(0, 0.01, 100)
    got = capacity(Series.of(y, HOUR_MS, T0), 1000.0, 24)
    assert got.eta_ms is None and got.earliest_ms is None
    assert "not within the forecast horizon" in got.explanation


def test_outlook_probabilities_follow_the_forecast_distribution() -> None:
    rng = np.random.default_rng(8)
    y = 100 + rng.normal(0, 5, 60)
    s = Series.of(y, DAY_MS, T0)
    end = T0 + 70 * DAY_MS
    likely = outlook(s, 60.0, end)
    unlikely = outlook(s, 140.0, end)
    assert likely.probability > 0.95
    assert unlikely.probability < 0.05
    lower = outlook(s, 140.0, end, direction="lower_is_better")
    assert lower.probability == pytest.approx(1 - unlikely.probability, abs=1e-9)
    mid = outlook(s, likely.expected, end)
    assert mid.probability == pytest.approx(0.5, abs=1e-6)


def test_outlook_of_a_sum_adds_what_was_observed_to_what_is_forecast() -> None:
    s = Series.of([10.0] * 40, DAY_MS, T0)  # flat: every forecast step is 10 with no spread
    start, end = T0 + 35 * DAY_MS, T0 + 45 * DAY_MS  # 5 days seen, 5 to come
    got = outlook(s, 99.0, end, period_start_ms=start, agg="sum")
    assert got.observed == pytest.approx(50.0)
    assert got.expected == pytest.approx(100.0)
    assert got.probability == pytest.approx(1.0)
    assert math.isclose(outlook(s, 101.0, end, period_start_ms=start, agg="sum").probability, 0)


def test_outlook_rejects_a_period_that_has_ended() -> None:
    s = Series.of([1.0] * 20, DAY_MS, T0)
    with pytest.raises(BadDataError, match="already ended"):
        outlook(s, 1.0, T0 + 5 * DAY_MS)


def test_period_bounds_are_calendar_months_and_quarters() -> None:
    from opsmetrics.analysis.capacity import period_bounds

    nov_23 = 1_795_392_000_000  # 2026-11-23 00:00 UTC
    assert period_bounds("month", nov_23) == (1_793_491_200_000, 1_796_083_200_000)  # Nov, Dec 1
    assert period_bounds("quarter", nov_23) == (1_790_812_800_000, 1_798_761_600_000)  # Oct, Jan 1
    with pytest.raises(BadDataError, match='"period"'):
        period_bounds("week", nov_23)
