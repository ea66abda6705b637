"""Per-arm sufficient statistics of an experiment, computed where the events are.

An entity is exposed at its first matching exposure event in [start_ms, end_ms); its arm is
the `variant_prop` of that event. Each `UnitColumn` is a per-entity number from its events
relative to that moment, in [t0 + from_ms, t0 + to_ms): how many it did (COUNT), whether it did
any (ANY, 0/1) or the sum of their values (SUM, the event value or `value_prop`). Entities
without such events count 0. The storage answers, per arm, n and the sums of every column and
of every product of two columns — enough for means, variances, ratios and CUPED.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from opsmetrics.storage.event_records import EventMatch


class UnitAgg(enum.Enum):
    ANY = "any"
    COUNT = "count"
    SUM = "sum"


@dataclass(frozen=True, slots=True)
class UnitColumn:
    match: EventMatch
    agg: UnitAgg
    from_ms: int
    to_ms: int
    value_prop: str | None = None


@dataclass(frozen=True, slots=True)
class ArmMoments:
    """Query: exposures and the unit columns to sum per arm."""

    exposure: EventMatch
    variant_prop: str
    start_ms: int
    end_ms: int
    columns: tuple[UnitColumn, ...]


@dataclass(frozen=True, slots=True)
class ArmMomentsRow:
    """One arm: units, sum of each column, and sum of each product (i <= j, row-major)."""

    variant: str
    n: int
    sums: tuple[float, ...]
    products: dict[tuple[int, int], float]
