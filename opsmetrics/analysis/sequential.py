"""Always-valid inference: the two-sided normal-mixture confidence sequence (Robbins 1970;
Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic
confidence sequences"; the asymptotic form GrowthBook and Eppo use for sequential testing).

For an estimate with variance V after N units (σ² = N·V per unit), the interval

    estimate ± √V · √( 2(Nρ² + 1)/(Nρ²) · ln(√(Nρ² + 1) / α) )

holds the true effect at every N simultaneously with probability ≥ 1 − α, so the result may be
looked at after every unit and the experiment stopped as soon as the interval excludes 0.
The mixing parameter ρ makes the interval tightest at N = `tuning_n` (the planned sample):
ρ² = (−2 ln α + ln(−2 ln α + 1)) / tuning_n. The price is a wider interval than the
fixed-horizon one at the planned sample (about 1.4× at α = 0.05).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from opsmetrics.analysis.abtest import Comparison
from opsmetrics.analysis.stats import check_alpha, finite
from opsmetrics.errors import BadDataError

METHOD = "always-valid normal-mixture confidence sequence (Howard et al. 2021)"
DEFAULT_TUNING_N = 5000


def rho_squared(alpha: float, tuning_n: float) -> float:
    a = -2 * math.log(alpha)
    return (a + math.log(a + 1)) / tuning_n


def half_width_factor(n_total: float, alpha: float, tuning_n: float = DEFAULT_TUNING_N) -> float:
    """The multiple of the standard error that the confidence sequence spans on each side."""
    check_alpha(alpha)
    if not n_total > 0 or not tuning_n > 0:
        raise BadDataError("a confidence sequence needs a positive sample size and tuning_n")
    nr = n_total * rho_squared(alpha, tuning_n)
    return math.sqrt(2 * (nr + 1) / nr * math.log(math.sqrt(nr + 1) / alpha))


@dataclass(frozen=True, slots=True)
class Sequential:
    method: str
    tuning_n: float
    ci_low: float
    ci_high: float
    relative_ci_low: float
    relative_ci_high: float

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "tuning_n": self.tuning_n,
            "ci_low": finite(self.ci_low),
            "ci_high": finite(self.ci_high),
            "relative_ci_low": finite(self.relative_ci_low),
            "relative_ci_high": finite(self.relative_ci_high),
            "significant": self.significant,
            "note": "valid under continuous monitoring: may be checked at any time",
        }


def sequential(c: Comparison, n_total: int, tuning_n: float = DEFAULT_TUNING_N) -> Sequential:
    """The confidence sequence around a fixed-horizon comparison's estimates."""
    k = half_width_factor(n_total, c.alpha, tuning_n)
    fixed_q = (c.ci_high - c.absolute_effect) / c.se if c.se > 0 else 1.0
    rel_se = (c.relative_ci_high - c.relative_effect) / fixed_q if fixed_q > 0 else math.nan
    return Sequential(
        METHOD,
        tuning_n,
        c.absolute_effect - k * c.se,
        c.absolute_effect + k * c.se,
        c.relative_effect - k * rel_se,
        c.relative_effect + k * rel_se,
    )
