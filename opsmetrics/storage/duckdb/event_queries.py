"""Event analytics in DuckDB: aggregations per calendar bucket, rolling uniques, funnels and
retention, each compiled to one SQL statement.

Nothing a user sends becomes SQL text: event names, property names (as JSON pointers),
property values and timezones are bound parameters. SQL text is only assembled from our own
enums (grain, aggregation, filter operator) and from column positions we number ourselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import duckdb

from opsmetrics.storage.event_records import (
    DAY_MS,
    FIXED_UTC_GRAINS,
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
    ValueFilter,
)
from opsmetrics.storage.exclusion_records import (
    ExclusionBucket,
    ExclusionCheck,
    Test,
    exclusion_checks,
    fold_rows,
)

_AGG_SQL = {
    Agg.COUNT: "count(*)",
    Agg.SUM: "coalesce(sum(value), 0)",
    Agg.UNIQUE: "count(DISTINCT nullif(entity, ''))",
    Agg.AVG: "avg(value)",
    Agg.MIN: "min(value)",
    Agg.MAX: "max(value)",
    Agg.P50: "quantile_cont(value, 0.5)",
    Agg.P90: "quantile_cont(value, 0.9)",
    Agg.P95: "quantile_cont(value, 0.95)",
    Agg.P99: "quantile_cont(value, 0.99)",
}
_COUNTS_EVENTS = (Agg.COUNT, Agg.UNIQUE)


@dataclass
class Params:
    """Named bind parameters; `add` returns the placeholder to put in the SQL text."""

    values: dict[str, Any] = field(default_factory=dict)

    def add(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return "$" + name


def json_pointer(prop: str) -> str:
    """RFC 6901 pointer to a top-level property: any name, dots and quotes included."""
    return "/" + prop.replace("~", "~0").replace("/", "~1")


def prop_sql(p: Params, prop: str, props_col: str = "props") -> str:
    return f"json_extract_string({props_col}, {p.add(json_pointer(prop))})"


def number_sql(x: str) -> str:
    """SQL text `x` read as a number; NULL where it is not one."""
    return f"TRY_CAST({x} AS DOUBLE)"


_COMPARE_SQL = {FilterOp.GT: ">", FilterOp.GTE: ">=", FilterOp.LT: "<", FilterOp.LTE: "<="}


def filter_sql(p: Params, f: PropFilter, props_col: str = "props") -> str:
    x = prop_sql(p, f.prop, props_col)
    compare = _COMPARE_SQL.get(f.op)
    if compare is not None:
        value = f.values[0] if f.values else None  # no value: matches nothing
        return f"coalesce({number_sql(x)} {compare} {number_sql(p.add(value))}, false)"
    match f.op:
        case FilterOp.EQ:
            return f"{x} = {p.add(f.values[0])}"
        case FilterOp.NE:
            return f"{x} IS DISTINCT FROM {p.add(f.values[0])}"
        case FilterOp.IN:
            return f"coalesce(list_contains({p.add(list(f.values))}::VARCHAR[], {x}), false)"
        case FilterOp.NOT_IN:
            return f"NOT coalesce(list_contains({p.add(list(f.values))}::VARCHAR[], {x}), false)"
        case FilterOp.EXISTS:
            return f"{x} IS NOT NULL"
        case FilterOp.NOT_EXISTS:
            return f"{x} IS NULL"
    raise AssertionError(f"unhandled filter operator {f.op}")


def match_sql(p: Params, m: EventMatch, alias: str = "") -> str:
    """Conditions (joined by AND, never empty) selecting the events `m` matches."""
    conds = [f"{alias}entity <> ''"]
    if m.name is not None:
        conds.append(f"{alias}name = {p.add(m.name)}")
    conds += [filter_sql(p, f, alias + "props") for f in m.where]
    return " AND ".join(conds)


class Calendar:
    """SQL for calendar periods of a grain in a timezone, over millisecond timestamps.

    UTC hour/day/week are integer arithmetic (fast); every other case converts to local time
    with DuckDB's ICU timezone functions, so DST days have 23 or 25 hours.
    """

    def __init__(self, p: Params, grain: Grain, tz: str) -> None:
        self.grain = grain
        self.fixed = FIXED_UTC_GRAINS.get(grain) if tz == UTC else None
        self._tz = "" if self.fixed else p.add(tz)

    def period(self, ms: str) -> str:
        """The period holding timestamp `ms`: an integer (fixed) or a local TIMESTAMP."""
        if self.fixed:
            width, origin = self.fixed
            # DuckDB's // truncates: exact for timestamps from the origin (1970-01-05) on
            return f"(({ms} - {origin}) // {width} * {width} + {origin})"
        local = f"timezone({self._tz}, to_timestamp({ms} / 1000))"
        return f"date_trunc('{self.grain.value}', {local})"

    def start_ms(self, period: str) -> str:
        """UTC milliseconds of the start of a period from `period`."""
        return period if self.fixed else f"epoch_ms(timezone({self._tz}, {period}))"

    def diff(self, a: str, b: str) -> str:
        """Whole periods from period a to period b."""
        if self.fixed:
            return f"(({b} - {a}) // {self.fixed[0]})"
        return f"date_diff('{self.grain.value}', {a}, {b})"


def bucket_sql(p: Params, q: EventAggregate) -> tuple[str, str]:
    """SQL for the bucket of an event's `ts`, and for the UTC ms start of a bucket `b`."""
    if q.grain is None:
        return p.add(q.start_ms), "b"
    cal = Calendar(p, q.grain, q.tz)
    return cal.period("ts"), cal.start_ms("b")


def value_sql(p: Params, q: EventAggregate) -> str:
    """The number an aggregation reads: the event's value or `value_prop` as a number."""
    return "value" if q.value_prop is None else number_sql(prop_sql(p, q.value_prop))


def value_filter_sql(p: Params, v: str, f: ValueFilter) -> str:
    return f"coalesce({v} {_COMPARE_SQL[f.op]} {p.add(f.value)}, false)"


def scope_sql(p: Params, q: EventAggregate) -> list[str]:
    """Conditions selecting the events in scope of `q`: its name and time range."""
    conds = ["ts >= " + p.add(q.start_ms), "ts < " + p.add(q.end_ms)]
    if q.name is not None:
        conds.append("name = " + p.add(q.name))
    return conds


def aggregate_sql(q: EventAggregate) -> tuple[str, dict[str, Any]]:
    p = Params()
    bucket, bucket_start = bucket_sql(p, q)
    groups = [f"{prop_sql(p, prop)} AS g{i}" for i, prop in enumerate(q.by)]
    value = value_sql(p, q) + " AS value"
    conds = scope_sql(p, q)
    conds += [filter_sql(p, f) for f in q.where]
    conds += [value_filter_sql(p, value_sql(p, q), f) for f in q.value_where]
    if q.key is not None:
        conds.append(f"{key_sql(p, q.key.prop)} <> ''")
    inner = ", ".join([f"{bucket} AS b", *groups, "entity", value])
    gs = [f"coalesce(g{i}, '')" for i in range(len(q.by))]
    keys = ", ".join(["b", *gs])
    n = "count(*)" if q.agg in _COUNTS_EVENTS else "count(value)"
    sql = (
        f"SELECT {', '.join([bucket_start, *gs, _AGG_SQL[q.agg], n])} "
        f"FROM (SELECT {inner} FROM events WHERE {' AND '.join(conds)}) "
        f"GROUP BY {keys} ORDER BY {keys}"
    )
    return sql, p.values


def check_sql(p: Params, q: EventAggregate, c: ExclusionCheck) -> str:
    """A condition that holds for an event that fails check `c` of `q`."""
    match c.test:
        case Test.MISSING:
            return ("value" if c.prop is None else prop_sql(p, c.prop)) + " IS NULL"
        case Test.NOT_A_NUMBER:
            return f"{number_sql(prop_sql(p, c.prop or ''))} IS NULL"
        case Test.FAILS_FILTER:
            assert isinstance(c.rule, PropFilter)
            return f"NOT coalesce({filter_sql(p, c.rule)}, false)"
        case Test.FAILS_VALUE:
            assert isinstance(c.rule, ValueFilter)
            return f"NOT {value_filter_sql(p, value_sql(p, q), c.rule)}"
        case Test.NO_KEY:
            return f"{key_sql(p, c.prop)} = ''"


def key_sql(p: Params, prop: str | None) -> str:
    """The key an `EntityKey` names as text, '' where the event has none."""
    return "coalesce(" + ("entity" if prop is None else prop_sql(p, prop)) + ", '')"


def exclusions_sql(q: EventAggregate) -> tuple[str, dict[str, Any]]:
    """Per bucket, group and the number of the first check of `exclusion_checks(q)` an
    in-scope event fails (0: kept), the events."""
    p = Params()
    bucket, bucket_start = bucket_sql(p, q)
    groups = [f"{prop_sql(p, prop)} AS g{i}" for i, prop in enumerate(q.by)]
    whens = [f"WHEN {check_sql(p, q, c)} THEN {i}" for i, c in enumerate(exclusion_checks(q), 1)]
    why = f"CASE {' '.join(whens)} ELSE 0 END" if whens else "0"
    gs = [f"coalesce(g{i}, '')" for i in range(len(q.by))]
    keys = ", ".join(["b", *gs, "why"])
    sql = (
        f"SELECT {', '.join([bucket_start, *gs, 'why', 'count(*)'])} "
        f"FROM (SELECT {', '.join([f'{bucket} AS b', *groups, f'{why} AS why'])} "
        f"FROM events WHERE {' AND '.join(scope_sql(p, q))}) GROUP BY {keys} ORDER BY {keys}"
    )
    return sql, p.values


def rolling_unique_sql(q: RollingUnique) -> tuple[str, dict[str, Any]]:
    """Each entity is active on the local days [d, d + window) after each day d it acts on;
    runs are clipped at its next active day, so a +1/-1 running sum counts each entity once."""
    p = Params()
    cal = Calendar(p, Grain.DAY, q.tz)
    first_ms = p.add(q.start_ms - (q.window_days + 2) * DAY_MS)  # +2: DST and offsets
    w, start, end = p.add(q.window_days), p.add(q.start_ms), p.add(q.end_ms)
    last = p.add(q.end_ms - 1)

    def day(ms: str) -> str:
        if cal.fixed:
            return f"({ms} // {DAY_MS})"
        return f"date_diff('day', DATE '1970-01-01', CAST({cal.period(ms)} AS DATE))"

    day_ms = f"d * {DAY_MS}"
    if not cal.fixed:
        day_ms = cal.start_ms("CAST(DATE '1970-01-01' + CAST(d AS INTEGER) AS TIMESTAMP)")
    sql = f"""
        WITH active AS (
            SELECT DISTINCT entity, {day("ts")} AS d FROM events
            WHERE ts >= {first_ms} AND ts < {end} AND {match_sql(p, q.match)}
        ), runs AS (
            SELECT d, least(d + {w}, coalesce(lead(d) OVER (PARTITION BY entity ORDER BY d),
                                              d + {w})) AS d_end
            FROM active
        ), deltas AS (
            SELECT d, sum(c) AS c FROM (SELECT d, 1 AS c FROM runs
                                        UNION ALL SELECT d_end, -1 FROM runs) GROUP BY d
        ), running AS (SELECT d, sum(c) OVER (ORDER BY d) AS n FROM deltas),
        days AS (
            SELECT d, {day_ms} AS t
            FROM (SELECT unnest(range({day(start)}, {day(last)} + 1)) AS d)
        )
        SELECT days.t, coalesce(running.n, 0) FROM days ASOF LEFT JOIN running
        ON days.d >= running.d ORDER BY days.t
    """
    return sql, p.values


def funnel_sql(q: Funnel) -> tuple[str, dict[str, Any]]:
    """Greedy earliest matching, one LEFT JOIN per step: t_k = min(ts) of step-k events in
    (t_{k-1}, t_1 + window]."""
    p = Params()
    start, end, window = p.add(q.start_ms), p.add(q.end_ms), p.add(q.window_ms)
    group = "''" if q.breakdown is None else f"arg_min({prop_sql(p, q.breakdown)}, ts)"
    ctes = [
        f"f1 AS (SELECT entity, min(ts) AS t1, {group} AS g FROM events "
        f"WHERE ts >= {start} AND ts < {end} AND {match_sql(p, q.steps[0])} GROUP BY entity)"
    ]
    carried = ["f1.entity", "f1.t1", "f1.g"]
    for k in range(2, len(q.steps) + 1):
        ctes.append(
            f"e{k} AS (SELECT entity, ts FROM events WHERE ts > {start} "
            f"AND ts <= {end} + {window} AND {match_sql(p, q.steps[k - 1])})"
        )
        cols = ", ".join(c.replace("f1.", f"f{k - 1}.") for c in carried)
        ctes.append(
            f"f{k} AS (SELECT {cols}, min(e{k}.ts) AS t{k} FROM f{k - 1} LEFT JOIN e{k} "
            f"ON e{k}.entity = f{k - 1}.entity AND e{k}.ts > f{k - 1}.t{k - 1} "
            f"AND e{k}.ts <= f{k - 1}.t1 + {window} GROUP BY {cols})"
        )
        carried.append(f"f1.t{k}")
    n = len(q.steps)
    stats = ["count(t1)"] + [
        f"count(t{k}), median(t{k} - t{k - 1}), avg(t{k} - t{k - 1})" for k in range(2, n + 1)
    ]
    sql = (
        f"WITH {', '.join(ctes)} SELECT coalesce(g, ''), {', '.join(stats)} "
        f"FROM f{n} GROUP BY 1 ORDER BY 1"
    )
    return sql, p.values


def retention_sql(q: Retention) -> tuple[str, dict[str, Any]]:
    p = Params()
    cal = Calendar(p, q.grain, q.tz)
    start, end = p.add(q.start_ms), p.add(q.end_ms)
    returning = match_sql(p, q.returning, "e.") if q.returning else "true"
    sql = f"""
        WITH firsts AS (
            SELECT entity, min(ts) AS t0 FROM events
            WHERE ts < {end} AND {match_sql(p, q.start)} GROUP BY entity
        ), cohort AS (
            SELECT entity, t0, {cal.period("t0")} AS cb FROM firsts WHERE t0 >= {start}
        ), returned AS (
            SELECT DISTINCT c.entity, c.cb, {cal.diff("c.cb", cal.period("e.ts"))} AS k
            FROM cohort c JOIN events e ON e.entity = c.entity
            WHERE e.ts >= c.t0 AND e.ts < {end} AND {returning}
        ), cells AS (
            SELECT cb, k, count(*) AS n FROM returned WHERE k <= {p.add(q.periods)}
            GROUP BY cb, k
        ), sizes AS (SELECT cb, count(*) AS size FROM cohort GROUP BY cb)
        SELECT {cal.start_ms("sizes.cb")} AS t, sizes.size, cells.k, cells.n
        FROM sizes LEFT JOIN cells ON cells.cb = sizes.cb ORDER BY t, cells.k
    """
    return sql, p.values


class EventQueries:
    """Mixed into DuckDBStorage: the event-analytics half of the Storage protocol."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError  # provided by the storage class

    def event_aggregate(self, q: EventAggregate) -> list[Bucket]:
        sql, params = aggregate_sql(q)
        rows = self._cursor().execute(sql, params).fetchall()
        return [
            Bucket(int(r[0]), dict(zip(q.by, r[1:-2], strict=True)), _float(r[-2]), int(r[-1]))
            for r in rows
        ]

    def event_exclusions(self, q: EventAggregate) -> list[ExclusionBucket]:
        sql, params = exclusions_sql(q)
        return fold_rows(q, self._cursor().execute(sql, params).fetchall())

    def event_rolling_unique(self, q: RollingUnique) -> list[Bucket]:
        sql, params = rolling_unique_sql(q)
        rows = self._cursor().execute(sql, params).fetchall()
        return [Bucket(int(t), {}, float(n), int(n)) for t, n in rows]

    def event_funnel(self, q: Funnel) -> list[FunnelRow]:
        sql, params = funnel_sql(q)
        rows = self._cursor().execute(sql, params).fetchall()
        return [row for r in rows for row in _funnel_rows(r)]

    def event_retention(self, q: Retention) -> list[RetentionRow]:
        sql, params = retention_sql(q)
        cohorts: dict[int, RetentionRow] = {}
        for t, size, k, n in self._cursor().execute(sql, params).fetchall():
            row = cohorts.setdefault(int(t), RetentionRow(int(t), int(size)))
            if k is not None:
                row.returned[int(k)] = int(n)
        return list(cohorts.values())


def _funnel_rows(r: tuple[Any, ...]) -> list[FunnelRow]:
    """One result row (group, count1, then count/median/avg per later step) → per-step rows."""
    group = str(r[0])
    out = [FunnelRow(group, 0, int(r[1]), None, None)]
    for i in range(2, len(r), 3):
        out.append(FunnelRow(group, len(out), int(r[i]), _opt(r[i + 1]), _opt(r[i + 2])))
    return out


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)
