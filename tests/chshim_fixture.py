"""One chshim subprocess per test session, so contracts run through clickhouse-connect's real
HTTP transport (tests/chshim.py: a test double of ClickHouse's HTTP interface on chdb).

The shim owns its own engine path, never the in-process one of tests/clickhouse_engine.py:
chdb opens one path per process, and two processes on one path would corrupt it. Tests are
isolated by database: `shim_url` names one the product's own URL path creates.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from tests import clickhouse_engine
from tests.chshim import start_process, stop_process

#: The backend variants over HTTP and their `?compress=` (opsmetrics/storage/clickhouse/connect.py).
HTTP_VARIANTS = {"clickhouse-http": "none", "clickhouse-http-lz4": "lz4"}

#: A real ClickHouse server (`clickhouse://user:password@host:8123`), when a developer has
#: one: the sample and event contracts then run against it as "clickhouse-server" as well,
#: each test in a database of its own. Nothing on these machines sets it (docs/scale-out.md).
SERVER_URL = os.environ.get("OPSMETRICS_TEST_CLICKHOUSE_URL", "")
SERVER_VARIANTS = ["clickhouse-server"] if SERVER_URL else []


def server_url(database: str) -> str:
    parts = urlsplit(SERVER_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def drop_server_database(database: str) -> None:
    parts = urlsplit(SERVER_URL)
    admin = clickhouse_connect.get_client(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 8123,
        username=parts.username or "default",
        password=parts.password or "",
        secure=parts.scheme == "clickhouses",
    )
    try:
        admin.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    finally:
        admin.close()


_shim: list[tuple[subprocess.Popen[bytes], int, Path]] = []


@pytest.fixture(scope="session")
def chshim_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of the session's one shim. Each module importing this gets a session fixture
    of its own, so the process is kept here and stopped by the instance that started it."""
    owner = not _shim
    if owner:
        path = tmp_path_factory.mktemp("chshim")
        proc, port = start_process(path)
        _shim.append((proc, port, path))
    proc, port, path = _shim[0]
    # a second engine on the in-process path would break both
    assert path not in clickhouse_engine._engine_path
    yield port
    if owner:
        _shim.clear()
        assert stop_process(proc) == 0


def shim_client(port: int, database: str = "default", compress: str = "none") -> Client:
    return clickhouse_connect.get_client(
        host="127.0.0.1",
        port=port,
        database=database,
        compress=False if compress == "none" else compress,
        autogenerate_session_id=False,
    )


def shim_url(port: int, database: str, compress: str) -> str:
    return f"clickhouse://default:@127.0.0.1:{port}/{database}?compress={compress}"


def drop_database(port: int, database: str) -> None:
    admin = shim_client(port)
    try:
        admin.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    finally:
        admin.close()


@pytest.fixture
def shim_database(chshim_port: int) -> Iterator[str]:
    """A fresh database name on the shim (created by whoever connects first); dropped after."""
    name = "h_" + uuid.uuid4().hex[:12]
    yield name
    drop_database(chshim_port, name)
