"""What every part of the simulation sees for one chunk of timestamps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opsmetrics.demo.incidents import Plan
from opsmetrics.demo.topology import Kind
from opsmetrics.model import Float64Array, Int64Array, Labels


@dataclass(frozen=True, slots=True)
class Step:
    """A chunk of consecutive sample timestamps; step i covers (ts[i] - dt[i], ts[i]]."""

    ts: Int64Array
    dt_s: Float64Array
    load: Float64Array
    incident: np.ndarray
    #: Extra shop traffic from marketing campaigns (0 = none).
    campaign: Float64Array
    #: Whether the broken onboarding release is live.
    onboarding: np.ndarray
    plan: Plan
    rng: np.random.Generator

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    labels: Labels
    kind: Kind
    #: Where a running total starts when nothing is stored yet.
    initial: float = 0.0
