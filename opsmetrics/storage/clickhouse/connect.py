"""Clients for the two URL forms, and connection failures as StorageUnavailableError.

    clickhouse://user:pw@host:8123/db   (clickhouses:// for TLS)   over HTTP
    chdb:///abs/path?database=db        ClickHouse's engine in this process

Over HTTP, `?compress=lz4` or `?compress=none` chooses how request and response bodies are
compressed; without it the client negotiates its default.
The database is created if it is missing. Messages name host:port, never the password.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import clickhouse_connect
import numpy as np
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError
from clickhouse_connect.driver.query import QueryResult

from opsmetrics.errors import ConfigError, StorageUnavailableError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: `?compress=` values and what clickhouse-connect's `compress` gets for each.
COMPRESSION: dict[str, bool | str] = {"lz4": "lz4", "none": False}
Settings = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points: a server (host, port) or a chdb path, and a database."""

    scheme: str
    database: str
    host: str = ""
    port: int = 0
    username: str = "default"
    password: str = ""
    path: str = ""
    #: `?compress=` of a clickhouse:// URL; "" lets the client choose.
    compress: str = ""

    @property
    def where(self) -> str:
        return f"chdb:{self.path}" if self.scheme == "chdb" else f"{self.host}:{self.port}"


def parse_url(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        database = parse_qs(parts.query).get("database", ["default"])[0]
        if not parts.path.startswith("/"):
            raise ConfigError(f"{url!r}: name an absolute path, e.g. chdb:///var/lib/opsmetrics")
        return Target("chdb", _database(url, database), path=parts.path)
    if scheme not in ("clickhouse", "clickhouses"):
        raise ConfigError(f"{scheme}:// is not a ClickHouse URL")
    secure = scheme == "clickhouses"
    compress = parse_qs(parts.query).get("compress", [""])[0]
    if compress and compress not in COMPRESSION:
        raise ConfigError(
            f"compress={compress!r} in the storage URL: use one of " + ", ".join(COMPRESSION)
        )
    return Target(
        scheme,
        _database(url, parts.path.strip("/") or "default"),
        host=parts.hostname or "localhost",
        port=parts.port or (8443 if secure else 8123),
        username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        compress=compress,
    )


def _database(url: str, name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"database {name!r} in the storage URL must be a plain identifier")
    return name


def connect(target: Target) -> Client:
    """A client on the target's database (created if missing)."""
    try:
        admin = _client(target, "default")
        admin.command(f"CREATE DATABASE IF NOT EXISTS {target.database}")
        if target.database == "default":
            return admin
        admin.close()
        return _client(target, target.database)
    except (ClickHouseError, OSError) as exc:
        raise unavailable(target, exc) from exc


def _client(target: Target, database: str) -> Client:
    if target.scheme == "chdb":
        return clickhouse_connect.get_client(interface="chdb", path=target.path, database=database)
    return clickhouse_connect.get_client(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        database=database,
        secure=target.scheme == "clickhouses",
        compress=COMPRESSION.get(target.compress, True),
        # One client is shared by threads: no session, so queries never wait on its lock.
        autogenerate_session_id=False,
    )


def unavailable(target: Target, exc: BaseException) -> StorageUnavailableError:
    text = str(exc)
    if target.password:
        text = text.replace(target.password, "***")
    return StorageUnavailableError(
        f"ClickHouse at {target.where} (database {target.database}) is unavailable: "
        f"{text.splitlines()[0] if text else type(exc).__name__}. Check that the server runs "
        "and OPSMETRICS_STORAGE_URL names it"
    )


class ClickHouse:
    """The client calls the backend makes; a lost connection becomes StorageUnavailableError
    (SQL errors stay the driver's own)."""

    def __init__(self, client: Client, target: Target) -> None:
        self.client = client
        self.target = target

    def _guard(self, exc: BaseException) -> BaseException:
        if isinstance(exc, OperationalError | OSError):
            return unavailable(self.target, exc)
        return exc

    def query(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: Settings | None = None
    ) -> QueryResult:
        try:
            return self.client.query(sql, parameters=parameters, settings=settings)
        except Exception as exc:
            raise self._guard(exc) from exc

    def query_np(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: Settings | None = None
    ) -> np.ndarray:
        try:
            return self.client.query_np(sql, parameters=parameters, settings=settings)
        except Exception as exc:
            raise self._guard(exc) from exc

    def command(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: Settings | None = None
    ) -> Any:
        try:
            return self.client.command(sql, parameters=parameters, settings=settings)
        except Exception as exc:
            raise self._guard(exc) from exc

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        *,
        column_oriented: bool = False,
        settings: Settings | None = None,
    ) -> None:
        try:
            self.client.insert(
                table,
                data,
                column_names=column_names,
                column_oriented=column_oriented,
                settings=settings,
            )
        except Exception as exc:
            raise self._guard(exc) from exc

    def close(self) -> None:
        self.client.close()
