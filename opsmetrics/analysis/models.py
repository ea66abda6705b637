"""The forecast models forecast.py chooses between; each gives a mean and a standard deviation.

- `ets` / `ets_damped`: statsmodels ETSModel, additive error, additive trend (damped or not),
  additive season (when the series holds 2 seasons); heuristic initial states so the smoothing
  parameters fitted once can be re-run on any window. Analytic prediction variance. Fitted on
  at most the last ETS_MAX_SEASONS seasons (or ETS_MIN_WINDOW points) to stay interactive.
- `linear`: least squares line through the last max(3·horizon, 10) points; the classic
  prediction interval of a new observation. Only for horizons up to a quarter of the data.
- `seasonal_naive`: the value one season earlier (the last value without a season); its
  spread grows with √(seasons ahead).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from opsmetrics.analysis.series import Float64Array

METHODS = ("ets", "ets_damped", "linear", "seasonal_naive")
FITTED = frozenset({"ets", "ets_damped"})
ETS_MAX_SEASON = 400
ETS_MAX_SEASONS = 4
ETS_MIN_WINDOW = 1000


def applicable(method: str, n: int, season: int | None, horizon: int) -> bool:
    if method in FITTED:
        if season is None:
            return n >= 10
        # statsmodels' heuristic start needs 10 + 2·(season // 2) points; we want 2 seasons.
        return season <= ETS_MAX_SEASON and n >= max(2 * season, 10 + 2 * (season // 2))
    if method == "linear":
        return n >= 6 and horizon <= max(1, n // 4)
    return method == "seasonal_naive"


def fit(method: str, y: Float64Array, season: int | None) -> Any:
    """Parameters for `method`: ETS smoothing parameters; nothing for the others."""
    if method not in FITTED:
        return None
    model = _ets_model(y, season, method == "ets_damped")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter from the optimiser
        return np.asarray(model.fit(disp=False, maxiter=200).params, dtype=np.float64)


def predict(
    method: str, y: Float64Array, horizon: int, season: int | None, state: Any = None
) -> tuple[Float64Array, Float64Array]:
    if method in FITTED:
        params = state if state is not None else fit(method, y, season)
        return _ets_predict(y, horizon, season, params, method == "ets_damped")
    if method == "linear":
        return _linear(y, horizon)
    return _seasonal_naive(y, horizon, season)


def _window(y: Float64Array, season: int | None) -> Float64Array:
    keep = max(ETS_MIN_WINDOW, ETS_MAX_SEASONS * (season or 0))
    return y[-keep:]


def _ets_model(y: Float64Array, season: int | None, damped: bool) -> Any:
    import pandas as pd  # type: ignore[import-untyped]
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    seasonal = season is not None  # applicable() checked there are enough points
    return ETSModel(
        pd.Series(_window(y, season)),
        error="add",
        trend="add",
        damped_trend=damped,
        seasonal="add" if seasonal else None,
        seasonal_periods=season if seasonal else None,
        initialization_method="heuristic",
    )


def _ets_predict(
    y: Float64Array, horizon: int, season: int | None, params: Float64Array, damped: bool
) -> tuple[Float64Array, Float64Array]:
    model = _ets_model(y, season, damped)
    n = len(_window(y, season))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.smooth(params)
        pred = result.get_prediction(start=n, end=n + horizon - 1)
    mean = np.asarray(pred.predicted_mean, dtype=np.float64)
    var = np.asarray(pred.forecast_variance, dtype=np.float64)
    return mean, np.sqrt(np.maximum(var, 0.0))


def _linear(y: Float64Array, horizon: int) -> tuple[Float64Array, Float64Array]:
    w = min(len(y), max(3 * horizon, 10))
    recent = y[-w:]
    x = np.arange(w, dtype=np.float64)
    slope, intercept = np.polyfit(x, recent, 1)
    resid = recent - (slope * x + intercept)
    s = math.sqrt(float(resid @ resid) / max(w - 2, 1))
    x0 = np.arange(w, w + horizon, dtype=np.float64)
    sxx = float(((x - x.mean()) ** 2).sum())
    se = s * np.sqrt(1 + 1 / w + (x0 - x.mean()) ** 2 / sxx)
    return slope * x0 + intercept, se


def _seasonal_naive(
    y: Float64Array, horizon: int, season: int | None
) -> tuple[Float64Array, Float64Array]:
    m = season if season and len(y) > season else 1
    steps = np.arange(horizon)
    mean = y[len(y) - m + steps % m]
    diffs = y[m:] - y[:-m]
    sigma = float(np.std(diffs)) if len(diffs) > 1 else 0.0
    return mean.astype(np.float64), sigma * np.sqrt(steps // m + 1.0)
