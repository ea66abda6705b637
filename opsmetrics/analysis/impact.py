"""The measured impact of an improvement initiative on one KPI (docs/analysis.md, Impact).

    interrupted_time_series(series, start_ms, end_ms, direction) -> Impact
    difference_in_differences(series, control, start_ms, end_ms, direction) -> Impact

Interrupted time series: a segmented regression of the KPI on a constant, a linear trend (when
the pre-period holds four seasons; method `its`, else `its_level`), the seasonal terms of its
step (day of week for daily points; hour of day and day of week for hourly ones) and a step
that is 1 from the initiative's start: its coefficient is the effect, the mean shift after
the start. Difference-in-differences: the same regression without the
trend on the KPI minus the control scaled to the KPI's pre-period mean (parallel trends).

The errors are AR(1), not independent: a KPI's day-to-day noise is autocorrelated and OLS
intervals (even with Newey-West/HAC covariance) are then too narrow at these lengths — bench/
impact_calibration.py measured HAC covering a null effect in only 76-86% of simulations. So
the fit is feasible GLS (Prais-Winsten) with the AR coefficient chosen by restricted maximum
likelihood (less Kendall's small-sample bias), and the effect's variance also carries the
uncertainty of that coefficient (delta method); the interval uses Student's t. Calibrated in
BENCHMARKS.md (Initiative impact calibration).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from opsmetrics.analysis.series import DAY_MS, HOUR_MS, Float64Array, Series
from opsmetrics.errors import BadDataError

LEVEL = 0.95
_RHO_BOUND = 0.95
_RHO_STEP = 0.01


class Verdict(enum.Enum):
    IMPROVED = "improved"
    NO_CHANGE = "no detectable change"
    WORSENED = "worsened"
    TOO_EARLY = "too early"


@dataclass(frozen=True, slots=True)
class Impact:
    """The effect after the start: absolute (KPI units per point) and relative to the
    counterfactual's mean, each with its 95% interval; `counterfactual` is the expected KPI
    without the initiative at every point of `series` (NaN before it is defined)."""

    method: str
    verdict: Verdict
    explanation: str
    pre_points: int
    post_points: int
    effect: float | None = None
    low: float | None = None
    high: float | None = None
    relative: float | None = None
    relative_low: float | None = None
    relative_high: float | None = None
    rho: float | None = None
    counterfactual: Float64Array | None = None


@dataclass(frozen=True, slots=True)
class _Fit:
    beta: Float64Array
    se_last: float
    df: int
    rho: float


@dataclass(frozen=True, slots=True)
class _Window:
    ts: Float64Array
    y: Float64Array
    post: Float64Array
    keep: np.ndarray
    period: int


def season_period(step_ms: int) -> int:
    """Points per longest season the regression models: a week of days or of hours."""
    if step_ms == DAY_MS:
        return 7
    if step_ms == HOUR_MS:
        return 168
    return 1


def min_points(step_ms: int) -> tuple[int, int]:
    """(pre, post) points needed: two seasons on each side (two weeks of daily points), and
    at least 12 before and 6 after: the trend and seasonal terms need the pre-period."""
    p = season_period(step_ms)
    return max(2 * p, 12), max(2 * p, 6)


def interrupted_time_series(
    series: Series, start_ms: int, end_ms: int | None, direction: str
) -> Impact:
    w = _window(series, start_ms, end_ms)
    early = _too_early("its", w, series.step_ms)
    if early is not None:
        return early
    origin = float(w.ts[w.keep][0])
    # A line fitted to two or three weeks and carried as far forward swings the estimate more
    # than it corrects it: the trend term only from four seasons (or 24 points) before.
    trend = int((w.keep & (w.post == 0)).sum()) >= max(4 * w.period, 24)
    base = _design(w.ts[w.keep], origin, series.step_ms, trend=trend)
    fit = _fit(w.y[w.keep], np.column_stack([base, w.post[w.keep]]))
    cf_all = _design(w.ts, origin, series.step_ms, trend=trend) @ fit.beta[:-1]
    return _impact("its" if trend else "its_level", w, fit, cf_all, direction)


def difference_in_differences(
    series: Series, control: Series, start_ms: int, end_ms: int | None, direction: str
) -> Impact:
    c = _aligned(series, control)
    w = _window(series, start_ms, end_ms)
    pre = w.keep & (w.post == 0) & np.isfinite(c)
    scale = float(np.mean(w.y[pre]) / np.mean(c[pre])) if pre.any() else math.nan
    if not math.isfinite(scale) or scale == 0:
        raise BadDataError("control: its pre-period mean is 0 or missing; choose another control")
    diff = w.y - scale * c
    w = _Window(w.ts, diff, w.post, w.keep & np.isfinite(c), w.period)
    early = _too_early("did", w, series.step_ms)
    if early is not None:
        return early
    base = _design(w.ts[w.keep], 0.0, series.step_ms, trend=False)
    fit = _fit(diff[w.keep], np.column_stack([base, w.post[w.keep]]))
    cf_all = scale * c + _design(w.ts, 0.0, series.step_ms, trend=False) @ fit.beta[:-1]
    return _impact(
        "did", _Window(w.ts, series.values, w.post, w.keep, w.period), fit, cf_all, direction
    )


def verdict_of(low: float, high: float, direction: str) -> Verdict:
    """Direction-aware: for a KPI that should go down, a decrease is an improvement."""
    sign = 1.0 if direction == "up" else -1.0
    if low > 0:
        return Verdict.IMPROVED if sign > 0 else Verdict.WORSENED
    if high < 0:
        return Verdict.WORSENED if sign > 0 else Verdict.IMPROVED
    return Verdict.NO_CHANGE


# --- the pieces --------------------------------------------------------------------------
def _window(series: Series, start_ms: int, end_ms: int | None) -> _Window:
    ts = series.ts.astype(np.float64)
    inside = series.ts < end_ms if end_ms is not None else np.ones(len(ts), dtype=bool)
    keep = np.isfinite(_from_first_data(series.values)) & inside
    post = (series.ts >= start_ms).astype(np.float64)
    return _Window(ts, series.values, post, keep, season_period(series.step_ms))


def _aligned(series: Series, control: Series) -> Float64Array:
    values = _from_first_data(control.values)
    at = {int(t): float(v) for t, v in zip(control.ts, values, strict=True)}
    return np.array([at.get(int(t), math.nan) for t in series.ts], dtype=np.float64)


def _from_first_data(values: Float64Array) -> Float64Array:
    """The values with the leading zeros as gaps: a count KPI reads 0 for the days before it
    had any data (before the history starts), which would pass for a real level."""
    nonzero = np.flatnonzero(np.isfinite(values) & (values != 0))
    first = int(nonzero[0]) if len(nonzero) else len(values)
    out = values.copy()
    out[:first] = np.nan
    return out


def _too_early(method: str, w: _Window, step_ms: int) -> Impact | None:
    n_pre = int((w.keep & (w.post == 0)).sum())
    n_post = int((w.keep & (w.post == 1)).sum())
    need_pre, need_post = min_points(step_ms)
    if n_post < need_post:
        why = f"{n_post} points after the start; the estimate needs {need_post}"
    elif n_pre < need_pre:
        why = f"{n_pre} points before the start; the estimate needs {need_pre}"
    else:
        return None
    return Impact(method, Verdict.TOO_EARLY, why, n_pre, n_post)


def _design(ts: Float64Array, origin: float, step_ms: int, *, trend: bool) -> Float64Array:
    """Constant, optional trend (per 100 days from `origin`) and the step's seasonal dummies."""
    cols = [np.ones(len(ts))]
    if trend:
        cols.append((ts - origin) / (100 * DAY_MS))
    if step_ms in (DAY_MS, HOUR_MS):
        dow = (ts // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
        cols += [(dow == k).astype(np.float64) for k in range(1, 7)]
    if step_ms == HOUR_MS:
        hour = (ts % DAY_MS) // HOUR_MS
        cols += [(hour == k).astype(np.float64) for k in range(1, 24)]
    return np.column_stack(cols)


def _transform(y: Float64Array, x: Float64Array, rho: float) -> tuple[Float64Array, Float64Array]:
    """Prais-Winsten: the AR(1) errors made independent (first row scaled, not dropped)."""
    s = math.sqrt(1 - rho * rho)
    yt = np.concatenate([[s * y[0]], y[1:] - rho * y[:-1]])
    xt = np.vstack([s * x[:1], x[1:] - rho * x[:-1]])
    return yt, xt


def _gls(
    y: Float64Array, x: Float64Array, rho: float
) -> tuple[Float64Array, Float64Array, Float64Array]:
    yt, xt = _transform(y, x, rho)
    beta = np.asarray(np.linalg.lstsq(xt, yt, rcond=None)[0], dtype=np.float64)
    return beta, yt - xt @ beta, xt


def _reml(rho: float, y: Float64Array, x: Float64Array) -> float:
    """Minus the restricted log-likelihood of the AR(1) coefficient, up to a constant."""
    n, k = x.shape
    _, resid, xt = _gls(y, x, rho)
    logdet = float(np.linalg.slogdet(xt.T @ xt)[1])
    ssr = max(float(resid @ resid), 1e-300)
    dof = float(n - k)
    return dof / 2 * math.log(ssr / dof) - 0.5 * math.log(1 - rho * rho) + 0.5 * logdet


def _fit(y: Float64Array, x: Float64Array) -> _Fit:
    n, k = x.shape
    if np.linalg.matrix_rank(x) < k:
        raise BadDataError(
            "the KPI has too few distinct points around the start to separate "
            "the effect from the trend and season; widen the pre-period"
        )
    got = optimize.minimize_scalar(
        _reml, bounds=(-_RHO_BOUND, _RHO_BOUND), args=(y, x), method="bounded"
    )
    # Even restricted ML leaves the AR(1) coefficient biased towards 0 at a few dozen points;
    # Kendall's first-order correction (1 + 3·rho) / n brings the coverage to ~95%.
    rho = min(float(got.x) + (1 + 3 * float(got.x)) / n, _RHO_BOUND)
    beta, resid, xt = _gls(y, x, rho)
    df = n - k - 1  # one more parameter: rho
    var = float(resid @ resid) / df * float(np.linalg.pinv(xt.T @ xt)[-1, -1])
    # The plug-in rho is itself uncertain (var ≈ (1 - rho²) / n): its share of the effect's
    # variance, by the delta method. Without it the intervals under-cover at these lengths.
    up = _gls(y, x, min(rho + _RHO_STEP, 0.99))[0][-1]
    down = _gls(y, x, max(rho - _RHO_STEP, -0.99))[0][-1]
    slope = (up - down) / (2 * _RHO_STEP)
    var += slope * slope * (1 - rho * rho) / n
    return _Fit(beta, math.sqrt(var), df, rho)


def _impact(method: str, w: _Window, fit: _Fit, cf_all: Float64Array, direction: str) -> Impact:
    effect = float(fit.beta[-1])
    q = float(stats.t.ppf(0.5 + LEVEL / 2, fit.df))
    low, high = effect - q * fit.se_last, effect + q * fit.se_last
    post = w.keep & (w.post == 1)
    cf_mean = float(np.mean(cf_all[post]))
    rel = (effect / cf_mean, low / cf_mean, high / cf_mean) if cf_mean > 0 else (None,) * 3
    verdict = verdict_of(low, high, direction)
    n_pre, n_post = int((w.keep & (w.post == 0)).sum()), int(post.sum())
    return Impact(
        method,
        verdict,
        _explain(verdict, effect, low, high, rel[0]),
        n_pre,
        n_post,
        effect,
        low,
        high,
        rel[0],
        rel[1],
        rel[2],
        fit.rho,
        cf_all,
    )


def _explain(verdict: Verdict, effect: float, low: float, high: float, rel: float | None) -> str:
    size = f"{effect:+.4g}" + (f" ({rel:+.1%})" if rel is not None else "")
    ci = f"95% interval {low:+.4g} to {high:+.4g}"
    if verdict is Verdict.NO_CHANGE:
        return f"no detectable change: {size} per point, {ci} includes 0"
    return f"{verdict.value}: {size} per point after the start, {ci}"
