"""The EventStore over one ClickHouse database, through clickhouse-connect.

Events are idempotent by key: a retried insert carries the same insert_deduplication_token (the
whole block is dropped), and a duplicate that still gets in has the same sort key, so
ReplacingMergeTree merges it away; every read goes through FINAL, so a duplicate never shows
before that merge. Every query is one statement computed by the server
(storage/clickhouse/event_queries.py, event_kpis.py); rows only come back as answers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from opsmetrics.errors import BadDataError
from opsmetrics.model import Event
from opsmetrics.storage.base import StoredEvent
from opsmetrics.storage.clickhouse import event_kpis, event_queries
from opsmetrics.storage.clickhouse.event_rows import (
    COLUMNS,
    SCHEMA,
    dedup_token,
    event_columns,
)
from opsmetrics.storage.clickhouse.event_sql import EVENTS, MS, Params
from opsmetrics.storage.clickhouse.quality_queries import EventQualityReads
from opsmetrics.storage.event_records import (
    DAY_MS,
    Bucket,
    EventAggregate,
    Funnel,
    FunnelRow,
    Retention,
    RetentionRow,
    RollingUnique,
)
from opsmetrics.storage.exclusion_records import ExclusionBucket, fold_rows
from opsmetrics.storage.experiment_records import ArmMoments, ArmMomentsRow
from opsmetrics.storage.kpi_records import (
    ConversionQuery,
    ConversionRow,
    SqlResult,
    StateQuery,
    StateRow,
)
from opsmetrics.storage.sql_sandbox import (
    SqlLimits,
    access_error,
    check_row_count,
    timeout_error,
)
from opsmetrics.storage.sql_sources import file_function_refusal

Row = Sequence[Any]


class ClickHouseEvents(EventQualityReads):
    """EventStore over one ClickHouse database (clickhouse-connect client)."""

    #: The limits of `sql:` KPI queries.
    sql_limits = SqlLimits()

    def __init__(self, client: Client) -> None:
        self._client = client

    @staticmethod
    def schema() -> list[str]:
        """CREATE statements for the events table and the v_events view (the backend's
        migrations run them, in order, in the client's database)."""
        return list(SCHEMA)

    # --- writes and maintenance ---------------------------------------------------------
    def insert_events(self, events: Sequence[StoredEvent]) -> None:
        if not events:
            return
        self._client.insert(
            "events",
            event_columns(events),
            column_names=list(COLUMNS),
            column_oriented=True,
            settings={"insert_deduplication_token": dedup_token(events)},
        )

    def delete_events_before(self, ts_ms: int) -> int:
        """Drop the days wholly before `ts_ms` as partitions, then delete the rest."""
        p = Params()
        deleted = int(self._scalar(f"SELECT count() FROM {EVENTS} WHERE ts < {p.ts(ts_ms)}", p))
        if not deleted:
            return 0
        for part in self._partitions_before(ts_ms):
            self._client.command(
                "ALTER TABLE events DROP PARTITION {p:UInt32}", parameters={"p": part}
            )
        p = Params()
        self._client.command(f"DELETE FROM events WHERE ts < {p.ts(ts_ms)}", parameters=p.values)
        return deleted

    def _partitions_before(self, ts_ms: int) -> list[int]:
        p = Params()
        day = p.ts(ts_ms // DAY_MS * DAY_MS)
        sql = (
            "SELECT DISTINCT toUInt32(partition) FROM system.parts WHERE active "
            "AND database = currentDatabase() AND table = 'events' "
            f"AND toUInt32(partition) < toYYYYMMDD({day}) ORDER BY 1"
        )
        return [int(r[0]) for r in self._rows(sql, p)]

    def count_events(self) -> int:
        return int(self._scalar(f"SELECT count() FROM {EVENTS}", Params()))

    # --- reads --------------------------------------------------------------------------
    def read_events(
        self, name: str | None, start_ms: int, end_ms: int, limit: int | None = None
    ) -> list[Event]:
        p = Params()
        sql = (
            f"SELECT name, {MS}, entity, value, props_json, id FROM {EVENTS} "
            f"WHERE ts >= {p.ts(start_ms)} AND ts <= {p.ts(end_ms)}"
        )
        if name is not None:
            sql += f" AND name = {p.add(name, 'String')}"
        sql += " ORDER BY ts, key"
        if limit is not None:
            sql += f" LIMIT {p.add(limit, 'UInt64')}"
        return [
            Event(name=r[0], ts=int(r[1]), entity=r[2], value=r[3], props=json.loads(r[4]), id=r[5])
            for r in self._rows(sql, p)
        ]

    def event_aggregate(self, q: EventAggregate) -> list[Bucket]:
        rows = self._run(event_queries.aggregate_sql(q))
        return [
            Bucket(int(r[0]), dict(zip(q.by, r[1:-2], strict=True)), _float(r[-2]), int(r[-1]))
            for r in rows
        ]

    def event_exclusions(self, q: EventAggregate) -> list[ExclusionBucket]:
        return fold_rows(q, self._run(event_queries.exclusions_sql(q)))

    def event_rolling_unique(self, q: RollingUnique) -> list[Bucket]:
        rows = self._run(event_queries.rolling_unique_sql(q))
        return [Bucket(int(t), {}, float(n), int(n)) for t, n in rows]

    def event_funnel(self, q: Funnel) -> list[FunnelRow]:
        rows = self._run(event_queries.funnel_sql(q))
        return [row for r in rows for row in _funnel_rows(r)]

    def event_retention(self, q: Retention) -> list[RetentionRow]:
        cohorts: dict[int, RetentionRow] = {}
        for t, k, n in self._run(event_queries.retention_sql(q)):
            if k < 0:
                cohorts[int(t)] = RetentionRow(int(t), int(n))
            else:
                cohorts[int(t)].returned[int(k)] = int(n)
        return list(cohorts.values())

    def arm_moments(self, q: ArmMoments) -> list[ArmMomentsRow]:
        k = len(q.columns)
        pairs = [(i, j) for i in range(k) for j in range(i, k)]
        out = []
        for r in self._run(event_kpis.arm_moments_sql(q)):
            sums = tuple(float(v or 0.0) for v in r[2 : 2 + k])
            prods = {ij: float(v or 0.0) for ij, v in zip(pairs, r[2 + k :], strict=True)}
            out.append(ArmMomentsRow(str(r[0]), int(r[1]), sums, prods))
        return out

    def kpi_state(self, q: StateQuery) -> list[StateRow]:
        if not q.ends:
            return []
        rows = self._run(event_kpis.state_sql(q))
        return [StateRow(int(i), _opt(v), int(n)) for i, v, n in rows]

    def kpi_conversion(self, q: ConversionQuery) -> list[ConversionRow]:
        if not q.starts:
            return []
        rows = self._run(event_kpis.conversion_sql(q))
        return [
            ConversionRow(int(r[0]), tuple(str(g) for g in r[1:-2]), int(r[-2]), int(r[-1]))
            for r in rows
        ]

    def newest_event_ms(self, names: Sequence[str]) -> int | None:
        if not names:
            return None
        [(newest,)] = self._run(event_kpis.newest_sql(list(names)))
        return None if newest is None else int(newest)

    def kpi_sql(self, query: str, params: Mapping[str, int]) -> SqlResult:
        """Run an `sql:` KPI read-only; `$name` parameters it uses are bound from `params`."""
        limits = self.sql_limits
        refusal = file_function_refusal(query)  # the one read that readonly=1 lets through
        if refusal:
            raise access_error(refusal)
        sql, used = event_kpis.user_sql(query, params, limits)
        try:
            result = self._client.query(
                sql, parameters=used or None, settings=event_kpis.sql_settings(limits)
            )
        except OperationalError:
            raise  # the server is unreachable: not the query's fault
        except DatabaseError as exc:
            raise _sql_error(_server_message(exc), limits) from None
        check_row_count(len(result.result_rows), limits)
        return SqlResult(list(result.column_names), [tuple(r) for r in result.result_rows])

    # --- helpers ------------------------------------------------------------------------
    def _run(self, query: tuple[str, dict[str, object]]) -> list[Row]:
        sql, params = query
        rows: Sequence[Row] = self._client.query(sql, parameters=params).result_rows
        return list(rows)

    def _rows(self, sql: str, p: Params) -> list[Row]:
        return self._run((sql, p.values))

    def _scalar(self, sql: str, p: Params) -> Any:
        return self._rows(sql, p)[0][0]


def _funnel_rows(r: Row) -> list[FunnelRow]:
    """One result row (group, count1, then count/median/avg per later step) → per-step rows."""
    group = str(r[0])
    out = [FunnelRow(group, 0, int(r[1]), None, None)]
    for i in range(2, len(r), 3):
        out.append(FunnelRow(group, len(out), int(r[i]), _opt(r[i + 1]), _opt(r[i + 2])))
    return out


def _sql_error(message: str, limits: SqlLimits) -> BadDataError:
    if "(TIMEOUT_EXCEEDED)" in message:
        return timeout_error(limits)
    if "(READONLY)" in message:  # a table function that reads files or other servers
        return access_error(message)
    return BadDataError(f"sql: the query failed: {message}")


def _server_message(exc: DatabaseError) -> str:
    """The server's own words ("Code: 62. DB::Exception: …"), without the client's preamble."""
    text = str(exc)
    at = text.find("Code:")
    return (text[at:] if at >= 0 else text).strip()


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)
