from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import ServerProcess

#: `fixed_server`'s clock starts here: the first Monday of a year, just after midnight UTC.
FIXED_NOW = 1_799_021_520_000  # Monday 2027-01-04 00:12 UTC


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server process with an empty data directory."""
    srv = ServerProcess(tmp_path / "data").start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def fixed_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """Like `server`, but its clock starts at FIXED_NOW (`fixed_server.now_ms`) and runs at
    real speed from there; `fixed_server.clock_ms()` is its time now."""
    srv = ServerProcess(tmp_path / "data", now_ms=FIXED_NOW).start()
    try:
        yield srv
    finally:
        srv.kill()
