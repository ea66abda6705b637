"""ClickHouse SQL pieces shared by the event queries: bound parameters, property filters, event
matches and calendars.

Nothing a user sends becomes SQL text: event names, property names, property values and
timezones are server-side parameters (`{p0:String}`); SQL text is only assembled from our own
enums and from names we number ourselves. Properties live in two maps written at insert time
(storage/clickhouse/event_rows.py): `props` holds each property's JSON text (strings unquoted;
a JSON null is left out, so it counts as missing) and `nums` the ones that read as a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opsmetrics.storage.event_records import (
    DAY_MS,
    FIXED_UTC_GRAINS,
    HOUR_MS,
    UTC,
    EventMatch,
    FilterOp,
    Grain,
    PropFilter,
)

#: Truncation of a naive local DateTime64 (wall clock read as UTC) to its period.
_TRUNC = {
    Grain.HOUR: "toStartOfHour({})",
    Grain.DAY: "toDateTime(toDate({}), 'UTC')",
    Grain.WEEK: "toDateTime(toMonday({}), 'UTC')",
    Grain.MONTH: "toDateTime(toStartOfMonth({}), 'UTC')",
    Grain.QUARTER: "toDateTime(toStartOfQuarter({}), 'UTC')",
    Grain.YEAR: "toDateTime(toStartOfYear({}), 'UTC')",
}
COMPARE_SQL = {FilterOp.GT: ">", FilterOp.GTE: ">=", FilterOp.LT: "<", FilterOp.LTE: "<="}
#: The events table read with its duplicates merged away (ReplacingMergeTree, see events.py).
EVENTS = "events FINAL"
#: Millisecond timestamp of a row of the events table.
MS = "toUnixTimestamp64Milli(ts)"


@dataclass
class Params:
    """Server-side parameters; `add` returns the placeholder to put in the SQL text."""

    values: dict[str, object] = field(default_factory=dict)

    def add(self, value: object, type_: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{type_}}}"

    def ms(self, value: int) -> str:
        return self.add(value, "Int64")

    def ts(self, ms: int) -> str:
        """A millisecond instant as a value comparable with the `ts` column (uses its index)."""
        return f"fromUnixTimestamp64Milli({self.ms(ms)}, 'UTC')"


def number_of(text: str) -> float | None:
    """A property's text read as a number, as DuckDB's TRY_CAST(text AS DOUBLE) reads it."""
    if not text.isascii():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def prop_text(p: Params, prop: str) -> str:
    """A property's JSON text; '' where it is missing (as coalesce(prop, '') in DuckDB)."""
    return f"props[{p.add(prop, 'String')}]"


def prop_or_null(p: Params, prop: str) -> str:
    """A property's JSON text; NULL where it is missing (argMin/argMax then skip the row)."""
    k = p.add(prop, "String")
    return f"if(mapContains(props, {k}), props[{k}], NULL)"


def prop_number(p: Params, prop: str) -> str:
    """A property read as a number; NULL where it is missing or not a number."""
    k = p.add(prop, "String")
    return f"if(mapContains(nums, {k}), nums[{k}], NULL)"


def filter_sql(p: Params, f: PropFilter) -> str:
    k = p.add(f.prop, "String")
    present = f"mapContains(props, {k})"
    compare = COMPARE_SQL.get(f.op)
    if compare is not None:
        value = number_of(f.values[0]) if f.values else None
        if value is None:  # no value, or not a number: matches nothing
            return "false"
        return f"(mapContains(nums, {k}) AND nums[{k}] {compare} {p.add(value, 'Float64')})"
    match f.op:
        case FilterOp.EQ:
            return f"({present} AND props[{k}] = {p.add(f.values[0], 'String')})"
        case FilterOp.NE:
            return f"NOT ({present} AND props[{k}] = {p.add(f.values[0], 'String')})"
        case FilterOp.IN:
            return f"({present} AND has({p.add(list(f.values), 'Array(String)')}, props[{k}]))"
        case FilterOp.NOT_IN:
            values = p.add(list(f.values), "Array(String)")
            return f"NOT ({present} AND has({values}, props[{k}]))"
        case FilterOp.EXISTS:
            return present
        case FilterOp.NOT_EXISTS:
            return f"NOT {present}"
    raise AssertionError(f"unhandled filter operator {f.op}")


def match_sql(p: Params, m: EventMatch) -> str:
    """Conditions (joined by AND, never empty) selecting the events `m` matches."""
    conds = ["entity != ''"]
    if m.name is not None:
        conds.append(f"name = {p.add(m.name, 'String')}")
    conds += [filter_sql(p, f) for f in m.where]
    return "(" + " AND ".join(conds) + ")"


class Calendar:
    """SQL for calendar periods of a grain in a timezone, over Int64 millisecond expressions.

    UTC hour/day/week are integer arithmetic, as in the DuckDB backend. Every other case works
    as DuckDB's ICU functions do: a period is the truncated local wall-clock time (as naive
    milliseconds), so DST days have 23 or 25 hours, and a period's start goes back to UTC the
    way ICU resolves a wall-clock time: a repeated one is its later instant, a skipped one is
    read with the offset from before the change.
    """

    def __init__(self, p: Params, grain: Grain, tz: str) -> None:
        self.grain = grain
        self.fixed = FIXED_UTC_GRAINS.get(grain) if tz == UTC else None
        self._tz = "" if self.fixed else p.add(tz, "String")

    def local(self, ms: str) -> str:
        """Naive local milliseconds (the wall clock read as UTC) of instant `ms`."""
        if self.fixed:
            return ms
        offset = f"timeZoneOffset(fromUnixTimestamp64Milli({ms}, {self._tz}))"
        return f"({ms} + 1000 * {offset})"

    def period(self, ms: str) -> str:
        """The period holding instant `ms`, as an Int64 (fixed: UTC ms; else naive ms)."""
        if self.fixed:
            width, origin = self.fixed
            return f"(intDiv({ms} - {origin}, {width}) * {width} + {origin})"
        naive = f"fromUnixTimestamp64Milli({self.local(ms)}, 'UTC')"
        return f"(toInt64(toUnixTimestamp({_TRUNC[self.grain].format(naive)})) * 1000)"

    def start_ms(self, period: str) -> str:
        """UTC milliseconds of the start of a period from `period`."""
        return period if self.fixed else self.utc_ms(period)

    def utc_ms(self, naive_ms: str) -> str:
        """The instant of a naive local time (whole seconds), resolved as ICU does."""
        s = f"intDiv({naive_ms}, 1000)"
        before = f"timeZoneOffset(toDateTime({s} - 86400, {self._tz}))"
        after = f"timeZoneOffset(toDateTime({s} + 86400, {self._tz}))"
        late = f"({s} - {after})"
        exact = f"timeZoneOffset(toDateTime({late}, {self._tz})) = {after}"
        return f"(1000 * if({exact}, {late}, {s} - {before}))"

    def diff(self, a: str, b: str) -> str:
        """Whole periods from period a to period b."""
        if self.fixed:
            return f"intDiv({b} - {a}, {self.fixed[0]})"
        match self.grain:
            case Grain.HOUR | Grain.DAY | Grain.WEEK:
                width = {Grain.HOUR: HOUR_MS, Grain.DAY: DAY_MS, Grain.WEEK: 7 * DAY_MS}
                return f"intDiv({b} - {a}, {width[self.grain]})"
            case Grain.MONTH | Grain.QUARTER | Grain.YEAR:
                dt = "fromUnixTimestamp64Milli({}, 'UTC')"
                unit = self.grain.value
                return f"dateDiff('{unit}', {dt.format(a)}, {dt.format(b)})"
