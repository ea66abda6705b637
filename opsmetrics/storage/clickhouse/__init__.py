"""The ClickHouse backend for samples and events (issue 15): storage/clickhouse/backend.py."""

from __future__ import annotations

from opsmetrics.settings import Settings
from opsmetrics.storage.clickhouse.backend import ClickHouseStorage
from opsmetrics.storage.clickhouse.connect import ClickHouse, connect, parse_url


def open_clickhouse(url: str, settings: Settings, now_ms: int) -> ClickHouseStorage:
    """The backend over the database a clickhouse:// or chdb:// URL names (schema migrated)."""
    target = parse_url(url)
    ch = ClickHouse(connect(target), target)
    try:
        return ClickHouseStorage(
            ch, now_ms=now_ms, late_window_ms=settings.limits.samples_late_window_ms
        )
    except BaseException:
        ch.close()
        raise


def schema_ddl(url: str | None, cluster: str | None) -> list[str]:
    """The schema's DDL for the database `url` names (default `default`); with `cluster`,
    the ON CLUSTER form: replicated local tables plus Distributed tables."""
    from opsmetrics.storage.clickhouse.ddl import schema_statements
    from opsmetrics.storage.clickhouse.events import ClickHouseEvents

    database = parse_url(url).database if url else "default"
    return schema_statements(ClickHouseEvents.schema(), cluster, database)


def init_schema(url: str, now_ms: int) -> str:
    """Run the numbered migrations (idempotent); returns where, for a message."""
    target = parse_url(url)
    ClickHouseStorage(ClickHouse(connect(target), target), now_ms=now_ms).close()
    return f"{target.database} at {target.where}"


__all__ = ["ClickHouseStorage", "init_schema", "open_clickhouse", "schema_ddl"]
