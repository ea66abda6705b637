"""Open the right driver's session for a source and stream its query's rows in batches."""

from __future__ import annotations

from collections.abc import Generator

from opsmetrics.storage.external.base import (
    CursorBound,
    Session,
    SourceBatch,
    SourceConnection,
    SourceUnavailableError,
)


def _session(conn: SourceConnection) -> Session:
    # Each driver is imported when a source uses it: PyMySQL and SQLAlchemy are optional.
    try:
        if conn.driver == "postgresql":
            from opsmetrics.storage.external.postgres import PostgresSession

            return PostgresSession(conn)
        if conn.driver == "mysql":
            from opsmetrics.storage.external.mysql import MysqlSession

            return MysqlSession(conn)
        if conn.driver == "sqlite":
            from opsmetrics.storage.external.sqlite import SqliteSession

            return SqliteSession(conn)
        from opsmetrics.storage.external.alchemy import AlchemySession

        return AlchemySession(conn)
    except ModuleNotFoundError as exc:
        raise SourceUnavailableError(
            f"the driver for {conn.driver} is not installed ({exc.name}); "
            "pip install 'opsmetrics[sources]'"
        ) from None


def read_batches(
    conn: SourceConnection, query: str, cursor: CursorBound, size: int
) -> Generator[SourceBatch]:
    """The query's rows, `size` at a time, in one read-only session closed at the end (or when
    the caller stops iterating)."""
    session = _session(conn)
    try:
        yield from session.batches(query, cursor, size)
    finally:
        session.close()
