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


__all__ = ["ClickHouseStorage", "open_clickhouse"]
