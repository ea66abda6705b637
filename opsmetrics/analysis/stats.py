"""Shared vocabulary of the experiment statistics: per-arm sufficient statistics (`Moments`)
and the per-arm estimate of a metric with the variance of that estimate (`ArmEstimate`).

Everything here works from sums, so a readout over millions of units needs only a handful of
numbers per arm from storage (see storage/experiment_records.py). `y` is the metric of a unit
(converted 0/1, revenue, a ratio's numerator); `x` is a second per-unit column: the
denominator of a ratio metric, or the pre-period covariate of CUPED.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from opsmetrics.errors import BadDataError


@dataclass(frozen=True, slots=True)
class Moments:
    """Sums over the n units of one arm: of y, y², x, x² and x·y."""

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float = 0.0
    sum_x2: float = 0.0
    sum_xy: float = 0.0

    @staticmethod
    def of(
        y: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray | None = None
    ) -> Moments:
        ya = np.asarray(y, dtype=np.float64)
        xa = np.zeros_like(ya) if x is None else np.asarray(x, dtype=np.float64)
        if xa.shape != ya.shape:
            raise BadDataError(f"x has {xa.size} values but y has {ya.size}")
        return Moments(
            int(ya.size),
            float(ya.sum()),
            float((ya * ya).sum()),
            float(xa.sum()),
            float((xa * xa).sum()),
            float((xa * ya).sum()),
        )

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.sum_y2 + other.sum_y2,
            self.sum_x + other.sum_x,
            self.sum_x2 + other.sum_x2,
            self.sum_xy + other.sum_xy,
        )

    @property
    def mean_y(self) -> float:
        return self.sum_y / self.n if self.n else math.nan

    @property
    def mean_x(self) -> float:
        return self.sum_x / self.n if self.n else math.nan

    @property
    def var_y(self) -> float:
        """Sample variance of y (n - 1 in the denominator)."""
        return max(_centred(self.sum_y2, self.sum_y, self.sum_y, self.n), 0.0)

    @property
    def var_x(self) -> float:
        return max(_centred(self.sum_x2, self.sum_x, self.sum_x, self.n), 0.0)

    @property
    def cov_xy(self) -> float:
        return _centred(self.sum_xy, self.sum_x, self.sum_y, self.n)


def _centred(sum_ab: float, sum_a: float, sum_b: float, n: int) -> float:
    if n < 2:
        return math.nan
    return (sum_ab - sum_a * sum_b / n) / (n - 1)


@dataclass(frozen=True, slots=True)
class ArmEstimate:
    """One arm's metric estimate, the variance of that estimate (se²) and its unit count."""

    n: int
    estimate: float
    variance: float

    @property
    def se(self) -> float:
        return math.sqrt(self.variance)


def check_alpha(alpha: float, field: str = "alpha") -> float:
    if not 0.0 < alpha < 1.0 or math.isnan(alpha):
        raise BadDataError(f"{field} must be between 0 and 1 (exclusive), got {alpha}")
    return alpha


def check_n(n: int, field: str, minimum: int = 1) -> int:
    if n < minimum:
        raise BadDataError(f"{field} must be at least {minimum}, got {n}")
    return n


def finite(x: float) -> float | None:
    """JSON-friendly: None for NaN and ±Inf."""
    return x if math.isfinite(x) else None
