"""OPSMETRICS_SQL_KPI_MAX_ROWS and OPSMETRICS_SQL_KPI_TIMEOUT (docs/configuration.md): the limits
of the `sql:` KPI sandbox (tests/test_sql_sandbox.py) come from the settings, checked before the
store opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsmetrics.clock import FakeClock
from opsmetrics.errors import ConfigError
from opsmetrics.settings import Settings
from opsmetrics.storage.open import open_stores
from opsmetrics.storage.sql_sandbox import SqlRowLimitError, SqlTimeoutError

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC


def test_the_limits_come_from_the_settings(tmp_path: Path) -> None:
    env = {"OPSMETRICS_SQL_KPI_MAX_ROWS": "5", "OPSMETRICS_SQL_KPI_TIMEOUT": "750ms"}
    settings = Settings.from_env(env, data_dir=tmp_path / "data")
    store = open_stores(settings, FakeClock(NOW))
    try:
        with pytest.raises(SqlRowLimitError, match=r"more than 5 rows.*OPSMETRICS_SQL_KPI_MAX"):
            store.kpi_sql("SELECT range AS value FROM range(6)", {})
        with pytest.raises(SqlTimeoutError, match=r"ran longer than 0.75 s"):
            store.kpi_sql("SELECT count(*) AS value FROM range(10000000000)", {})
    finally:
        store.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OPSMETRICS_SQL_KPI_MAX_ROWS": "0"}, r"^OPSMETRICS_SQL_KPI_MAX_ROWS: 0 is too few"),
        ({"OPSMETRICS_SQL_KPI_MAX_ROWS": "many"}, r"^OPSMETRICS_SQL_KPI_MAX_ROWS: 'many' is not"),
        ({"OPSMETRICS_SQL_KPI_TIMEOUT": "0s"}, r"^OPSMETRICS_SQL_KPI_TIMEOUT: must be a positive"),
    ],
)
def test_bad_limits_are_refused_before_the_store_opens(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        open_stores(Settings.from_env(env, data_dir=tmp_path / "data"), FakeClock(NOW))
    assert not (tmp_path / "data").exists()
