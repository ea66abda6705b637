"""Event analytics in ClickHouse: aggregations per calendar bucket, rolling uniques, funnels and
retention, each one SQL statement with the same answers as storage/duckdb/event_queries.py.

Funnels and retention follow the DuckDB backend's definitions (first time through; cohorts by
first start event) rather than windowFunnel/retention(), whose semantics differ (windowFunnel
takes the best attempt of any step-1 event and gives no step times). Each is one scan that
gathers an entity's relevant timestamps in arrays, then walks them with array functions, so no
event row reaches Python and no self-join is needed.
"""

from __future__ import annotations

from opsmetrics.storage.clickhouse.event_sql import (
    COMPARE_SQL,
    EVENTS,
    MS,
    Calendar,
    Params,
    filter_sql,
    match_sql,
    prop_number,
    prop_or_null,
    prop_text,
)
from opsmetrics.storage.event_records import (
    DAY_MS,
    Agg,
    EventAggregate,
    Funnel,
    Grain,
    PropFilter,
    Retention,
    RollingUnique,
    ValueFilter,
)
from opsmetrics.storage.exclusion_records import ExclusionCheck, Test, exclusion_checks

_AGG_SQL = {
    Agg.COUNT: "count()",
    Agg.SUM: "coalesce(sum(v), 0)",
    Agg.UNIQUE: "uniqExact(nullIf(entity, ''))",
    Agg.AVG: "avg(v)",
    Agg.MIN: "min(v)",
    Agg.MAX: "max(v)",
    Agg.P50: "quantileExactInclusive(0.5)(v)",
    Agg.P90: "quantileExactInclusive(0.9)(v)",
    Agg.P95: "quantileExactInclusive(0.95)(v)",
    Agg.P99: "quantileExactInclusive(0.99)(v)",
}
_COUNTS_EVENTS = (Agg.COUNT, Agg.UNIQUE)
#: Larger than any timestamp: a step after a missing step matches nothing.
_NEVER = 9_223_372_036_854_775_807

Query = tuple[str, dict[str, object]]


def _bucket_sql(p: Params, q: EventAggregate) -> tuple[str, str]:
    """SQL for the bucket of an event (from `ms`), and for the UTC ms start of a bucket `b`."""
    if q.grain is None:
        return p.ms(q.start_ms), "b"
    cal = Calendar(p, q.grain, q.tz)
    return cal.period("ms"), cal.start_ms("b")


def _value_sql(p: Params, q: EventAggregate) -> str:
    """The number an aggregation reads: the event's value or `value_prop` as a number."""
    return "value" if q.value_prop is None else prop_number(p, q.value_prop)


def _value_filter_sql(p: Params, v: str, f: ValueFilter) -> str:
    return f"coalesce({v} {COMPARE_SQL[f.op]} {p.add(f.value, 'Float64')}, false)"


def _scope_sql(p: Params, q: EventAggregate) -> list[str]:
    """Conditions selecting the events in scope of `q`: its name and time range."""
    conds = [f"ts >= {p.ts(q.start_ms)}", f"ts < {p.ts(q.end_ms)}"]
    if q.name is not None:
        conds.append(f"name = {p.add(q.name, 'String')}")
    return conds


def aggregate_sql(q: EventAggregate) -> Query:
    p = Params()
    bucket, bucket_start = _bucket_sql(p, q)
    groups = [f"{prop_text(p, prop)} AS g{i}" for i, prop in enumerate(q.by)]
    value = _value_sql(p, q)
    conds = _scope_sql(p, q)
    conds += [filter_sql(p, f) for f in q.where]
    conds += [_value_filter_sql(p, _value_sql(p, q), f) for f in q.value_where]
    if q.key is not None:
        conds.append(f"{_key_sql(p, q.key.prop)} != ''")
    inner = ", ".join([f"{MS} AS ms", f"{bucket} AS b", *groups, "entity", f"{value} AS v"])
    keys = ", ".join(["b", *(f"g{i}" for i in range(len(q.by)))])
    n = "count()" if q.agg in _COUNTS_EVENTS else "count(v)"
    cols = [bucket_start, *(f"g{i}" for i in range(len(q.by))), _AGG_SQL[q.agg], n]
    sql = (
        f"SELECT {', '.join(cols)} "
        f"FROM (SELECT {inner} FROM {EVENTS} WHERE {' AND '.join(conds)}) "
        f"GROUP BY {keys} ORDER BY {keys}"
    )
    return sql, p.values


def _check_sql(p: Params, q: EventAggregate, c: ExclusionCheck) -> str:
    """A condition that holds for an event that fails check `c` of `q`."""
    match c.test:
        case Test.MISSING:
            if c.prop is None:
                return "value IS NULL"
            return f"NOT mapContains(props, {p.add(c.prop, 'String')})"
        case Test.NOT_A_NUMBER:
            return f"NOT mapContains(nums, {p.add(c.prop or '', 'String')})"
        case Test.FAILS_FILTER:
            assert isinstance(c.rule, PropFilter)
            return f"NOT {filter_sql(p, c.rule)}"
        case Test.FAILS_VALUE:
            assert isinstance(c.rule, ValueFilter)
            return f"NOT {_value_filter_sql(p, _value_sql(p, q), c.rule)}"
        case Test.NO_KEY:
            return f"{_key_sql(p, c.prop)} = ''"


def _key_sql(p: Params, prop: str | None) -> str:
    """The key an `EntityKey` names as text, '' where the event has none."""
    return "entity" if prop is None else prop_text(p, prop)


def exclusions_sql(q: EventAggregate) -> Query:
    """Per bucket, group and the number of the first check of `exclusion_checks(q)` an
    in-scope event fails (0: kept), the events: the same answer as the DuckDB backend's."""
    p = Params()
    bucket, bucket_start = _bucket_sql(p, q)
    groups = [f"{prop_text(p, prop)} AS g{i}" for i, prop in enumerate(q.by)]
    whens = [f"WHEN {_check_sql(p, q, c)} THEN {i}" for i, c in enumerate(exclusion_checks(q), 1)]
    why = f"CASE {' '.join(whens)} ELSE 0 END" if whens else "0"
    conds = _scope_sql(p, q)
    gs = [f"g{i}" for i in range(len(q.by))]
    keys = ", ".join(["b", *gs, "why"])
    inner = ", ".join([f"{MS} AS ms", f"{bucket} AS b", *groups, f"toUInt32({why}) AS why"])
    sql = (
        f"SELECT {', '.join([bucket_start, *gs, 'why', 'count()'])} "
        f"FROM (SELECT {inner} FROM {EVENTS} WHERE {' AND '.join(conds)}) "
        f"GROUP BY {keys} ORDER BY {keys}"
    )
    return sql, p.values


def rolling_unique_sql(q: RollingUnique) -> Query:
    """Each entity is active on the local days [d, d + window) after each day d it acts on;
    runs are clipped at its next active day, so a +1/-1 running sum counts each entity once.
    Zero deltas on every day of the range give each day its row."""
    p = Params()
    cal = Calendar(p, Grain.DAY, q.tz)
    first = p.ts(q.start_ms - (q.window_days + 2) * DAY_MS)  # +2: DST and offsets
    w, end = p.ms(q.window_days), p.ts(q.end_ms)

    def day(ms: str) -> str:
        return f"intDiv({cal.local(ms)}, {DAY_MS})"

    lo, hi = day(p.ms(q.start_ms)), day(p.ms(q.end_ms - 1))
    day_ms = cal.start_ms(f"d * {DAY_MS}")
    run = f"[(ds[i], 1), (least(ds[i] + {w}, if(i < length(ds), ds[i + 1], ds[i] + {w})), -1)]"
    sql = f"""
        WITH active AS (
            SELECT entity, arraySort(groupUniqArray({day("ms")})) AS ds
            FROM (SELECT entity, {MS} AS ms FROM {EVENTS}
                  WHERE ts >= {first} AND ts < {end} AND {match_sql(p, q.match)})
            GROUP BY entity
        ), deltas AS (
            SELECT r.1 AS d, toInt64(r.2) AS c
            FROM active ARRAY JOIN arrayFlatten(arrayMap(i -> {run}, arrayEnumerate(ds))) AS r
            UNION ALL
            SELECT toInt64(arrayJoin(range({lo}, {hi} + 1))) AS d, toInt64(0) AS c
        )
        SELECT {day_ms} AS t, n FROM (
            SELECT d, sum(sum(c)) OVER (ORDER BY d) AS n FROM deltas GROUP BY d
        ) WHERE d >= {lo} AND d <= {hi} ORDER BY d
    """
    return sql, p.values


def funnel_sql(q: Funnel) -> Query:
    """Greedy earliest matching over each entity's step timestamps: t_k is the least step-k
    time in (t_{k-1}, t_1 + window]."""
    p = Params()
    start, end, window = p.ms(q.start_ms), p.ms(q.end_ms), p.ms(q.window_ms)
    n = len(q.steps)
    group = "''" if q.breakdown is None else prop_or_null(p, q.breakdown)
    flags = [f"({match_sql(p, q.steps[0])} AND ms >= {start} AND ms < {end}) AS f1"]
    flags += [
        f"({match_sql(p, step)} AND ms > {start}) AS f{k}" for k, step in enumerate(q.steps[1:], 2)
    ]
    any_step = " OR ".join(f"f{k}" for k in range(1, n + 1))
    rows = (
        f"SELECT entity, {MS} AS ms, {group} AS gv, {', '.join(flags)} FROM {EVENTS} "
        f"WHERE ts >= {p.ts(q.start_ms)} AND ts <= fromUnixTimestamp64Milli({end} + {window}, "
        f"'UTC') AND entity != '' AND ({any_step})"
    )
    arrays = "".join(f", groupArrayIf(ms, f{k}) AS a{k}" for k in range(2, n + 1))
    per_entity = (
        f"SELECT minIf(ms, f1) AS t1, argMinIf(gv, ms, f1) AS g{arrays} "
        f"FROM ({rows}) GROUP BY entity HAVING countIf(f1) > 0"
    )
    times = "".join(
        f", arrayReduce('minOrNull', arrayFilter(x -> x > ifNull(t{k - 1}, {_NEVER}) "
        f"AND x <= t1 + {window}, a{k})) AS t{k}"
        for k in range(2, n + 1)
    )
    stats = ["count()"] + [
        f"count(t{k}), quantileExactInclusive(0.5)(t{k} - t{k - 1}), avg(t{k} - t{k - 1})"
        for k in range(2, n + 1)
    ]
    sql = (
        f"SELECT ifNull(g, '') AS grp, {', '.join(stats)} "
        f"FROM (SELECT g, t1{times} FROM ({per_entity})) GROUP BY grp ORDER BY grp"
    )
    return sql, p.values


def retention_sql(q: Retention) -> Query:
    """Rows (cohort start, k, entities): k = -1 carries the cohort's size, k >= 0 the entities
    that returned k periods after their cohort's."""
    p = Params()
    cal = Calendar(p, q.grain, q.tz)
    start, end = p.ms(q.start_ms), p.ts(q.end_ms)
    returning = match_sql(p, q.returning) if q.returning else "true"
    ks = (
        f"arrayFilter(k -> k <= {p.ms(q.periods)}, arrayDistinct(arrayMap("
        f"x -> {cal.diff('cb', cal.period('x'))}, arrayFilter(x -> x >= t0, rts))))"
    )
    sql = f"""
        SELECT {cal.start_ms("cb")} AS t, k, count() AS n FROM (
            SELECT {cal.period("t0")} AS cb, arrayJoin(arrayConcat([-1], {ks})) AS k
            FROM (
                SELECT entity, minIf(ms, fs) AS t0, groupArrayIf(ms, fr) AS rts
                FROM (SELECT entity, {MS} AS ms, {match_sql(p, q.start)} AS fs,
                             {returning} AS fr
                      FROM {EVENTS} WHERE ts < {end} AND entity != '' AND (fs OR fr))
                GROUP BY entity HAVING countIf(fs) > 0 AND t0 >= {start}
            )
        ) GROUP BY cb, k ORDER BY cb, k
    """
    return sql, p.values
