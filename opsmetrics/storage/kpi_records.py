"""Typed requests and result rows of KPI evaluation: the storage protocol's vocabulary for the
formula kinds that need their own query (state, conversion, sql, manual).

Backend-neutral: the DuckDB backend answers them in storage/duckdb/kpi_queries.py; the KPI
evaluator (query/kpi/) builds them. Periods are passed as parallel lists of UTC millisecond
bounds `[starts[i], ends[i])`; rows answer with the period index `i`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: The views an `sql:` KPI may read (created by migration 6, documented in docs/kpi_evaluation.md).
KPI_VIEWS = ("v_events", "v_samples", "v_manual_kpi_values")


@dataclass(frozen=True, slots=True)
class ManualKpiValue:
    """A value entered by a person for a `manual:` KPI at `ts` (UTC ms)."""

    kpi: str
    ts: int
    value: float
    author: str
    note: str
    recorded_ms: int


class StateCombine(enum.Enum):
    SUM = "sum"
    COUNT = "count"  # entities whose current value is set and not 0
    AVG = "avg"
    MIN = "min"
    MAX = "max"


@dataclass(frozen=True, slots=True)
class StateQuery:
    """Per period end: each key's latest `field` from `event` strictly before the end, combined.

    `field_prop`/`key_prop` None mean the event's `value` / `entity`; otherwise a property.
    """

    event: str
    field_prop: str | None
    key_prop: str | None
    combine: StateCombine
    ends: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StateRow:
    period: int
    value: float | None
    entities: int


@dataclass(frozen=True, slots=True)
class ConversionQuery:
    """Per period: keys with a `from_event` in it (their first one in the period counts) and
    how many of them did a `to_event` strictly after it and at most `within_ms` later.

    `key_prop` None joins on the entity id; `by` breaks down by properties of the from-event.
    """

    from_event: str
    to_event: str
    within_ms: int
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    key_prop: str | None = None
    by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConversionRow:
    period: int
    group: tuple[str, ...]
    entered: int
    converted: int


@dataclass(frozen=True, slots=True)
class SqlResult:
    columns: list[str]
    rows: list[tuple[object, ...]]
