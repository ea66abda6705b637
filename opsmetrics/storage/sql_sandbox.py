"""The limits and errors of the `sql:` KPI sandbox, shared by both backends.

The sandbox itself is the engine's: DuckDB runs with external access off and its configuration
locked (storage/duckdb/sql_sandbox.py), ClickHouse with `readonly=1` and execution limits
(storage/clickhouse/event_kpis.py). Here: how many rows a query may return, how long it may
run, the wrapper that makes only a SELECT parse, and the errors that say which limit stopped a
query and what to change. docs/security.md explains the design.
"""

from __future__ import annotations

from dataclasses import dataclass

from opsmetrics.errors import BadDataError, ConfigError
from opsmetrics.settings import Settings

#: The views an `sql:` KPI reads (docs/kpi_evaluation.md), named in messages.
VIEWS_HINT = "read the views v_events, v_samples and v_manual_kpi_values instead"


@dataclass(frozen=True, slots=True)
class SqlLimits:
    """Per query: at most `max_rows` result rows, stopped after `timeout_s` seconds."""

    max_rows: int = 100_000
    timeout_s: float = 10.0


def limits_of(settings: Settings) -> SqlLimits:
    """OPSMETRICS_SQL_KPI_MAX_ROWS and OPSMETRICS_SQL_KPI_TIMEOUT, checked."""
    if settings.sql_kpi_max_rows < 1:
        raise ConfigError(
            f"OPSMETRICS_SQL_KPI_MAX_ROWS: {settings.sql_kpi_max_rows} is too few; allow at "
            "least 1 row (default 100000)"
        )
    if settings.sql_kpi_timeout_ms < 1:
        raise ConfigError(
            "OPSMETRICS_SQL_KPI_TIMEOUT: must be a positive duration such as 10s (the default)"
        )
    return SqlLimits(settings.sql_kpi_max_rows, settings.sql_kpi_timeout_ms / 1000)


class SqlSandboxError(BadDataError):
    """An `sql:` KPI query that the sandbox refused or stopped."""

    reason = "sql_sandbox"


class SqlAccessError(SqlSandboxError):
    """The query tried to read a file, reach the network or load an extension."""


class SqlTimeoutError(SqlSandboxError):
    """The query ran past its time limit and was stopped."""


class SqlRowLimitError(SqlSandboxError):
    """The query returned more rows than allowed."""


def wrapped(body: str, limits: SqlLimits) -> str:
    """The KPI query as a subquery (so only a SELECT parses), one row past the limit."""
    return f"SELECT * FROM ({body.strip().rstrip(';')}\n) AS kpi LIMIT {limits.max_rows + 1}"


def access_error(detail: str) -> SqlAccessError:
    return SqlAccessError(
        f"sql: the query reads a file, the network or an extension, which an sql: KPI cannot "
        f"({detail}); {VIEWS_HINT}"
    )


def timeout_error(limits: SqlLimits) -> SqlTimeoutError:
    return SqlTimeoutError(
        f"sql: the query ran longer than {limits.timeout_s:g} s and was stopped; make it "
        "cheaper (filter on ts between $start_ms and $end_ms, aggregate in SQL) or raise "
        "OPSMETRICS_SQL_KPI_TIMEOUT"
    )


def check_row_count(rows: int, limits: SqlLimits) -> None:
    if rows > limits.max_rows:
        raise SqlRowLimitError(
            f"sql: the query returned more than {limits.max_rows} rows; aggregate it (GROUP BY "
            "the period or a dimension) or raise OPSMETRICS_SQL_KPI_MAX_ROWS"
        )
