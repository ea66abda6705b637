"""The simulator: turns a chunk of timestamps into a sample batch and business events.

Randomness for a chunk is seeded from (seed, first timestamp), so the same seed and the same
chunking reproduce the same data, and a restarted process continues where storage left off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opsmetrics.demo import business, infra
from opsmetrics.demo.context import SeriesSpec, Step
from opsmetrics.demo.incidents import Plan
from opsmetrics.demo.seasonality import load_factor
from opsmetrics.demo.topology import Kind
from opsmetrics.model import Event, Float64Array, Int64Array, SampleBatch
from opsmetrics.storage.base import Storage


@dataclass(frozen=True, slots=True)
class Chunk:
    batch: SampleBatch
    events: list[Event]


class Simulator:
    def __init__(self, seed: int, plan: Plan) -> None:
        self.seed = seed
        self.plan = plan
        self.specs: list[SeriesSpec] = infra.series() + business.series()
        self._is_total = np.array([s.kind is Kind.TOTAL for s in self.specs])
        self.totals: Float64Array = np.array([s.initial for s in self.specs])
        self.last_ts: int | None = None

    @property
    def series_count(self) -> int:
        return len(self.specs)

    def restore(self, storage: Storage) -> int | None:
        """Continue running totals from stored heads; returns the newest stored timestamp."""
        ids = storage.lookup_series([s.labels for s in self.specs])
        known = np.array([i is not None for i in ids])
        if not known.any():
            return None
        sids = np.array([i if i is not None else 0 for i in ids], dtype=np.int64)
        head_ts, head_values = storage.series_heads(sids)
        usable = known & self._is_total & np.isfinite(head_values)
        self.totals = np.where(usable, head_values, self.totals)
        self.last_ts = int(head_ts[known].max())
        return self.last_ts

    def chunk(self, ts: Int64Array, step_ms: int) -> Chunk:
        """Simulate the steps ending at each of `ts` (ascending, after `last_ts`)."""
        step = self._step(ts, step_ms)
        business_step = business.simulate(step)
        columns = np.hstack([infra.simulate(step), business_step.columns])
        values = self._values(columns)
        self.last_ts = int(ts[-1])
        batch = SampleBatch(
            [s.labels for s in self.specs],
            np.tile(np.arange(self.series_count, dtype=np.int32), len(ts)),
            np.repeat(ts, self.series_count),
            values.ravel(),
        )
        return Chunk(batch, business_step.events)

    def _step(self, ts: Int64Array, step_ms: int) -> Step:
        previous = ts[0] - step_ms if self.last_ts is None else self.last_ts
        dt_ms = np.diff(ts, prepend=previous)
        rng = np.random.default_rng([self.seed, int(ts[0])])
        return Step(
            ts=ts,
            dt_s=np.clip(dt_ms, 1, 10 * step_ms) / 1000.0,
            load=load_factor(ts, rng),
            incident=self.plan.incident_mask(ts),
            campaign=self.plan.campaign_lift(ts),
            onboarding=self.plan.onboarding_mask(ts),
            plan=self.plan,
            rng=rng,
        )

    def _values(self, columns: Float64Array) -> Float64Array:
        running = self.totals[None, :] + np.cumsum(columns, axis=0)
        values: Float64Array = np.where(self._is_total[None, :], running, columns)
        self.totals = np.where(self._is_total, running[-1], self.totals)
        return values
