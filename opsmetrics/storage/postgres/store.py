"""PostgresStateStore: the StateStore protocol over a PostgreSQL database that several
opsmetrics nodes share (storage/base.py; semantics as the DuckDB backend's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from opsmetrics.storage.base import KpiVersion
from opsmetrics.storage.kpi_records import ManualKpiValue
from opsmetrics.storage.postgres.alert_log import AlertLog
from opsmetrics.storage.postgres.database import Database
from opsmetrics.storage.postgres.initiative_log import InitiativeLog
from opsmetrics.storage.postgres.migrations import apply_migrations
from opsmetrics.storage.postgres.report_log import ReportLog
from opsmetrics.storage.postgres.review_log import ReviewLog
from opsmetrics.storage.postgres.source_log import SourceLog
from opsmetrics.storage.postgres.target import parse_url
from opsmetrics.storage.postgres.timeline_log import TimelineLog
from opsmetrics.storage.token_records import Scope, TokenRecord, origins_from_column

#: Seconds a call waits for a pooled connection before StorageUnavailableError. Short: with the
#: server gone, a lease renewal (storage/lease.py) must fail well within the lease's TTL.
POOL_TIMEOUT_S = 5.0

_TOKEN_COLUMNS = "id, name, scope, hash, created_ms, origins, rate_per_min"
_KPI_COLUMNS = "name, version, hash, definition, diff, author, recorded_ms"
_MANUAL_COLUMNS = "kpi, ts, value, author, note, recorded_ms"

#: Take the lease if it is free, ours, or expired: one statement, so two nodes asking at once
#: serialise on the row and exactly one gets it.
_HOLD_LEASE = """
    INSERT INTO leases (name, holder, expires_ms) VALUES (%(name)s, %(holder)s, %(expires)s)
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
    WHERE leases.holder = excluded.holder OR leases.expires_ms <= %(now)s
    RETURNING holder
"""
#: Per period [starts[i], ends[i]): the value of the latest moment, latest entry first.
_PERIOD_VALUES = """
    SELECT DISTINCT ON (p.i) p.i - 1, m.value
    FROM unnest(%(starts)s::bigint[], %(ends)s::bigint[]) WITH ORDINALITY AS p(ps, pe, i)
    JOIN manual_kpi_values m ON m.kpi = %(kpi)s AND m.ts >= p.ps AND m.ts < p.pe
    ORDER BY p.i, m.ts DESC, m.recorded_ms DESC, m.seq DESC
"""


class PostgresStateStore(AlertLog, TimelineLog, InitiativeLog, ReviewLog, SourceLog, ReportLog):
    """KPI versions, manual KPI values, tokens, the alert log, incident timelines, initiatives,
    KPI reviews, the report delivery log and leases in PostgreSQL.

    Thread-safe (a small connection pool); each writing call is one transaction. A server
    that cannot be reached, or a connection that drops, raises StorageUnavailableError.
    """

    def __init__(self, url: str, *, now_ms: int, timeout_s: float = POOL_TIMEOUT_S) -> None:
        target = parse_url(url)
        try:
            with target.connect() as conn:
                apply_migrations(conn, now_ms)
        except psycopg.Error as exc:  # unreachable, refused, or e.g. no right to create tables
            raise target.unavailable("cannot open the store", exc) from exc
        self._db = Database(target, timeout_s=timeout_s)
        self._db.open()

    def close(self) -> None:
        self._db.close()

    # --- tokens -------------------------------------------------------------------------
    def save_token(self, token: TokenRecord) -> None:
        """ValueError if the id is stored already (DuckDB refuses the duplicate key too)."""
        sql = (
            f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING"
        )
        row = [
            *(token.id, token.name, token.scope.value, token.hash, token.created_ms),
            *(token.origins_column, token.rate_per_min),
        ]
        with self._db.transaction() as conn:
            if conn.execute(sql, row).rowcount == 0:
                raise ValueError(f"a token with id {token.id!r} is stored already")

    def tokens(self) -> list[TokenRecord]:
        sql = (
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE revoked_ms IS NULL ORDER BY created_ms, id"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql).fetchall()
        return [
            TokenRecord(i, n, Scope(s), h, int(c), origins_from_column(o), r)
            for i, n, s, h, c, o, r in rows
        ]

    # --- KPI definition versions --------------------------------------------------------
    def record_kpi_version(self, version: KpiVersion) -> None:
        v = version
        sql = (
            f"INSERT INTO kpi_versions ({_KPI_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (name, version) DO NOTHING"
        )
        row = [v.name, v.version, v.hash, v.definition, v.diff, v.author, v.recorded_ms]
        with self._db.transaction() as conn:
            if conn.execute(sql, row).rowcount == 0:
                raise ValueError(f"KPI {v.name!r} already has version {v.version}")

    def kpi_versions(self, name: str) -> list[KpiVersion]:
        sql = (
            "SELECT name, version, hash, definition::text, diff, author, recorded_ms "
            "FROM kpi_versions WHERE name = %s ORDER BY version"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql, [name]).fetchall()
        return [KpiVersion(n, int(v), h, d, df, a, int(r)) for n, v, h, d, df, a, r in rows]

    def kpi_names(self) -> list[str]:
        sql = (
            "SELECT n FROM (SELECT name AS n FROM kpi_versions UNION "
            'SELECT kpi FROM manual_kpi_values) u ORDER BY n COLLATE "C"'
        )
        with self._db.connection() as conn:
            return [str(r[0]) for r in conn.execute(sql).fetchall()]

    # --- manual KPI values --------------------------------------------------------------
    def record_manual_kpi_value(self, value: ManualKpiValue) -> None:
        v = value
        sql = f"INSERT INTO manual_kpi_values ({_MANUAL_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
        with self._db.transaction() as conn:
            conn.execute(sql, [v.kpi, v.ts, v.value, v.author, v.note, v.recorded_ms])

    def manual_kpi_values(self, kpi: str, start_ms: int, end_ms: int) -> list[ManualKpiValue]:
        sql = (
            f"SELECT {_MANUAL_COLUMNS} FROM manual_kpi_values WHERE kpi = %s AND ts >= %s "
            "AND ts < %s ORDER BY ts, recorded_ms, seq"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql, [kpi, start_ms, end_ms]).fetchall()
        return [ManualKpiValue(k, int(t), float(v), a, n, int(r)) for k, t, v, a, n, r in rows]

    def manual_kpi_period_values(
        self, kpi: str, starts: Sequence[int], ends: Sequence[int]
    ) -> dict[int, float]:
        if not starts:
            return {}
        params: dict[str, Any] = {"starts": list(starts), "ends": list(ends), "kpi": kpi}
        with self._db.connection() as conn:
            rows = conn.execute(_PERIOD_VALUES, params).fetchall()
        return {int(i): float(v) for i, v in rows}

    def newest_manual_kpi_ms(self, kpi: str) -> int | None:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT max(ts) FROM manual_kpi_values WHERE kpi = %s", [kpi]
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # --- leases -------------------------------------------------------------------------
    def hold_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        params = {"name": name, "holder": holder, "expires": now_ms + ttl_ms, "now": now_ms}
        with self._db.transaction() as conn:
            return conn.execute(_HOLD_LEASE, params).fetchone() is not None

    def release_lease(self, name: str, holder: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM leases WHERE name = %s AND holder = %s", [name, holder])
