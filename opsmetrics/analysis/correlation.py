"""Correlation of two aligned series, raw and de-seasonalised, with the lead/lag and an impact
estimate (docs/statistics.md).

* Pearson r (p-value from scipy, CI by Fisher's z: atanh(r) ± z/√(n − 3)) and Spearman ρ.
* Residuals: each series minus its least-squares line (trend), then minus its mean per
  seasonal slot — hour of day × day of week when the step is hourly or finer and there are two
  weeks of data, else hour of day, else day of week for daily steps, or slot = index mod
  `period` when a period is given. Two
  series that share only a daily cycle correlate strongly raw and near 0 on residuals.
* Lagged cross-correlation of the residuals, lag k meaning `b` follows `a` by k steps.
* Impact: OLS slope of b on a at the best lag (residuals), with its 95 % CI, per `per` units of
  a. A plain-language finding is written only when the best lag's p-value, computed with an
  effective sample size for autocorrelation (Bartlett: n·(1 − r₁ₐr₁ᵦ)/(1 + r₁ₐr₁ᵦ)) and
  multiplied by the number of lags tried (Bonferroni), is below alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

from opsmetrics.analysis.stats import finite
from opsmetrics.errors import BadDataError

Floats = NDArray[np.float64]
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
MIN_POINTS = 8


@dataclass(frozen=True, slots=True)
class Pair:
    pearson_r: float
    pearson_p: float
    ci_low: float
    ci_high: float
    spearman_rho: float
    spearman_p: float
    n: int

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "pearson": {
                "r": finite(self.pearson_r),
                "p_value": finite(self.pearson_p),
                "ci_low": finite(self.ci_low),
                "ci_high": finite(self.ci_high),
            },
            "spearman": {"rho": finite(self.spearman_rho), "p_value": finite(self.spearman_p)},
        }


def pair(a: Floats, b: Floats, alpha: float = 0.05) -> Pair:
    """Pearson and Spearman over the points where both series have a value."""
    ok = np.isfinite(a) & np.isfinite(b)
    x, y = a[ok], b[ok]
    n = int(ok.sum())
    nan = math.nan
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Pair(nan, nan, nan, nan, nan, nan, n)
    pr = sps.pearsonr(x, y)
    r = float(pr.statistic)
    lo, hi = fisher_ci(r, n, alpha)
    sr = sps.spearmanr(x, y)
    return Pair(r, float(pr.pvalue), lo, hi, float(sr.statistic), float(sr.pvalue), n)


def fisher_ci(r: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    if n <= 3:
        return math.nan, math.nan
    z = math.atanh(max(min(r, 1 - 1e-15), -1 + 1e-15))
    half = float(sps.norm.isf(alpha / 2)) / math.sqrt(n - 3)
    return math.tanh(z - half), math.tanh(z + half)


def seasonal_slots(
    ts: NDArray[np.int64], step_ms: int, period: int | None = None
) -> NDArray[np.int64]:
    """The seasonal slot of each point (see the module doc)."""
    if period is not None:
        if period < 2:
            raise BadDataError(f"period must be at least 2 steps, got {period}")
        return np.arange(len(ts), dtype=np.int64) % period
    span = int(ts[-1] - ts[0]) + step_ms if len(ts) else 0
    hour = (ts // HOUR_MS) % 24
    dow = (ts // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    if step_ms < DAY_MS:
        return (dow * 24 + hour) if span >= 2 * WEEK_MS else hour
    if step_ms == DAY_MS and span >= 3 * WEEK_MS:
        return dow
    return np.zeros(len(ts), dtype=np.int64)


def deseasonalise(values: Floats, slots: NDArray[np.int64]) -> Floats:
    """Values minus the mean of their slot (NaN stays NaN)."""
    out = np.array(values, dtype=np.float64)
    ok = np.isfinite(out)
    k = int(slots.max()) + 1 if len(slots) else 1
    sums = np.bincount(slots[ok], weights=out[ok], minlength=k)
    counts = np.bincount(slots[ok], minlength=k)
    means = np.divide(sums, counts, out=np.zeros(k), where=counts > 0)
    result: Floats = out - means[slots]
    return result


def detrend(values: Floats) -> Floats:
    """Values minus their least-squares line over the index (NaN stays NaN)."""
    ok = np.isfinite(values)
    if ok.sum() < 3:
        return values
    idx = np.arange(len(values), dtype=np.float64)
    slope, intercept = np.polyfit(idx[ok], values[ok], 1)
    result: Floats = values - (slope * idx + intercept)
    return result


def residuals(values: Floats, slots: NDArray[np.int64], rounds: int = 6) -> Floats:
    """Values minus a line and a seasonal profile fitted together (backfitting: alternate the
    two least-squares fits; a line fitted alone would soak up part of the seasonality)."""
    v = np.asarray(values, dtype=np.float64)
    seasonal = v - deseasonalise(v, slots)
    for _ in range(rounds):
        trend = v - seasonal - detrend(v - seasonal)
        seasonal = (v - trend) - deseasonalise(v - trend, slots)
    return deseasonalise(detrend(v - seasonal), slots)


def fast_r(x: Floats, y: Floats) -> float:
    """Pearson r over the points where both have a value (NaN when undefined)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    xs, ys = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float(xs @ xs) * float(ys @ ys))
    return float(xs @ ys) / den if den > 0 else math.nan


def lagged(a: Floats, b: Floats, lag: int) -> tuple[Floats, Floats]:
    """a[t] paired with b[t + lag]."""
    if lag >= 0:
        return a[: len(a) - lag], b[lag:]
    return a[-lag:], b[: len(b) + lag]


def lag1(x: Floats) -> float:
    x = x[np.isfinite(x)]
    if len(x) < 3 or np.ptp(x) == 0:
        return 0.0
    return float(np.corrcoef(x[:-1], x[1:])[0, 1])


def effective_n(a: Floats, b: Floats) -> float:
    """Bartlett's effective sample size of a correlation between two autocorrelated series."""
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    rr = lag1(a) * lag1(b)
    return max(min(n * (1 - rr) / (1 + rr), float(n)), 3.0)


def r_pvalue(r: float, n_eff: float) -> float:
    """Two-sided p-value of a correlation r with an effective sample size."""
    if not math.isfinite(r) or n_eff <= 2:
        return math.nan
    df = n_eff - 2
    t = r * math.sqrt(df / max(1 - r * r, 1e-300))
    return float(2 * sps.t.sf(abs(t), df))


def check_pair(a: Floats, b: Floats) -> None:
    if len(a) != len(b):
        raise BadDataError(f'"a" has {len(a)} points but "b" has {len(b)}; align them first')
    both = int((np.isfinite(a) & np.isfinite(b)).sum())
    if both < MIN_POINTS:
        raise BadDataError(
            f"correlation needs at least {MIN_POINTS} points where both series "
            f"have a value, got {both}"
        )


@dataclass(frozen=True, slots=True)
class Impact:
    """OLS slope of b on a (residuals, at the best lag), scaled to `per` units of a."""

    per: float
    slope: float
    ci_low: float
    ci_high: float
    p_value: float
    adjusted_p_value: float
    n_effective: float

    def to_dict(self) -> dict[str, object]:
        return {k: finite(getattr(self, k)) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class Correlation:
    raw: Pair
    residual: Pair
    best_lag: int
    best_lag_r: float
    step_ms: int
    lags_tried: int
    impact: Impact | None
    finding: str | None

    def to_dict(self) -> dict[str, object]:
        out = self.raw.to_dict()
        out["residual"] = self.residual.to_dict()
        out["best_lag"] = {
            "steps": self.best_lag,
            "seconds": self.best_lag * self.step_ms / 1000,
            "r": finite(self.best_lag_r),
            "lags_tried": self.lags_tried,
            "meaning": "b follows a by this many steps (negative: b leads)",
        }
        out["impact"] = None if self.impact is None else self.impact.to_dict()
        out["finding"] = self.finding
        return out


@dataclass(frozen=True, slots=True)
class Labels:
    """How the finding names the two series and a's unit step."""

    a: str = "a"
    b: str = "b"
    unit_a: str = ""
    unit_b: str = ""
    per: float | None = None  # None: one standard deviation of a


def correlate(
    a: Floats,
    b: Floats,
    ts: NDArray[np.int64],
    step_ms: int,
    *,
    max_lag: int = 24,
    period: int | None = None,
    alpha: float = 0.05,
    labels: Labels | None = None,
    deseason: bool = True,
) -> Correlation:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    check_pair(a, b)
    slots = seasonal_slots(ts, step_ms, period) if deseason else np.zeros(len(a), dtype=np.int64)
    ra, rb = residuals(a, slots), residuals(b, slots)
    max_lag = max(0, min(max_lag, len(a) // 4))
    best, best_r = 0, math.nan
    for lag in range(-max_lag, max_lag + 1):
        r = fast_r(*lagged(ra, rb, lag))
        if math.isfinite(r) and (not math.isfinite(best_r) or abs(r) > abs(best_r) + 1e-12):
            best, best_r = lag, r
    tries = 2 * max_lag + 1
    impact = _impact(*lagged(ra, rb, best), tries, alpha, labels or Labels(), a)
    finding = None
    if impact is not None and impact.adjusted_p_value < alpha:
        finding = _finding(impact, best, step_ms, labels or Labels())
    return Correlation(
        pair(a, b, alpha), pair(ra, rb, alpha), best, best_r, step_ms, tries, impact, finding
    )


def _impact(
    x: Floats, y: Floats, tries: int, alpha: float, lb: Labels, raw_a: Floats
) -> Impact | None:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < MIN_POINTS or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    fit = sps.linregress(x[ok], y[ok])
    n_eff = effective_n(x, y)
    p = r_pvalue(float(fit.rvalue), n_eff)
    # the slope's standard error grows with √(n / n_eff) when the residuals are autocorrelated
    se = float(fit.stderr) * math.sqrt(max(int(ok.sum()) - 2, 1) / max(n_eff - 2, 1))
    q = float(sps.t.isf(alpha / 2, max(n_eff - 2, 1)))
    per = lb.per if lb.per is not None else float(np.nanstd(raw_a))
    slope = float(fit.slope)
    return Impact(
        per,
        slope * per,
        (slope - q * se) * per,
        (slope + q * se) * per,
        p,
        min(p * tries, 1.0),
        n_eff,
    )


def _finding(im: Impact, lag: int, step_ms: int, lb: Labels) -> str:
    def num(v: float) -> str:
        return f"{v:+.3g}"

    def unit(u: str) -> str:
        return f" {u}" if u else ""

    when = "at the same time"
    if lag:
        sec = abs(lag) * step_ms / 1000
        span = f"{sec / 3600:g} h" if sec >= 3600 else f"{sec:g} s"
        when = f"{span} later" if lag > 0 else f"{span} earlier"
    return (
        f"each +{im.per:.3g}{unit(lb.unit_a)} of {lb.a} goes with {num(im.slope)}{unit(lb.unit_b)} "
        f"of {lb.b} {when} (95% CI {num(im.ci_low)} to {num(im.ci_high)}; "
        f"p={im.adjusted_p_value:.2g} after correcting for autocorrelation and the lags tried); "
        "a correlation, not proof of cause"
    )
