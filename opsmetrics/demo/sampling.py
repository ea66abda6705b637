"""Random draws shared by the business simulations: arrivals, categorical picks, event ids."""

from __future__ import annotations

import numpy as np

from opsmetrics.demo.context import Step
from opsmetrics.model import Float64Array, Int64Array


class Ids:
    """Deterministic event ids: the chunk's first timestamp plus a running number."""

    def __init__(self, chunk_ts: int) -> None:
        self._prefix = f"demo-{chunk_ts}-"
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n}"


def arrivals(step: Step, per_min: float | Float64Array) -> tuple[Int64Array, Int64Array]:
    """Poisson arrivals per step; returns (step index, timestamp) of each arrival."""
    counts = step.rng.poisson(per_min * step.load * step.dt_s / 60.0)
    idx = np.repeat(np.arange(len(step)), counts)
    back = np.floor(step.rng.random(len(idx)) * step.dt_s[idx] * 1000).astype(np.int64)
    return idx, step.ts[idx] - back


def pick(rng: np.random.Generator, n: int, weights: tuple[float, ...]) -> Int64Array:
    out: Int64Array = rng.choice(len(weights), size=n, p=np.array(weights) / sum(weights))
    return out


def poisson(step: Step, per_min: float | Float64Array) -> Float64Array:
    """Counts per step for a rate per minute at load 1."""
    out: Float64Array = step.rng.poisson(per_min * step.load * step.dt_s / 60.0).astype(float)
    return out
