"""Forecasts with prediction intervals, the method chosen by a rolling-origin backtest.

    forecast(series, horizon_steps, season_steps=None, level=0.95) -> Forecast

Candidates: ETS (statsmodels ETSModel: additive error, damped additive trend, additive season
when the series holds two seasons), a straight line through the recent points (short
horizons), and seasonal-naive (the value one season earlier). Each forecasts the last
BACKTEST_FOLDS windows of `horizon` points from the data before them; the lowest mean absolute
error wins. MASE = that error / the in-sample mean absolute seasonal-naive difference, so
MASE < 1 beats seasonal-naive and ≈ 1 does not. Gaps (NaN) are interpolated for fitting;
trailing gaps are dropped, so the forecast starts after the last value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from opsmetrics.analysis import models
from opsmetrics.analysis.series import DAY_MS, Float64Array, Int64Array, Series
from opsmetrics.errors import BadDataError

BACKTEST_FOLDS = 3
MAX_HORIZON = 10_000
MIN_POINTS = 4


@dataclass(frozen=True)
class Forecast:
    ts: Int64Array
    mean: Float64Array
    lower: Float64Array
    upper: Float64Array
    level: float
    method: str
    mase: float  # NaN when there was too little history to backtest
    season_steps: int | None = None
    backtest: dict[str, float] | None = None  # method → backtest MAE

    def json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "mase": _num(self.mase),
            "level": self.level,
            "season_steps": self.season_steps,
            "backtest_mae": {k: _num(v) for k, v in (self.backtest or {}).items()},
            "points": [
                [int(t), _num(m), _num(lo), _num(hi)]
                for t, m, lo, hi in zip(self.ts, self.mean, self.lower, self.upper, strict=True)
            ],
        }


def _num(x: float) -> float | None:
    return None if not math.isfinite(float(x)) else float(x)


def forecast(
    series: Series,
    horizon_steps: int,
    season_steps: int | None = None,
    *,
    level: float = 0.95,
    methods: tuple[str, ...] = models.METHODS,
) -> Forecast:
    """Forecast `horizon_steps` points after the last value of `series`."""
    y, last_ts = _prepared(series)
    _check(horizon_steps, level, season_steps)
    season = season_steps if season_steps is not None else default_season(series.step_ms, len(y))
    season = season if season and season > 1 and len(y) >= 2 * season else None
    scores, fitted = _backtest(y, horizon_steps, season, methods)
    method = min(scores, key=lambda k: scores[k]) if scores else _fallback(season, methods)
    mean, sd = models.predict(method, y, horizon_steps, season, fitted.get(method))
    # The standard library's quantile (same to 1e-15): scipy.stats costs ~80 MB of RSS to
    # import, which a report's forecasts would pay for this one number.
    z = NormalDist().inv_cdf(0.5 + level / 2)
    ts = last_ts + np.arange(1, horizon_steps + 1, dtype=np.int64) * np.int64(series.step_ms)
    mase = scores[method] / _scale(y, season) if scores else math.nan
    return Forecast(ts, mean, mean - z * sd, mean + z * sd, level, method, mase, season, scores)


def default_season(step_ms: int, n: int) -> int | None:
    """A day of steps for sub-daily data, a week for daily data (when two fit in `n`)."""
    if step_ms < DAY_MS and DAY_MS % step_ms == 0:
        season = DAY_MS // step_ms
    elif step_ms == DAY_MS:
        season = 7
    else:
        return None
    return season if n >= 2 * season else None


def mase(actual: Float64Array, predicted: Float64Array, train: Float64Array, season: int) -> float:
    """Mean absolute scaled error against the in-sample seasonal-naive MAE of `train`."""
    return float(np.mean(np.abs(actual - predicted))) / _scale(train, season)


def _scale(train: Float64Array, season: int | None) -> float:
    lag = season or 1
    diffs = np.abs(train[lag:] - train[:-lag])
    scale = float(np.mean(diffs)) if len(diffs) else math.nan
    return scale if scale > 0 else math.nan


def _backtest(
    y: Float64Array, horizon: int, season: int | None, methods: tuple[str, ...]
) -> tuple[dict[str, float], dict[str, object]]:
    """Mean absolute error per method over the last folds; fitted ETS params to reuse."""
    h = min(horizon, max(1, len(y) // (2 * BACKTEST_FOLDS)))
    origins = [len(y) - h * j for j in range(BACKTEST_FOLDS, 0, -1)]
    need = max(2 * (season or 1), 8)
    origins = [o for o in origins if o >= need]
    if not origins:
        return {}, {}
    errors: dict[str, list[float]] = {}
    fitted: dict[str, object] = {}
    for method in methods:
        if not models.applicable(method, origins[0], season, horizon):
            continue
        try:
            errs, state = _fold_errors(method, y, origins, h, season)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            continue  # a model that cannot fit this data is not a candidate
        if method in models.FITTED:
            fitted[method] = state
        errors[method] = errs
    return {k: float(np.mean(v)) for k, v in errors.items() if v}, fitted


def _fold_errors(
    method: str, y: Float64Array, origins: list[int], h: int, season: int | None
) -> tuple[list[float], object]:
    """Absolute errors of `method` at each origin, parameters fitted once at the first."""
    state = models.fit(method, y[: origins[0]], season)
    errs: list[float] = []
    for o in origins:
        mean, _ = models.predict(method, y[:o], h, season, state)
        errs.extend(np.abs(y[o : o + h] - mean).tolist())
    return errs, state


def _fallback(season: int | None, methods: tuple[str, ...]) -> str:
    return "seasonal_naive" if "seasonal_naive" in methods else methods[0]


def _prepared(series: Series) -> tuple[Float64Array, int]:
    values = np.asarray(series.values, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(values))
    if len(valid) < MIN_POINTS:
        raise BadDataError(
            f"series {series.name!r} has {len(valid)} values; a forecast needs at least "
            f"{MIN_POINTS}: widen the range (start/end) or use a smaller step"
        )
    first, last = int(valid[0]), int(valid[-1])
    y = values[first : last + 1]
    idx = np.arange(len(y))
    ok = np.isfinite(y)
    y = np.interp(idx, idx[ok], y[ok])
    return y, int(series.ts[last])


def _check(horizon: int, level: float, season: int | None) -> None:
    if not 1 <= horizon <= MAX_HORIZON:
        raise BadDataError(
            f'invalid parameter "horizon": {horizon}; use 1 to {MAX_HORIZON:,} steps'
        )
    if not 0 < level < 1:
        raise BadDataError(f'invalid parameter "level": {level}; use a fraction such as 0.95')
    if season is not None and season < 1:
        raise BadDataError(f'invalid parameter "season": {season}; use a positive step count')
