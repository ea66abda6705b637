"""Experiment arm moments and KPI queries (state, conversion, `sql:`) in ClickHouse, each one SQL
statement with the answers of storage/duckdb/experiment_queries.py and kpi_queries.py.

As in event_queries.py, user text only reaches SQL as server-side parameters, except the body of
an `sql:` KPI: that runs wrapped as a subquery (so only a SELECT parses) with `readonly=1` and
execution limits, its `$name` parameters rewritten to server-side `{name:Int64}` ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from opsmetrics.storage.clickhouse.event_sql import (
    EVENTS,
    MS,
    Params,
    match_sql,
    prop_number,
    prop_or_null,
    prop_text,
)
from opsmetrics.storage.event_records import EventMatch
from opsmetrics.storage.experiment_records import ArmMoments, UnitAgg, UnitColumn
from opsmetrics.storage.kpi_records import ConversionQuery, StateCombine, StateQuery
from opsmetrics.storage.sql_sandbox import SqlLimits, wrapped

Query = tuple[str, dict[str, object]]
_Key = tuple[EventMatch, int, int, str | None]
_PICK = {
    UnitAgg.ANY: "toFloat64(n{g} > 0)",
    UnitAgg.COUNT: "toFloat64(n{g})",
    UnitAgg.SUM: "s{g}",
}
_COMBINE_SQL = {
    StateCombine.SUM: "sum(lv)",
    StateCombine.COUNT: "countIf(lv != 0)",
    StateCombine.AVG: "avg(lv)",
    StateCombine.MIN: "min(lv)",
    StateCombine.MAX: "max(lv)",
}


def sql_settings(limits: SqlLimits) -> dict[str, object]:
    """The settings an `sql:` KPI runs with. `readonly=1` refuses table functions that read
    files or reach other servers (file, url, remote, s3, mysql…) and settings changes, also in
    a SETTINGS clause; the checker (catalog/kpi_sql.py) refuses the scalar `file()`, which
    readonly does not stop. `readonly` goes last: a server refuses setting changes after it."""
    return {
        "max_execution_time": limits.timeout_s,
        "max_result_rows": limits.max_rows + 1,
        "result_overflow_mode": "break",
        "readonly": 1,
    }


#: A quoted literal or comment (left alone), or a `$name` parameter.
_SQL_TOKEN = re.compile(
    r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|--[^\n]*|/\*.*?\*/|\$([a-z_]+)\b",
    re.DOTALL,
)


def _key(col: UnitColumn) -> _Key:
    # COUNT and ANY never read values: let them share the array of a SUM over the same events
    return (col.match, col.from_ms, col.to_ms, col.value_prop if col.agg is UnitAgg.SUM else None)


def _unit_sums(p: Params, g: int, key: _Key) -> str:
    """Per entity: n{g} events and s{g} their value sum in [t0 + from, t0 + to)."""
    _, lo_ms, hi_ms, _ = key
    inside = f"arrayFilter(x -> x.1 >= t0 + {p.ms(lo_ms)} AND x.1 < t0 + {p.ms(hi_ms)}, a{g})"
    return f"length({inside}) AS n{g}, arraySum(arrayMap(x -> ifNull(x.2, 0), {inside})) AS s{g}"


def arm_moments_sql(q: ArmMoments) -> Query:
    p = Params()
    groups: dict[_Key, int] = {}
    for col in q.columns:
        groups.setdefault(_key(col), len(groups))
    lo = min([q.start_ms] + [q.start_ms + c.from_ms for c in q.columns])
    hi = max([q.end_ms] + [q.end_ms + c.to_ms for c in q.columns])
    start, end = p.ms(q.start_ms), p.ms(q.end_ms)
    flags = [f"({match_sql(p, q.exposure)} AND ms >= {start} AND ms < {end}) AS fx"]
    for (match, _, _, value_prop), g in groups.items():
        value = "value" if value_prop is None else prop_number(p, value_prop)
        flags += [f"{match_sql(p, match)} AS f{g}", f"{value} AS v{g}"]
    any_flag = " OR ".join(["fx", *(f"f{g}" for g in groups.values())])
    rows = (
        f"SELECT entity, {MS} AS ms, {prop_or_null(p, q.variant_prop)} AS variant, "
        f"{', '.join(flags)} FROM {EVENTS} WHERE ts >= {p.ts(lo)} AND ts < {p.ts(hi)} "
        f"AND entity != '' AND ({any_flag})"
    )
    arrays = "".join(f", groupArrayIf((ms, v{g}), f{g}) AS a{g}" for g in groups.values())
    per_entity = (
        f"SELECT minIf(ms, fx) AS t0, argMinIf(variant, ms, fx) AS arm{arrays} "
        f"FROM ({rows}) GROUP BY entity HAVING countIf(fx) > 0"
    )
    sums = ", ".join(_unit_sums(p, g, key) for key, g in groups.items())
    picks = [
        f"{_PICK[col.agg].format(g=groups[_key(col)])} AS u{i}" for i, col in enumerate(q.columns)
    ]
    k = len(q.columns)
    aggs = ["count()"] + [f"sum(u{i})" for i in range(k)]
    aggs += [f"sum(u{i} * u{j})" for i in range(k) for j in range(i, k)]
    units = ", ".join(["ifNull(arm, '') AS variant_", *([sums] if sums else []), *picks])
    sql = (
        f"SELECT variant_, {', '.join(aggs)} FROM (SELECT {units} FROM ({per_entity})) "
        "GROUP BY variant_ ORDER BY variant_"
    )
    return sql, p.values


def _key_sql(p: Params, prop: str | None) -> str:
    return "entity" if prop is None else prop_text(p, prop)


def _field_sql(p: Params, prop: str | None) -> str:
    return "value" if prop is None else prop_number(p, prop)


def state_sql(q: StateQuery) -> Query:
    p = Params()
    ends = p.add(list(q.ends), "Array(Int64)")
    sql = f"""
        SELECT i - 1, {_COMBINE_SQL[q.combine]}, count(lv) FROM (
            SELECT i, k, argMax(v, ms) AS lv FROM (
                SELECT {_key_sql(p, q.key_prop)} AS k, {MS} AS ms,
                       {_field_sql(p, q.field_prop)} AS v
                FROM {EVENTS}
                WHERE name = {p.add(q.event, "String")} AND ts < {p.ts(max(q.ends))} AND k != ''
            ) ARRAY JOIN arrayFilter(j -> {ends}[j] > ms, arrayEnumerate({ends})) AS i
            GROUP BY i, k
        ) GROUP BY i ORDER BY i
    """
    return sql, p.values


def conversion_sql(q: ConversionQuery) -> Query:
    p = Params()
    starts = p.add(list(q.starts), "Array(Int64)")
    ends = p.add(list(q.ends), "Array(Int64)")
    within = p.ms(q.within_ms)
    lo, hi = min(q.starts), max(q.ends)
    gsel = "".join(f", {prop_text(p, prop)} AS g{i}" for i, prop in enumerate(q.by))
    gagg = "".join(f", argMin(g{i}, ms) AS h{i}" for i in range(len(q.by)))
    gcols = "".join(f", h{i}" for i in range(len(q.by)))
    in_period = f"arrayFilter(j -> {starts}[j] <= ms AND ms < {ends}[j], arrayEnumerate({starts}))"
    sql = f"""
        WITH f AS (
            SELECT i, k, min(ms) AS t0{gagg} FROM (
                SELECT {_key_sql(p, q.key_prop)} AS k, {MS} AS ms{gsel} FROM {EVENTS}
                WHERE name = {p.add(q.from_event, "String")} AND ts >= {p.ts(lo)}
                  AND ts < {p.ts(hi)} AND k != ''
            ) ARRAY JOIN {in_period} AS i
            GROUP BY i, k
        ), tos AS (
            SELECT {_key_sql(p, q.key_prop)} AS k, groupArray({MS}) AS tt FROM {EVENTS}
            WHERE name = {p.add(q.to_event, "String")} AND ts > {p.ts(lo)}
              AND ts <= fromUnixTimestamp64Milli({p.ms(hi)} + {within}, 'UTC') AND k != ''
            GROUP BY k
        )
        SELECT i - 1{gcols}, count(),
               countIf(arrayExists(x -> x > t0 AND x <= t0 + {within}, tt))
        FROM f LEFT JOIN tos USING (k)
        GROUP BY i{gcols} ORDER BY i{gcols}
    """
    return sql, p.values


def newest_sql(names: list[str]) -> Query:
    # no FINAL: a duplicate not merged yet has the same timestamp
    p = Params()
    sql = f"SELECT maxOrNull({MS}) FROM events WHERE has({p.add(names, 'Array(String)')}, name)"
    return sql, p.values


def user_sql(query: str, params: Mapping[str, int], limits: SqlLimits) -> Query:
    """An `sql:` KPI as one wrapped SELECT; its `$name` parameters become `{name:Int64}`."""
    used: dict[str, object] = {}

    def bind(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None or name not in params:
            return m.group(0)
        used[name] = params[name]
        return f"{{{name}:Int64}}"

    return wrapped(_SQL_TOKEN.sub(bind, query), limits), used
