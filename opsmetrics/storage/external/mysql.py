"""A MySQL or MariaDB source through PyMySQL: a read-only session with a statement timeout
(MariaDB's max_statement_time, MySQL's max_execution_time), rows streamed unbuffered."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
import pymysql.cursors

from opsmetrics.storage.external.base import (
    CursorBound,
    SourceBatch,
    SourceConnection,
    SourceQueryError,
    SourceTimeoutError,
    SourceUnavailableError,
    cursor_params,
    percent_placeholders,
    timeout_message,
)

CONNECT_TIMEOUT_S = 10
#: MariaDB: ER_STATEMENT_TIMEOUT; MySQL: ER_QUERY_TIMEOUT (max_execution_time exceeded).
TIMEOUT_CODES = {1969, 3024}
#: Connection lost, cannot connect, server gone away.
GONE_CODES = {2003, 2006, 2013, 2055}


def _connect_args(conn: SourceConnection) -> dict[str, Any]:
    parts = urlsplit(conn.url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    args: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": conn.password or "",
        "database": unquote(parts.path.lstrip("/")) or None,
        "connect_timeout": CONNECT_TIMEOUT_S,
        # The server's timeout stops the query; this one only stops waiting on a dead socket.
        "read_timeout": conn.timeout_ms / 1000 + 30,
        "cursorclass": pymysql.cursors.SSCursor,
        "charset": query.get("charset", "utf8mb4"),
    }
    if "unix_socket" in query:
        args["unix_socket"] = query["unix_socket"]
    return args


class MysqlSession:
    def __init__(self, conn: SourceConnection) -> None:
        self._timeout_ms = conn.timeout_ms
        try:
            self._db = pymysql.connect(**_connect_args(conn))
            with self._db.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute("SET SESSION TRANSACTION READ ONLY")
                cur.execute("SET time_zone = '+00:00'")
                self._set_timeout(cur, conn.timeout_ms)
        except pymysql.err.OperationalError as exc:
            raise SourceUnavailableError(f"cannot connect to the source database: {exc}") from None

    @staticmethod
    def _set_timeout(cur: pymysql.cursors.Cursor, timeout_ms: int) -> None:
        try:
            cur.execute("SET SESSION max_statement_time = %s", [timeout_ms / 1000])
        except pymysql.err.MySQLError:  # MySQL has max_execution_time (SELECTs only) instead
            cur.execute("SET SESSION max_execution_time = %s", [timeout_ms])

    def batches(self, query: str, cursor: CursorBound, size: int) -> Iterator[SourceBatch]:
        params = [_naive_utc(v) for v in cursor_params(query, cursor)]
        try:
            with self._db.cursor() as cur:
                cur.execute(percent_placeholders(query), params)
                columns = tuple(c[0] for c in cur.description or ())
                while rows := cur.fetchmany(size):
                    yield SourceBatch(columns, list(rows))
        except pymysql.err.MySQLError as exc:
            raise _translate(exc, self._timeout_ms) from None

    def close(self) -> None:
        with contextlib.suppress(pymysql.err.Error):
            self._db.close()


def _naive_utc(value: object) -> object:
    # The session is in UTC; MySQL does not take an offset in a DATETIME literal.
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _translate(exc: pymysql.err.MySQLError, timeout_ms: int) -> Exception:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    if code in TIMEOUT_CODES:
        return SourceTimeoutError(timeout_message(timeout_ms))
    if code in GONE_CODES:
        return SourceUnavailableError(f"the source database went away: {exc}")
    return SourceQueryError(f"the query failed on the source database: {exc}")
