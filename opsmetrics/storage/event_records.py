"""Typed requests and result rows of event analytics: the storage protocol's vocabulary.

Backend-neutral: every backend answers these records (the DuckDB one in
storage/duckdb/event_queries.py); `query/events.py` validates them and shapes the answers;
KPI formulas of kind `event` and `conversion` compile to them.

Property filters compare a property's JSON text: strings as they are, numbers as written
(`1999`, `1.5`), booleans as `true`/`false`. A property holding JSON null counts as missing.
The order comparisons (>, >=, <, <=) compare numbers: the property and the one value are read
as numbers, and a property that is missing or not a number never matches.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

#: Timezone used when a request names none.
UTC = "UTC"


class Grain(enum.Enum):
    """Calendar periods, aligned in the request's timezone; weeks start on Monday (ISO)."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Grains of fixed width in UTC, with the origin of their alignment (1970-01-05 is a Monday):
#: every backend buckets these by arithmetic on epoch milliseconds.
FIXED_UTC_GRAINS = {
    Grain.HOUR: (HOUR_MS, 0),
    Grain.DAY: (DAY_MS, 0),
    Grain.WEEK: (7 * DAY_MS, 4 * DAY_MS),
}


class Agg(enum.Enum):
    COUNT = "count"  # events
    SUM = "sum"  # of value
    UNIQUE = "unique"  # distinct non-empty entities
    AVG = "avg"  # of value
    MIN = "min"
    MAX = "max"
    P50 = "p50"  # percentiles of value, linear interpolation
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"


class FilterOp(enum.Enum):
    EQ = "="  # property present and equal
    NE = "!="  # property missing or different
    IN = "in"  # property present and one of the values
    NOT_IN = "not in"  # property missing or none of the values
    EXISTS = "exists"  # property present (and not null)
    NOT_EXISTS = "not exists"
    GT = ">"  # property a number greater than the value
    GTE = ">="
    LT = "<"
    LTE = "<="


@dataclass(frozen=True, slots=True)
class PropFilter:
    prop: str
    op: FilterOp
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ValueFilter:
    """A bound on the number an aggregation reads (the event's value, or `value_prop`): only
    GT, GTE, LT and LTE; an event without that number never passes."""

    op: FilterOp
    value: float


@dataclass(frozen=True, slots=True)
class EntityKey:
    """What a reader keys events on: the event's entity (`prop` None) or a property. An event
    where it is missing or "" has no key (a state's customer, a conversion's entity)."""

    prop: str | None = None

    @property
    def field(self) -> str:
        return "entity" if self.prop is None else f"props.{self.prop}"


@dataclass(frozen=True, slots=True)
class EventMatch:
    """Which events count: by name (None: any name) and property filters (all must hold)."""

    name: str | None
    where: tuple[PropFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class EventAggregate:
    """`agg` of the matching events per calendar `grain` bucket in [start_ms, end_ms).

    `grain` None makes the whole range one bucket (starting at start_ms). `by` breaks each
    bucket down by property values (a missing property groups as ""). `value_prop` names a
    property that value aggregations (sum, avg, min, max, percentiles) read as a number instead
    of the event's value; where it is missing or not a number the event has no value.
    `value_where` keeps only the events whose value (as read) passes every bound; with it a
    count reads the value too (`nps` with `score: value` counts responses in a score range).
    `key` keeps only the events that carry it, as state and conversion formulas read them.
    """

    name: str | None
    agg: Agg
    start_ms: int
    end_ms: int
    grain: Grain | None = Grain.DAY
    tz: str = UTC
    where: tuple[PropFilter, ...] = ()
    by: tuple[str, ...] = ()
    value_prop: str | None = None
    value_where: tuple[ValueFilter, ...] = ()
    key: EntityKey | None = None

    @property
    def match(self) -> EventMatch:
        return EventMatch(self.name, self.where)

    @property
    def reads_value(self) -> bool:
        """Whether an event without the value it reads is left out."""
        return self.agg not in (Agg.COUNT, Agg.UNIQUE) or bool(self.value_where)


@dataclass(frozen=True, slots=True)
class RollingUnique:
    """Distinct entities over the trailing `window_days` local days, for each local day in
    [start_ms, end_ms): DAU (1), WAU (7), MAU (28 or 30) as a daily series."""

    name: str | None
    window_days: int
    start_ms: int
    end_ms: int
    tz: str = UTC
    where: tuple[PropFilter, ...] = ()

    @property
    def match(self) -> EventMatch:
        return EventMatch(self.name, self.where)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One period (start in UTC ms) of one breakdown group.

    `sample_size` is the number of events behind the value (for value aggregations: events
    that carry a value). `value` is NaN when there is nothing to aggregate (avg of no values).
    """

    start_ms: int
    group: dict[str, str]
    value: float
    sample_size: int


@dataclass(frozen=True, slots=True)
class Funnel:
    """An ordered funnel, "first time through" (the default of PostHog's ordered funnels).

    Per entity: the attempt starts at its first step-1 event in [start_ms, end_ms); step k is
    its earliest step-k event strictly later than the step k-1 event used, and at most
    `window_ms` after the step-1 event (inclusive; later steps may fall after end_ms). A step
    done before the previous one does not count; repeats of a step only the first one counts.
    The breakdown value is `breakdown`'s value on that first step-1 event.
    """

    steps: tuple[EventMatch, ...]
    start_ms: int
    end_ms: int
    window_ms: int
    breakdown: str | None = None


@dataclass(frozen=True, slots=True)
class FunnelRow:
    """How many entities reached `step` (0-based) and the time from the step before."""

    group: str
    step: int
    entities: int
    median_ms: float | None
    avg_ms: float | None


@dataclass(frozen=True, slots=True)
class Retention:
    """Cohort retention.

    An entity's cohort is the `grain` period (in `tz`) of its first-ever `start` event, which
    must lie in [start_ms, end_ms). It counts in period p (0..periods) when it did a `returning`
    event (any event when None) at or after that first start event and before end_ms, in the
    p-th calendar period after its cohort's. With `returning` any event, period 0 is 100%.
    """

    start: EventMatch
    returning: EventMatch | None
    start_ms: int
    end_ms: int
    grain: Grain = Grain.WEEK
    periods: int = 8
    tz: str = UTC


@dataclass(frozen=True, slots=True)
class RetentionRow:
    """One cohort's size and, per period, the entities that returned (absent: none)."""

    cohort_ms: int
    size: int
    returned: dict[int, int] = field(default_factory=dict)
