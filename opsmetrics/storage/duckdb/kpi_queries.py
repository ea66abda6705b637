"""KPI queries in DuckDB: state values at period ends, conversions per period, manual values,
freshness, and user `sql:` KPIs run read-only against the documented views.

As in event_queries.py, nothing a user sends becomes SQL text except the body of an `sql:` KPI,
which the evaluator first puts through catalog/kpi_sql.py's read-only check; here it runs in the
sandbox of storage/duckdb/sql_sandbox.py: wrapped as a subquery (so only a SELECT parses), in a
READ ONLY transaction, on an instance that cannot reach files or the network, within row and
time limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import duckdb

from opsmetrics.storage.duckdb.event_queries import Params, prop_sql
from opsmetrics.storage.duckdb.sql_sandbox import run_sandboxed
from opsmetrics.storage.kpi_records import (
    ConversionQuery,
    ConversionRow,
    ManualKpiValue,
    SqlResult,
    StateCombine,
    StateQuery,
    StateRow,
)
from opsmetrics.storage.sql_sandbox import SqlLimits

_COMBINE_SQL = {
    StateCombine.SUM: "sum(v)",
    StateCombine.COUNT: "count(v) FILTER (WHERE v <> 0)",
    StateCombine.AVG: "avg(v)",
    StateCombine.MIN: "min(v)",
    StateCombine.MAX: "max(v)",
}
_MANUAL_COLUMNS = "kpi, ts, value, author, note, recorded_ms"
_SIX = ", ".join("?" * 6)
_PARAM = re.compile(r"\$([a-z_]+)\b")


def _key_sql(p: Params, prop: str | None) -> str:
    return "entity" if prop is None else prop_sql(p, prop)


def _field_sql(p: Params, prop: str | None) -> str:
    return "value" if prop is None else f"TRY_CAST({prop_sql(p, prop)} AS DOUBLE)"


def state_sql(q: StateQuery) -> tuple[str, dict[str, Any]]:
    p = Params()
    ends, idx = p.add(list(q.ends)), p.add(list(range(len(q.ends))))
    sql = f"""
        WITH ends AS (SELECT unnest({ends}) AS pe, unnest({idx}) AS i),
        ev AS (
            SELECT {_key_sql(p, q.key_prop)} AS k, ts, {_field_sql(p, q.field_prop)} AS v
            FROM events WHERE name = {p.add(q.event)} AND ts < {p.add(max(q.ends))}
        ), latest AS (
            SELECT ends.i, ev.k, arg_max(ev.v, ev.ts) AS v
            FROM ends JOIN ev ON ev.ts < ends.pe
            WHERE ev.k IS NOT NULL AND ev.k <> '' GROUP BY ends.i, ev.k
        )
        SELECT i, {_COMBINE_SQL[q.combine]}, count(v) FROM latest GROUP BY i ORDER BY i
    """
    return sql, p.values


def conversion_sql(q: ConversionQuery) -> tuple[str, dict[str, Any]]:
    p = Params()
    starts, ends = p.add(list(q.starts)), p.add(list(q.ends))
    idx, within = p.add(list(range(len(q.starts)))), p.add(q.within_ms)
    lo, hi = p.add(min(q.starts)), p.add(max(q.ends))
    key = _key_sql(p, q.key_prop)
    gsel = "".join(f", coalesce({prop_sql(p, prop)}, '') AS g{i}" for i, prop in enumerate(q.by))
    gagg = "".join(f", arg_min(ev.g{i}, ev.ts) AS g{i}" for i in range(len(q.by)))
    gcols = "".join(f", f.g{i}" for i in range(len(q.by)))
    sql = f"""
        WITH periods AS (SELECT unnest({starts}) AS ps, unnest({ends}) AS pe, unnest({idx}) AS i),
        ev AS (
            SELECT {key} AS k, ts{gsel} FROM events
            WHERE name = {p.add(q.from_event)} AND ts >= {lo} AND ts < {hi}
        ), f AS (
            SELECT periods.i, ev.k, min(ev.ts) AS t0{gagg}
            FROM periods JOIN ev ON ev.ts >= periods.ps AND ev.ts < periods.pe
            WHERE ev.k IS NOT NULL AND ev.k <> '' GROUP BY periods.i, ev.k
        ), tos AS (
            SELECT {key} AS k, ts FROM events
            WHERE name = {p.add(q.to_event)} AND ts > {lo} AND ts <= {hi} + {within}
        ), conv AS (
            SELECT f.i, f.k{gcols}, count(tos.ts) > 0 AS ok
            FROM f LEFT JOIN tos ON tos.k = f.k AND tos.ts > f.t0 AND tos.ts <= f.t0 + {within}
            GROUP BY ALL
        )
        SELECT i{gcols.replace("f.", "")}, count(*), count(*) FILTER (WHERE ok)
        FROM conv GROUP BY ALL ORDER BY ALL
    """
    return sql, p.values


def manual_sql(kpi: str, starts: Sequence[int], ends: Sequence[int]) -> tuple[str, dict[str, Any]]:
    """The last value (by ts, then by when it was recorded) in each period."""
    p = Params()
    s, e, i = p.add(list(starts)), p.add(list(ends)), p.add(list(range(len(starts))))
    sql = f"""
        WITH periods AS (SELECT unnest({s}) AS ps, unnest({e}) AS pe, unnest({i}) AS i)
        SELECT periods.i, arg_max(m.value, (m.ts, m.recorded_ms))
        FROM periods JOIN manual_kpi_values m
            ON m.kpi = {p.add(kpi)} AND m.ts >= periods.ps AND m.ts < periods.pe
        GROUP BY periods.i ORDER BY periods.i
    """
    return sql, p.values


class KpiQueries:
    """Mixed into DuckDBStorage: the KPI half of the Storage protocol."""

    #: The limits of `sql:` KPI queries.
    sql_limits = SqlLimits()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError  # provided by the storage class

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def kpi_state(self, q: StateQuery) -> list[StateRow]:
        if not q.ends:
            return []
        sql, params = state_sql(q)
        rows = self._cursor().execute(sql, params).fetchall()
        return [StateRow(int(i), _opt(v), int(n)) for i, v, n in rows]

    def kpi_conversion(self, q: ConversionQuery) -> list[ConversionRow]:
        if not q.starts:
            return []
        sql, params = conversion_sql(q)
        rows = self._cursor().execute(sql, params).fetchall()
        return [
            ConversionRow(int(r[0]), tuple(str(g) for g in r[1:-2]), int(r[-2]), int(r[-1]))
            for r in rows
        ]

    def record_manual_kpi_value(self, value: ManualKpiValue) -> None:
        row = [value.kpi, value.ts, value.value, value.author, value.note, value.recorded_ms]
        with self._transaction() as cur:
            cur.execute(f"INSERT INTO manual_kpi_values ({_MANUAL_COLUMNS}) VALUES ({_SIX})", row)

    def manual_kpi_values(self, kpi: str, start_ms: int, end_ms: int) -> list[ManualKpiValue]:
        sql = (
            f"SELECT {_MANUAL_COLUMNS} FROM manual_kpi_values WHERE kpi = ? AND ts >= ? "
            "AND ts < ? ORDER BY ts, recorded_ms"
        )
        rows = self._cursor().execute(sql, [kpi, start_ms, end_ms]).fetchall()
        return [ManualKpiValue(k, int(t), float(v), a, n, int(r)) for k, t, v, a, n, r in rows]

    def manual_kpi_period_values(
        self, kpi: str, starts: Sequence[int], ends: Sequence[int]
    ) -> dict[int, float]:
        if not starts:
            return {}
        sql, params = manual_sql(kpi, starts, ends)
        return {int(i): float(v) for i, v in self._cursor().execute(sql, params).fetchall()}

    def newest_event_ms(self, names: Sequence[str]) -> int | None:
        if not names:
            return None
        sql = "SELECT max(ts) FROM events WHERE list_contains(?::VARCHAR[], name)"
        return _opt_int(self._cursor().execute(sql, [list(names)]).fetchall()[0][0])

    def newest_manual_kpi_ms(self, kpi: str) -> int | None:
        sql = "SELECT max(ts) FROM manual_kpi_values WHERE kpi = ?"
        return _opt_int(self._cursor().execute(sql, [kpi]).fetchall()[0][0])

    def kpi_sql(self, query: str, params: Mapping[str, int]) -> SqlResult:
        """Run an `sql:` KPI in the sandbox; `$name` parameters it uses are bound from `params`."""
        used = {name: params[name] for name in _PARAM.findall(query) if name in params}
        return run_sandboxed(self._cursor(), query, used, self.sql_limits)


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)
