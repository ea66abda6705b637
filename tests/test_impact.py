"""analysis/impact.py: calibration on simulated series, verdicts, too early, DiD."""

from __future__ import annotations

import numpy as np

from opsmetrics.analysis.impact import (
    Verdict,
    difference_in_differences,
    interrupted_time_series,
    verdict_of,
)
from opsmetrics.analysis.series import DAY_MS, Series
from tests.impact_sim import T0, calibrate, simulate


def test_calibration_over_200_simulations() -> None:
    got = calibrate(200, seed=21)
    assert 0.93 <= got.null_covered <= 0.97, got
    assert got.effect_found >= 0.90, got


def test_a_planted_effect_is_found_with_its_size_and_counterfactual() -> None:
    series, _ = simulate(np.random.default_rng(5), 56, 28, 0.10)
    got = interrupted_time_series(series, T0 + 56 * DAY_MS, None, "up")
    assert got.verdict is Verdict.IMPROVED
    assert got.relative is not None and abs(got.relative - 0.10) < 0.04
    assert got.pre_points == 56 and got.post_points == 28
    assert got.counterfactual is not None
    # The post-period sits above the counterfactual by about the relative effect.
    post = series.values[56:].mean() / got.counterfactual[56:].mean() - 1
    assert abs(post - got.relative) < 0.02
    assert abs(got.counterfactual[:56] - series.values[:56]).mean() < 5  # it fits the pre


def test_the_verdict_follows_the_kpi_direction() -> None:
    series, _ = simulate(np.random.default_rng(6), 56, 28, -0.10)
    start = T0 + 56 * DAY_MS
    assert interrupted_time_series(series, start, None, "down").verdict is Verdict.IMPROVED
    assert interrupted_time_series(series, start, None, "up").verdict is Verdict.WORSENED
    assert verdict_of(-1.0, 2.0, "up") is Verdict.NO_CHANGE
    assert verdict_of(0.5, 2.0, "down") is Verdict.WORSENED


def test_too_early_until_two_weeks_after_the_start() -> None:
    series, _ = simulate(np.random.default_rng(7), 56, 13, 0.10)
    got = interrupted_time_series(series, T0 + 56 * DAY_MS, None, "up")
    assert got.verdict is Verdict.TOO_EARLY
    assert "13 points after the start; the estimate needs 14" in got.explanation
    assert got.effect is None


def test_points_after_the_end_are_left_out() -> None:
    series, _ = simulate(np.random.default_rng(8), 56, 28, 0.10)
    got = interrupted_time_series(series, T0 + 56 * DAY_MS, T0 + 70 * DAY_MS, "up")
    assert got.post_points == 14


def test_difference_in_differences_removes_a_shock_the_control_shares() -> None:
    rng = np.random.default_rng(9)
    n = 84
    shared = np.where(np.arange(n) >= 56, 15.0, 0.0)  # a market-wide jump at the start
    control = 50 + rng.normal(0, 1, n) + shared / 2
    treated = 100 + rng.normal(0, 1, n) + shared
    treated[56:] += 8.0
    start = T0 + 56 * DAY_MS
    t_series, c_series = Series.of(treated, DAY_MS, T0), Series.of(control, DAY_MS, T0)
    did = difference_in_differences(t_series, c_series, start, None, "up")
    its = interrupted_time_series(t_series, start, None, "up")
    assert did.method == "did" and did.low is not None and did.high is not None
    assert did.low <= 8.0 <= did.high
    assert its.effect is not None and its.effect > 20  # the shock counted as the effect
