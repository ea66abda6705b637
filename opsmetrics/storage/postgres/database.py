"""The connection pool of the PostgreSQL state store, and the one place that turns a lost or
unreachable server into StorageUnavailableError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from opsmetrics.storage.postgres.target import Target

Connection = psycopg.Connection[TupleRow]

#: Connections per store: the web workers, the rule evaluator and the notifier share them.
POOL_MIN, POOL_MAX = 1, 4
#: A statement that runs longer is cancelled (its transaction rolled back): the state store's
#: statements are small, and a lease renewal must not hang past the lease's time to live.
STATEMENT_TIMEOUT_MS = 10_000


class Database:
    """A small pool of autocommit connections to one database; thread-safe."""

    def __init__(self, target: Target, *, timeout_s: float) -> None:
        self.target = target
        self._timeout_s = timeout_s
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            target.url,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            kwargs={"autocommit": True, "connect_timeout": target.connect_timeout_s},
            # A connection that died while idle (a server restart, a failover) is replaced
            # before it is handed out, rather than failing the next call.
            check=ConnectionPool.check_connection,
            configure=_configure,
            timeout=timeout_s,
            name="opsmetrics-state",
            open=False,
        )

    def open(self) -> None:
        try:
            self._pool.open(wait=True, timeout=self._timeout_s)
        except PoolTimeout:
            self._pool.close()
            raise self.target.unavailable(
                "cannot open the connection pool", self.target.probe()
            ) from None

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection in autocommit mode: each statement is its own transaction."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            doing = f"no connection within {self._timeout_s:g} s"
            raise self.target.unavailable(doing, self.target.probe()) from None
        except psycopg.OperationalError as exc:
            raise self.target.unavailable("a statement failed", exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A pooled connection inside one transaction: committed when the block ends, rolled
        back if it raises (or the connection drops), so nothing is half-written."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        self._pool.close()


def _configure(conn: Connection) -> None:
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
