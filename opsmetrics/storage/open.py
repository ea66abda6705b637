"""Open the storage backend that Settings names (OPSMETRICS_STORAGE)."""

from __future__ import annotations

from opsmetrics.clock import Clock
from opsmetrics.errors import ConfigError
from opsmetrics.settings import Settings
from opsmetrics.storage.duckdb import DuckDBStorage


def open_storage(settings: Settings, clock: Clock) -> DuckDBStorage:
    if settings.storage != "duckdb":
        raise ConfigError(
            f"OPSMETRICS_STORAGE={settings.storage!r}: only the embedded 'duckdb' backend is "
            "available in this version"
        )
    return DuckDBStorage(
        settings.data_dir,
        now_ms=clock.now_ms(),
        partition_ms=settings.partition_ms,
        late_window_ms=settings.limits.samples_late_window_ms,
    )
