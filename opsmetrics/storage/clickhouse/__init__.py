"""The ClickHouse backend for samples and events (work in progress: issue 15)."""

from __future__ import annotations

from opsmetrics.errors import ConfigError
from opsmetrics.settings import Settings
from opsmetrics.storage.composite import DataStore


def open_clickhouse(url: str, settings: Settings, now_ms: int) -> DataStore:
    raise ConfigError("the ClickHouse backend is not in this build yet (issue 15)")
