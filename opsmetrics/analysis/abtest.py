"""Fixed-horizon A/B tests: two proportions, two means (Welch), two ratios (delta method), the
relative effect with its delta-method CI, and the sample ratio mismatch (SRM) check.

Conventions: effects are treatment − control; the CI is two-sided at 1 − alpha; swapping the
arms flips the sign of every effect and leaves the p-value unchanged.

* Proportions: the test uses the pooled standard error (under H0 both arms share one rate),
  as `statsmodels.stats.proportion.proportions_ztest` does; the CI of the absolute difference
  uses the unpooled (Wald) standard error, because away from H0 the rates differ.
* Means: Welch's t-test, no equal-variance assumption, Welch–Satterthwaite degrees of freedom;
  the CI uses the same t quantile.
* Ratios (revenue per session, clicks per view: sum of y / sum of x over the units of an arm):
  delta-method variance Var(Ȳ/X̄) ≈ (s²_y − 2R·s_xy + R²·s²_x) / (n·X̄²), z-test.
* Relative effect T/C − 1: Var ≈ Var(T)/C² + T²·Var(C)/C⁴ (delta method, arms independent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy import stats as sps

from opsmetrics.analysis.stats import ArmEstimate, Moments, check_alpha, check_n, finite
from opsmetrics.errors import BadDataError

PROPORTION_TEST = "two-proportion z-test (pooled SE for the test, unpooled SE for the CI)"
WELCH_TEST = "Welch t-test (Welch-Satterthwaite df)"
RATIO_TEST = "delta-method z-test for a ratio metric"
#: SRM is flagged below this p-value (a strict threshold: the check runs on every readout).
SRM_THRESHOLD = 0.001


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treatment vs control for one metric."""

    test: str
    alpha: float
    control: float
    treatment: float
    absolute_effect: float
    ci_low: float
    ci_high: float
    relative_effect: float
    relative_ci_low: float
    relative_ci_high: float
    p_value: float
    statistic: float
    se: float
    df: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            out[key] = finite(value) if isinstance(value, float) else value
        out["significant"] = self.significant
        return out


@dataclass(frozen=True, slots=True)
class SrmResult:
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_THRESHOLD

    def to_dict(self) -> dict[str, object]:
        return {
            "observed": list(self.observed),
            "expected": [round(e, 3) for e in self.expected],
            "chi2": self.chi2,
            "p_value": self.p_value,
            "mismatch": self.mismatch,
            "threshold": SRM_THRESHOLD,
        }


def proportion_test(
    n_c: int, successes_c: int, n_t: int, successes_t: int, alpha: float = 0.05
) -> Comparison:
    check_alpha(alpha)
    for field, n, s in (("control", n_c, successes_c), ("treatment", n_t, successes_t)):
        check_n(n, f"{field}.n")
        if not 0 <= s <= n:
            raise BadDataError(f"{field}.successes must be between 0 and {field}.n, got {s}")
    pc, pt = successes_c / n_c, successes_t / n_t
    c = ArmEstimate(n_c, pc, pc * (1 - pc) / n_c)
    t = ArmEstimate(n_t, pt, pt * (1 - pt) / n_t)
    pooled = (successes_c + successes_t) / (n_c + n_t)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    z = (pt - pc) / se0 if se0 > 0 else 0.0
    p = float(2 * sps.norm.sf(abs(z)))
    return compare(c, t, alpha, PROPORTION_TEST, p_value=p, statistic=z)


def mean_test(
    c: tuple[int, float, float], t: tuple[int, float, float], alpha: float = 0.05
) -> Comparison:
    """Welch's test from (n, mean, sample std) of each arm."""
    check_alpha(alpha)
    for field, (n, _, std) in (("control", c), ("treatment", t)):
        check_n(n, f"{field}.n", 2)
        if not std >= 0:
            raise BadDataError(f"{field}.std must be a number >= 0, got {std}")
    vc, vt = c[2] ** 2 / c[0], t[2] ** 2 / t[0]
    se2 = vc + vt
    df = se2**2 / (vc**2 / (c[0] - 1) + vt**2 / (t[0] - 1)) if se2 > 0 else math.inf
    diff = t[1] - c[1]
    stat = diff / math.sqrt(se2) if se2 > 0 else 0.0
    p = float(2 * sps.t.sf(abs(stat), df))
    return compare(
        ArmEstimate(c[0], c[1], vc), ArmEstimate(t[0], t[1], vt), alpha, WELCH_TEST, p, stat, df
    )


def mean_test_moments(c: Moments, t: Moments, alpha: float = 0.05) -> Comparison:
    return mean_test(
        (c.n, c.mean_y, math.sqrt(c.var_y)), (t.n, t.mean_y, math.sqrt(t.var_y)), alpha
    )


def ratio_estimate(m: Moments, field: str = "arm") -> ArmEstimate:
    """sum(y) / sum(x) of an arm (y numerator, x denominator per unit), delta-method variance."""
    check_n(m.n, f"{field}.n", 2)
    if m.sum_x == 0:
        raise BadDataError(f"{field}: the ratio's denominator sums to 0; nothing to divide by")
    r = m.sum_y / m.sum_x
    var = (m.var_y - 2 * r * m.cov_xy + r * r * m.var_x) / (m.n * m.mean_x**2)
    return ArmEstimate(m.n, r, max(var, 0.0))


def ratio_test(c: Moments, t: Moments, alpha: float = 0.05) -> Comparison:
    check_alpha(alpha)
    ce, te = ratio_estimate(c, "control"), ratio_estimate(t, "treatment")
    se = math.sqrt(ce.variance + te.variance)
    z = (te.estimate - ce.estimate) / se if se > 0 else 0.0
    return compare(ce, te, alpha, RATIO_TEST, float(2 * sps.norm.sf(abs(z))), z)


def compare(
    c: ArmEstimate,
    t: ArmEstimate,
    alpha: float,
    test: str,
    p_value: float,
    statistic: float,
    df: float | None = None,
) -> Comparison:
    """Absolute and relative effects with CIs from the two arm estimates (z, or t with df)."""
    q = _quantile(alpha, df)
    diff = t.estimate - c.estimate
    se = math.sqrt(c.variance + t.variance)
    rel, rel_se = relative_effect(c, t)
    return Comparison(
        test=test,
        alpha=alpha,
        control=c.estimate,
        treatment=t.estimate,
        absolute_effect=diff,
        ci_low=diff - q * se,
        ci_high=diff + q * se,
        relative_effect=rel,
        relative_ci_low=rel - q * rel_se,
        relative_ci_high=rel + q * rel_se,
        p_value=p_value,
        statistic=statistic,
        se=se,
        df=df if df is None or math.isfinite(df) else None,
    )


def relative_effect(c: ArmEstimate, t: ArmEstimate) -> tuple[float, float]:
    """T/C − 1 and its delta-method standard error (NaN when the control estimate is 0)."""
    if c.estimate == 0:
        return math.nan, math.nan
    rel = t.estimate / c.estimate - 1
    var = t.variance / c.estimate**2 + t.estimate**2 * c.variance / c.estimate**4
    return rel, math.sqrt(var)


def _quantile(alpha: float, df: float | None) -> float:
    if df is None or not math.isfinite(df):
        return float(sps.norm.isf(alpha / 2))
    return float(sps.t.isf(alpha / 2, df))


def srm_test(observed: Sequence[int], expected_split: Sequence[float] | None = None) -> SrmResult:
    """Pearson chi-square goodness of fit of the units per arm to the planned split."""
    k = len(observed)
    if k < 2:
        raise BadDataError("the SRM check needs at least two arms")
    split = list(expected_split) if expected_split is not None else [1.0] * k
    if len(split) != k:
        raise BadDataError(f"expected_split has {len(split)} weights but there are {k} arms")
    if any(not w > 0 for w in split):
        raise BadDataError("expected_split weights must all be > 0")
    total = sum(observed)
    if total <= 0 or any(o < 0 for o in observed):
        raise BadDataError("the SRM check needs non-negative unit counts with a positive total")
    expected = [total * w / sum(split) for w in split]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    p = float(sps.chi2.sf(chi2, k - 1))
    return SrmResult(tuple(int(o) for o in observed), tuple(expected), chi2, p)
