"""Power analysis for two-arm tests, two-sided, equal arms by default (`ratio` = n_t / n_c).

* Proportions use Cohen's effect size h = 2·asin(√p₂) − 2·asin(√p₁) (the arcsine transform
  makes the variance independent of p) and the normal test, counting both rejection tails —
  the same as R's `pwr.2p.test` / `pwr.2p2n.test` and statsmodels' `NormalIndPower`.
* Means use Cohen's d = mde / std and the noncentral t distribution (df = n₁ + n₂ − 2) — the
  same as R's `pwr.t.test` and statsmodels' `TTestIndPower`.

The MDE is absolute: for a 5 % baseline, mde 0.0125 means detecting 5 % → 6.25 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy import optimize
from scipy import stats as sps

from opsmetrics.analysis.stats import check_alpha
from opsmetrics.errors import BadDataError

_MAX_N = 1e10


def cohens_h(p1: float, p2: float) -> float:
    return 2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1))


def normal_power(effect: float, n1: float, alpha: float, ratio: float = 1.0) -> float:
    """Power of the two-sided z-test for standardised effect `effect` with n1 and ratio·n1."""
    nc = abs(effect) * math.sqrt(n1 / (1 + 1 / ratio))
    crit = float(sps.norm.isf(alpha / 2))
    return float(sps.norm.sf(crit - nc) + sps.norm.cdf(-crit - nc))


def t_power(effect: float, n1: float, alpha: float, ratio: float = 1.0) -> float:
    """Power of the two-sided two-sample t-test (noncentral t)."""
    df = n1 * (1 + ratio) - 2
    if df <= 0:
        return math.nan
    nc = abs(effect) * math.sqrt(n1 / (1 + 1 / ratio))
    crit = float(sps.t.isf(alpha / 2, df))
    power = float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))
    return power if math.isfinite(power) else normal_power(effect, n1, alpha, ratio)


def _check(alpha: float, power: float | None = None, ratio: float = 1.0) -> None:
    check_alpha(alpha)
    if power is not None and not alpha < power < 1:
        raise BadDataError(f"power must be between alpha ({alpha}) and 1, got {power}")
    if not ratio > 0:
        raise BadDataError(f"ratio must be > 0, got {ratio}")


def _check_rates(baseline: float, mde: float) -> float:
    if not 0 < baseline < 1:
        raise BadDataError(f"baseline must be a rate between 0 and 1, got {baseline}")
    target = baseline + mde
    if mde == 0 or not 0 < target < 1:
        raise BadDataError(f"mde must be non-zero and keep baseline + mde inside (0, 1), got {mde}")
    return target


def _solve_n(power_of: Callable[[float], float], power: float, low: float) -> float:
    """The smallest (continuous) n1 >= low with power_of(n1) >= power."""
    if power_of(low) >= power:
        return low
    high = low
    while power_of(high) < power:  # bracket by doubling
        low, high = high, high * 2
        if high > _MAX_N:
            raise BadDataError("the effect is too small to detect with any feasible sample size")
    return float(optimize.brentq(lambda n: power_of(n) - power, low, high, xtol=1e-9))


def proportion_sample_size(
    baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> int:
    """Units needed in the control arm (treatment: ratio × that), rounded up."""
    _check(alpha, power, ratio)
    h = cohens_h(baseline, _check_rates(baseline, mde))
    return math.ceil(_solve_n(lambda n: normal_power(h, n, alpha, ratio), power, 1e-6) - 1e-9)


def proportion_power(
    baseline: float, mde: float, n: int, alpha: float = 0.05, ratio: float = 1.0
) -> float:
    _check(alpha, None, ratio)
    return normal_power(cohens_h(baseline, _check_rates(baseline, mde)), n, alpha, ratio)


def proportion_mde(
    baseline: float, n: int, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    """The smallest absolute uplift above `baseline` detectable with n units per arm."""
    _check(alpha, power, ratio)
    _check_rates(baseline, (1 - baseline) / 2)
    top = 1 - 1e-12
    if normal_power(cohens_h(baseline, top), n, alpha, ratio) < power:
        raise BadDataError(f"no uplift above baseline is detectable with n={n} per arm")

    def gap(p2: float) -> float:
        return normal_power(cohens_h(baseline, p2), n, alpha, ratio) - power

    return float(optimize.brentq(gap, baseline + 1e-12, top, xtol=1e-12)) - baseline


def mean_sample_size(
    std: float, mde: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> int:
    _check(alpha, power, ratio)
    d = _cohens_d(std, mde)
    low = 2.0 / min(ratio, 1.0)  # at least two units in each arm
    return math.ceil(_solve_n(lambda n: t_power(d, n, alpha, ratio), power, low) - 1e-9)


def mean_power(std: float, mde: float, n: int, alpha: float = 0.05, ratio: float = 1.0) -> float:
    _check(alpha, None, ratio)
    return t_power(_cohens_d(std, mde), n, alpha, ratio)


def mean_mde(
    std: float, n: int, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    _check(alpha, power, ratio)
    if n * (1 + ratio) - 2 <= 0:
        raise BadDataError(f"n must give at least one degree of freedom, got {n}")
    d = float(optimize.brentq(lambda d: t_power(d, n, alpha, ratio) - power, 1e-9, 1e3))
    return d * _positive(std, "std")


def _cohens_d(std: float, mde: float) -> float:
    if mde == 0 or not math.isfinite(mde):
        raise BadDataError(f"mde must be a non-zero number, got {mde}")
    return mde / _positive(std, "std")


def _positive(x: float, field: str) -> float:
    if not x > 0 or not math.isfinite(x):
        raise BadDataError(f"{field} must be a number > 0, got {x}")
    return x


def solve(
    *,
    baseline: float | None,
    std: float | None,
    mde: float | None,
    n: int | None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> dict[str, object]:
    """The missing one of (units per arm, MDE, power): give `baseline` (proportions) or `std`
    (means), and `mde` (→ units per arm), `n` (→ MDE) or both (→ power)."""
    if (baseline is None) == (std is None):
        raise BadDataError('give "baseline" (a rate, for proportion metrics) or "std" (means)')
    if mde is None and n is None:
        raise BadDataError('give "mde" (to get units per arm), "n" (to get the MDE) or both')
    prop = baseline is not None
    out: dict[str, object] = {
        "metric": "proportion" if prop else "mean",
        "method": "Cohen's h, two-sided normal test (as R pwr.2p.test)"
        if prop
        else "Cohen's d, two-sided noncentral t (as R pwr.t.test)",
        "alpha": alpha,
        "ratio": ratio,
    }
    level = baseline if baseline is not None else std
    assert level is not None
    if n is not None and mde is not None:
        got = (
            proportion_power(level, mde, n, alpha, ratio)
            if prop
            else mean_power(level, mde, n, alpha, ratio)
        )
        return out | {"per_arm": n, "mde": mde, "power": got}
    if n is not None:
        found = (
            proportion_mde(level, n, alpha, power, ratio)
            if prop
            else mean_mde(level, n, alpha, power, ratio)
        )
        return out | {"per_arm": n, "mde": found, "power": power}
    assert mde is not None
    per = (
        proportion_sample_size(level, mde, alpha, power, ratio)
        if prop
        else mean_sample_size(level, mde, alpha, power, ratio)
    )
    treatment = math.ceil(per * ratio - 1e-9)
    return out | {
        "per_arm": per,
        "control": per,
        "treatment": treatment,
        "total": per + treatment,
        "mde": mde,
        "power": power,
    }
