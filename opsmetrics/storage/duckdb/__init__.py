"""The embedded default backend: one DuckDB file owned by the server process."""

from opsmetrics.storage.duckdb.backend import DuckDBStorage

__all__ = ["DuckDBStorage"]
