"""ClickHouse's own engine (chdb) for the tests, through the official client.

chdb runs one engine per process on one data path, so a test process opens the path once
(`chdb_path`, session-scoped) and isolates tests by database: `ch_database` creates a fresh
database and drops it afterwards. ../shared/research/clickhouse-testing.md has the findings
behind this (what chdb does not do: Distributed, Replicated, ON CLUSTER).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

_engine_path: list[Path] = []


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one engine path of this test process. Each module that imports the fixture gets a
    session fixture of its own, so the path is kept here: chdb cannot open a second one."""
    if not _engine_path:
        _engine_path.append(tmp_path_factory.mktemp("chdb"))
    return _engine_path[0]


def chdb_client(path: Path, database: str = "default") -> Client:
    return clickhouse_connect.get_client(interface="chdb", path=str(path), database=database)


@pytest.fixture
def ch_database(chdb_path: Path) -> Iterator[str]:
    """A fresh, empty database on the session's engine; its name."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = chdb_client(chdb_path)
    admin.command(f"CREATE DATABASE {name}")
    yield name
    admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@pytest.fixture
def ch_client(chdb_path: Path, ch_database: str) -> Client:
    return chdb_client(chdb_path, ch_database)
