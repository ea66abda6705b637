"""Any other database through a SQLAlchemy URL (its dialect's driver installed separately).

The session is asked to be read-only where the dialect supports it (`postgresql_readonly`),
and the timeout is the driver's own business here: docs/sources.md says so."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy
from sqlalchemy import exc as sa_exc

from opsmetrics.storage.external.base import (
    CURSOR_PLACEHOLDER,
    CursorBound,
    SourceBatch,
    SourceConnection,
    SourceQueryError,
    SourceUnavailableError,
)


class AlchemySession:
    def __init__(self, conn: SourceConnection) -> None:
        try:
            url = sqlalchemy.make_url(conn.url)
            if conn.password is not None:
                url = url.set(password=conn.password)
            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
            self._db = self._engine.connect()
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
            raise SourceQueryError(f"the source URL cannot be used: {exc}") from None
        except sa_exc.SQLAlchemyError as exc:
            raise SourceUnavailableError(f"cannot connect to the source database: {exc}") from None

    def batches(self, query: str, cursor: CursorBound, size: int) -> Iterator[SourceBatch]:
        statement = sqlalchemy.text(query.replace(CURSOR_PLACEHOLDER, ":cursor"))
        params = {"cursor": cursor} if CURSOR_PLACEHOLDER in query else {}
        try:
            db = self._db.execution_options(stream_results=True, postgresql_readonly=True)
            result = db.execute(statement, params)
            columns = tuple(result.keys())
            while rows := result.fetchmany(size):
                yield SourceBatch(columns, [tuple(r) for r in rows])
        except sa_exc.OperationalError as exc:
            raise SourceUnavailableError(f"the source database failed: {exc}") from None
        except sa_exc.SQLAlchemyError as exc:
            raise SourceQueryError(f"the query failed on the source database: {exc}") from None

    def close(self) -> None:
        self._db.close()
        self._engine.dispose()
