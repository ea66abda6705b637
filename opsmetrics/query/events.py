"""Event analytics services: aggregations per calendar bucket, rolling unique counts, ordered
funnels and cohort retention.

The request records (storage/event_records.py, re-exported here) are what KPI formulas of
kind `event` and `conversion` compile to; these functions validate them, run the one storage
query each needs and shape the answer (conversion rates, drop-off, retention percentages).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC as UTC_TZ
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsmetrics.errors import BadDataError
from opsmetrics.storage.event_records import (
    UTC,
    Agg,
    Bucket,
    EventAggregate,
    EventMatch,
    FilterOp,
    Funnel,
    FunnelRow,
    Grain,
    PropFilter,
    Retention,
    RetentionRow,
    RollingUnique,
)

__all__ = [
    "UTC",
    "Agg",
    "Bucket",
    "EventAggregate",
    "EventMatch",
    "EventStore",
    "FilterOp",
    "Funnel",
    "FunnelGroup",
    "FunnelResult",
    "FunnelStep",
    "Grain",
    "PropFilter",
    "Retention",
    "RetentionCohort",
    "RetentionMatrix",
    "RollingUnique",
    "aggregate",
    "prop_text",
    "funnel",
    "retention",
    "rolling_unique",
]

MAX_STEPS = 20
MAX_BREAKDOWN_PROPS = 5
MAX_PERIODS = 400
MAX_WINDOW_DAYS = 400
RETENTION_GRAINS = (Grain.DAY, Grain.WEEK, Grain.MONTH)
_ONE_VALUE = (FilterOp.EQ, FilterOp.NE, FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE)
_NUMERIC = (FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE)
_NO_VALUE = (FilterOp.EXISTS, FilterOp.NOT_EXISTS)


class EventStore(Protocol):
    """The part of the Storage protocol these services use."""

    def event_aggregate(self, q: EventAggregate) -> list[Bucket]: ...

    def event_rolling_unique(self, q: RollingUnique) -> list[Bucket]: ...

    def event_funnel(self, q: Funnel) -> list[FunnelRow]: ...

    def event_retention(self, q: Retention) -> list[RetentionRow]: ...


@dataclass(frozen=True, slots=True)
class FunnelStep:
    """One step of one breakdown group. Rates are None when their denominator is 0; time is
    from the previous step (None for the first step and when nobody reached this one)."""

    step: int
    name: str | None
    entities: int
    conversion_from_previous: float | None
    conversion_from_first: float | None
    drop_off: int
    drop_off_rate: float | None
    median_ms_from_previous: float | None
    avg_ms_from_previous: float | None


@dataclass(frozen=True, slots=True)
class FunnelGroup:
    breakdown: str | None  # the property value; None without a breakdown
    steps: list[FunnelStep]


@dataclass(frozen=True, slots=True)
class FunnelResult:
    groups: list[FunnelGroup]


@dataclass(frozen=True, slots=True)
class RetentionCohort:
    """`counts[k]`/`rates[k]` for period k; None for periods that start at or after end_ms."""

    start_ms: int
    size: int
    counts: list[int | None]
    rates: list[float | None]


@dataclass(frozen=True, slots=True)
class RetentionMatrix:
    grain: Grain
    tz: str
    cohorts: list[RetentionCohort]


# --- services ---------------------------------------------------------------------------
def aggregate(store: EventStore, q: EventAggregate) -> list[Bucket]:
    _check_range(q.start_ms, q.end_ms)
    check_tz(q.tz)
    _check_filters(q.where, "where")
    if len(q.by) > MAX_BREAKDOWN_PROPS:
        raise BadDataError(f"by: at most {MAX_BREAKDOWN_PROPS} properties, got {len(q.by)}")
    for i, prop in enumerate(q.by):
        _check_prop(prop, f"by[{i}]")
    return store.event_aggregate(q)


def rolling_unique(store: EventStore, q: RollingUnique) -> list[Bucket]:
    _check_range(q.start_ms, q.end_ms)
    check_tz(q.tz)
    _check_filters(q.where, "where")
    if not 1 <= q.window_days <= MAX_WINDOW_DAYS:
        raise BadDataError(f"rolling window must be 1 to {MAX_WINDOW_DAYS} days")
    return store.event_rolling_unique(q)


def funnel(store: EventStore, q: Funnel) -> FunnelResult:
    _check_range(q.start_ms, q.end_ms)
    if not 2 <= len(q.steps) <= MAX_STEPS:
        raise BadDataError(f"a funnel needs 2 to {MAX_STEPS} steps, got {len(q.steps)}")
    if q.window_ms <= 0:
        raise BadDataError("window: the conversion window must be positive, e.g. 1d")
    for i, step in enumerate(q.steps):
        _check_filters(step.where, f"steps[{i}].where")
    if q.breakdown is not None:
        _check_prop(q.breakdown, "breakdown")
    rows = store.event_funnel(q)
    return FunnelResult(_funnel_groups(q, rows))


def retention(store: EventStore, q: Retention) -> RetentionMatrix:
    _check_range(q.start_ms, q.end_ms)
    check_tz(q.tz)
    if q.grain not in RETENTION_GRAINS:
        raise BadDataError(f"grain: retention periods are day, week or month, not {q.grain.value}")
    if not 0 <= q.periods <= MAX_PERIODS:
        raise BadDataError(f"periods must be 0 to {MAX_PERIODS}")
    _check_filters(q.start.where, "start.where")
    if q.returning is not None:
        _check_filters(q.returning.where, "return.where")
    rows = store.event_retention(q)
    return RetentionMatrix(q.grain, q.tz, [_cohort(q, row) for row in rows])


# --- shaping ----------------------------------------------------------------------------
def _funnel_groups(q: Funnel, rows: list[FunnelRow]) -> list[FunnelGroup]:
    by_group: dict[str, list[FunnelRow]] = {}
    for row in rows:
        by_group.setdefault(row.group, []).append(row)
    label = (lambda g: g) if q.breakdown is not None else (lambda g: None)
    return [FunnelGroup(label(g), _funnel_steps(q, got)) for g, got in by_group.items()]


def _funnel_steps(q: Funnel, rows: list[FunnelRow]) -> list[FunnelStep]:
    first = rows[0].entities
    steps = []
    for row in rows:
        prev = rows[row.step - 1].entities if row.step else row.entities
        steps.append(
            FunnelStep(
                step=row.step,
                name=q.steps[row.step].name,
                entities=row.entities,
                conversion_from_previous=_rate(row.entities, prev),
                conversion_from_first=_rate(row.entities, first),
                drop_off=prev - row.entities,
                drop_off_rate=_rate(prev - row.entities, prev),
                median_ms_from_previous=row.median_ms,
                avg_ms_from_previous=row.avg_ms,
            )
        )
    return steps


def _cohort(q: Retention, row: RetentionRow) -> RetentionCohort:
    counts: list[int | None] = []
    for k in range(q.periods + 1):
        started = period_start_ms(row.cohort_ms, k, q.grain, q.tz) < q.end_ms
        counts.append(row.returned.get(k, 0) if started else None)
    rates = [None if n is None else _rate(n, row.size) for n in counts]
    return RetentionCohort(row.cohort_ms, row.size, counts, rates)


def period_start_ms(start_ms: int, k: int, grain: Grain, tz: str) -> int:
    """Start of the k-th calendar period after the one starting at start_ms (local time)."""
    local = datetime.fromtimestamp(start_ms / 1000, ZoneInfo(tz)).replace(tzinfo=None)
    match grain:
        case Grain.HOUR:
            return start_ms + k * 3_600_000
        case Grain.DAY | Grain.WEEK:
            local += timedelta(days=k * (7 if grain is Grain.WEEK else 1))
        case Grain.MONTH | Grain.QUARTER | Grain.YEAR:
            months = local.month - 1 + k * {Grain.MONTH: 1, Grain.QUARTER: 3}.get(grain, 12)
            local = local.replace(year=local.year + months // 12, month=months % 12 + 1)
    return round(local.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC_TZ).timestamp() * 1000)


def prop_text(value: str | int | float | bool | None) -> str:
    """A property value as filters compare it: its JSON text, strings unquoted."""
    return value if isinstance(value, str) else json.dumps(value)


def _rate(n: int, of: int) -> float | None:
    return n / of if of else None


# --- validation -------------------------------------------------------------------------
def check_tz(tz: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadDataError(
            f"tz: unknown timezone {tz!r}; use an IANA name such as UTC or Europe/Berlin"
        ) from None


def _check_range(start_ms: int, end_ms: int) -> None:
    if end_ms <= start_ms:
        raise BadDataError("end must be after start")


def _check_prop(prop: str, where: str) -> None:
    if not prop:
        raise BadDataError(f"{where}: a property name must not be empty")


def _check_filters(filters: tuple[PropFilter, ...], where: str) -> None:
    for i, f in enumerate(filters):
        at = f"{where}[{i}]"
        _check_prop(f.prop, at)
        if f.op in _ONE_VALUE and len(f.values) != 1:
            raise BadDataError(f"{at}: {f.op.value!r} takes exactly one value")
        if f.op in _NO_VALUE and f.values:
            raise BadDataError(f"{at}: {f.op.value!r} takes no value")
        if f.op in _NUMERIC and not _is_number(f.values[0]):
            raise BadDataError(f"{at}: {f.op.value!r} compares numbers; give a number")
        if f.op in (FilterOp.IN, FilterOp.NOT_IN) and not f.values:
            raise BadDataError(f"{at}: {f.op.value!r} needs at least one value")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
