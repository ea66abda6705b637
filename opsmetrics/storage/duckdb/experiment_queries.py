"""Experiment arm moments in DuckDB (storage/experiment_records.py) in one SQL statement.

Columns that read the same events over the same window share one join: it yields the count
and the value sum per entity, from which ANY, COUNT and SUM are taken. Only bound parameters
carry user text; SQL text comes from our enums and column numbers.
"""

from __future__ import annotations

from typing import Any

import duckdb

from opsmetrics.storage.duckdb.event_queries import Params, match_sql, number_sql, prop_sql
from opsmetrics.storage.event_records import EventMatch
from opsmetrics.storage.experiment_records import ArmMoments, ArmMomentsRow, UnitAgg, UnitColumn

_Key = tuple[EventMatch, int, int, str | None]
_PICK = {
    UnitAgg.ANY: "(j{g}.n > 0)::DOUBLE",
    UnitAgg.COUNT: "j{g}.n::DOUBLE",
    UnitAgg.SUM: "j{g}.s",
}


def _join_cte(p: Params, g: int, key: _Key) -> str:
    match, lo_ms, hi_ms, value_prop = key
    value = "e.value" if value_prop is None else number_sql(prop_sql(p, value_prop, "e.props"))
    lo, hi = p.add(lo_ms), p.add(hi_ms)
    return (
        f"j{g} AS (SELECT x.entity, count(*) AS n, coalesce(sum({value}), 0) AS s "
        f"FROM exposed x JOIN events e ON e.entity = x.entity "
        f"WHERE e.ts >= x.t0 + {lo} AND e.ts < x.t0 + {hi} AND {match_sql(p, match, 'e.')} "
        "GROUP BY x.entity)"
    )


def _key(col: UnitColumn) -> _Key:
    # COUNT and ANY never read values: let them share the join of a SUM over the same events
    return (col.match, col.from_ms, col.to_ms, col.value_prop if col.agg is UnitAgg.SUM else None)


def arm_moments_sql(q: ArmMoments) -> tuple[str, dict[str, Any]]:
    p = Params()
    variant = prop_sql(p, q.variant_prop)
    ctes = [
        f"exposed AS (SELECT entity, min(ts) AS t0, arg_min({variant}, ts) AS arm FROM events "
        f"WHERE ts >= {p.add(q.start_ms)} AND ts < {p.add(q.end_ms)} "
        f"AND {match_sql(p, q.exposure)} GROUP BY entity)"
    ]
    groups: dict[_Key, int] = {}
    for col in q.columns:
        groups.setdefault(_key(col), len(groups))
    ctes += [_join_cte(p, g, key) for key, g in groups.items()]
    joins = " ".join(f"LEFT JOIN j{g} ON j{g}.entity = exposed.entity" for g in groups.values())
    picks = [
        f"coalesce({_PICK[col.agg].format(g=groups[_key(col)])}, 0) AS u{i}"
        for i, col in enumerate(q.columns)
    ]
    ctes.append(
        f"units AS (SELECT coalesce(exposed.arm, '') AS arm, {', '.join(picks)} "
        f"FROM exposed {joins})"
    )
    k = len(q.columns)
    aggs = ["count(*)"] + [f"sum(u{i})" for i in range(k)]
    aggs += [f"sum(u{i} * u{j})" for i in range(k) for j in range(i, k)]
    sql = (
        f"WITH {', '.join(ctes)} SELECT arm, {', '.join(aggs)} FROM units GROUP BY arm ORDER BY arm"
    )
    return sql, p.values


class ExperimentQueries:
    """Mixed into DuckDBStorage."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError  # provided by the storage class

    def arm_moments(self, q: ArmMoments) -> list[ArmMomentsRow]:
        sql, params = arm_moments_sql(q)
        k = len(q.columns)
        pairs = [(i, j) for i in range(k) for j in range(i, k)]
        out = []
        for r in self._cursor().execute(sql, params).fetchall():
            sums = tuple(float(v or 0.0) for v in r[2 : 2 + k])
            prods = {ij: float(v or 0.0) for ij, v in zip(pairs, r[2 + k :], strict=True)}
            out.append(ArmMomentsRow(str(r[0]), int(r[1]), sums, prods))
        return out
