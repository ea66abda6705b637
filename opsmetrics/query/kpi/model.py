"""The records KPI evaluation answers with: points of a series, with status and comparison."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from opsmetrics.catalog.kpi_model import Grain, KpiDefinition
from opsmetrics.query.kpi.exclusions import Excluded, InputExclusions
from opsmetrics.query.promql.values import QueryError

#: A breakdown group: (dimension, value) pairs in the order of `by`; () without a breakdown.
Group = tuple[tuple[str, str], ...]


class KpiQueryError(QueryError):
    """A KPI that cannot be evaluated as asked (unsupported formula option, bad compare…)."""


class Status(enum.Enum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


class Compare(enum.Enum):
    PREVIOUS = "previous"
    WOW = "wow"
    MOM = "mom"
    QOQ = "qoq"
    YOY = "yoy"


@dataclass(frozen=True, slots=True)
class KpiPoint:
    start_ms: int
    end_ms: int
    value: float | None
    target: float | None
    status: Status
    compare: float | None = None  # the comparison period's value
    change: float | None = None  # relative change vs compare (value/compare - 1)
    attainment: float | None = (
        None  # value / target (direction-aware: lower_is_better target/value)
    )
    sample_size: int | None = None  # rate KPIs: the denominator count
    ci_low: float | None = None  # Wilson 95% for rate KPIs
    ci_high: float | None = None
    group: Group = ()  # dimension values when broken down
    note: str | None = None  # why value is None when its inputs were all excluded


@dataclass(frozen=True, slots=True)
class KpiSeries:
    kpi: KpiDefinition
    grain: Grain
    tz: str
    points: list[KpiPoint]
    freshness_ms: int | None  # time of the newest input
    version: int | None  # the catalog version (storage.kpi_versions) that produced it
    excluded: Excluded = Excluded()  # input events left out, and why (exclusions.py)


@dataclass(frozen=True, slots=True)
class Period:
    """[start_ms, end_ms) in UTC ms: one calendar period of a grain in a timezone."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Cell:
    """One period's value of one group, before status and comparison.

    `size` is the number behind the value (a ratio's denominator count, a conversion's
    entrants, an aggregation's events); `hits` the successes when value = hits / size.
    """

    value: float | None
    size: int | None = None
    hits: int | None = None
    note: str | None = None  # why value is None when its inputs were all excluded


@dataclass(slots=True)
class Values:
    """A formula's cells per group, each list aligned with the periods asked for.

    `is_count` says the values count events or entities, so a ratio of two such values is a
    rate with a sample size (and a Wilson interval). `excluded`: what its event formulas
    left out (one entry per event name).
    """

    cells: dict[Group, list[Cell]]
    is_count: bool = False
    excluded: tuple[InputExclusions, ...] = ()

    def only(self, n: int) -> list[Cell]:
        """The cells without a breakdown (all None when there is no group)."""
        return self.cells.get((), [Cell(None)] * n)
