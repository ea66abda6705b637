"""OPSMETRICS_DUCKDB_MEMORY_LIMIT bounds DuckDB's buffer pool, and the sandbox stays on."""

from __future__ import annotations

from pathlib import Path

from opsmetrics.clock import FakeClock
from opsmetrics.settings import Settings
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.open import open_stores

NOW = 1_764_000_000_000


def settings_of(limit: str, tmp_path: Path) -> Settings:
    env = {"OPSMETRICS_DUCKDB_MEMORY_LIMIT": limit} if limit else {}
    return Settings.from_env(env, data_dir=tmp_path)


def current(tmp_path: Path, limit: str) -> tuple[str, str]:
    storage = open_stores(settings_of(limit, tmp_path), FakeClock(NOW))
    try:
        assert isinstance(storage, DuckDBStorage)  # one DuckDB file holds data and state
        con = storage._db.main
        row = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('enable_external_access')"
        ).fetchone()
        assert row is not None
        return str(row[0]), str(row[1])
    finally:
        storage.close()


def test_the_limit_is_applied_and_external_access_stays_off(tmp_path: Path) -> None:
    assert current(tmp_path / "a", "300MB") == ("286.1 MiB", "False")


def test_without_it_duckdb_keeps_its_own_default(tmp_path: Path) -> None:
    limit, external = current(tmp_path / "b", "")
    assert limit != "286.1 MiB" and limit.endswith("GiB")
    assert external == "False"
