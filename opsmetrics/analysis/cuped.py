"""CUPED (Deng et al. 2013): remove the part of a metric that a pre-experiment covariate
predicts. With x the unit's pre-period value of the metric and θ = cov(x, y) / var(x) (pooled
over the arms), each arm's adjusted mean is ȳ − θ·(x̄ − x̄_all) and its variance shrinks by the
factor 1 − ρ²(x, y). Randomisation makes x independent of the arm, so the adjustment leaves
the effect estimate unbiased.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from opsmetrics.analysis.stats import ArmEstimate, Moments


@dataclass(frozen=True, slots=True)
class Cuped:
    theta: float
    arms: tuple[ArmEstimate, ...]
    variance_reduction: float  # share of the per-unit variance removed (0..1)

    def to_dict(self) -> dict[str, object]:
        return {"theta": self.theta, "variance_reduction": self.variance_reduction}


def cuped(arms: Sequence[Moments]) -> Cuped:
    """Adjusted mean of y per arm, from moments whose x is the pre-period covariate."""
    pooled = sum(arms[1:], arms[0])
    var_x, var_y = pooled.var_x, pooled.var_y
    theta = pooled.cov_xy / var_x if var_x > 0 else 0.0
    out: list[ArmEstimate] = []
    removed: list[float] = []
    for m in arms:
        adj_mean = m.mean_y - theta * (m.mean_x - pooled.mean_x)
        adj_var = max(m.var_y - 2 * theta * m.cov_xy + theta * theta * m.var_x, 0.0)
        out.append(ArmEstimate(m.n, adj_mean, adj_var / m.n if m.n else math.nan))
        removed.append(adj_var)
    reduction = 1 - (pooled.var_y - theta * pooled.cov_xy) / var_y if var_y > 0 else 0.0
    return Cuped(theta, tuple(out), min(max(reduction, 0.0), 1.0))
