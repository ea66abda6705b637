"""The PostgreSQL state backend (work in progress: issue 15)."""

from __future__ import annotations

from opsmetrics.errors import ConfigError


class PostgresStateStore:
    def __init__(self, url: str, *, now_ms: int) -> None:
        raise ConfigError("the PostgreSQL state backend is not in this build yet (issue 15)")
