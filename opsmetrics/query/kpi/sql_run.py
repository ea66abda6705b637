"""An `sql:` KPI's query on its way to storage: the early check, then the storage sandbox
(storage/sql_sandbox.py), with every refusal or failure named by the KPI it belongs to."""

from __future__ import annotations

from opsmetrics.catalog.kpi_sql import SqlRefusedError, check_read_only
from opsmetrics.errors import BadDataError
from opsmetrics.query.kpi.model import KpiQueryError
from opsmetrics.storage.base import Storage
from opsmetrics.storage.kpi_records import SqlResult


class SqlKpiError(KpiQueryError):
    """An `sql:` KPI that the checker refused or the storage sandbox refused or stopped."""


def check_kpi_sql(query: str, kpi: str) -> None:
    try:
        check_read_only(query)
    except SqlRefusedError as exc:
        raise SqlKpiError(f"KPI {kpi!r}: sql: {exc}") from None


def run_kpi_sql(storage: Storage, query: str, kpi: str, start_ms: int, end_ms: int) -> SqlResult:
    """The query's rows with $start_ms and $end_ms bound; run `check_kpi_sql` first."""
    try:
        return storage.kpi_sql(query, {"start_ms": start_ms, "end_ms": end_ms})
    except BadDataError as exc:  # refused or stopped by the sandbox, or failed
        raise SqlKpiError(f"KPI {kpi!r}: {exc.message}") from None
