"""Running an `sql:` KPI in DuckDB so that it can read the store's tables and nothing else.

`enable_external_access` is a setting of the database instance, not of a connection (setting it
on one cursor turns it off for all, and it cannot be turned back on), so the whole instance is
opened with `INSTANCE_CONFIG`: no file or network access beyond the database's own file, WAL
and temp directory, no extension loading or installing, and the configuration locked so that no
statement can change it back. The store itself reads no files through SQL. Before each query
`ensure_sandboxed` checks those settings and, should a connection have been opened without them
(a refactor of how the file is opened), applies them then: they can be turned off while the
instance runs, never on again. Each query runs on
a cursor of its own, in a READ ONLY transaction, and a timer interrupts that cursor (DuckDB has
no statement timeout; an interrupt stops only the cursor it is sent to). docs/security.md has
the experiments behind this.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import duckdb

from opsmetrics.errors import BadDataError
from opsmetrics.storage.kpi_records import SqlResult
from opsmetrics.storage.sql_sandbox import (
    SqlLimits,
    access_error,
    check_row_count,
    timeout_error,
    wrapped,
)

#: The configuration the store's DuckDB instance is opened with (storage/duckdb/backend.py).
INSTANCE_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}


#: What `ensure_sandboxed` sets before it locks the configuration.
_SANDBOXED = {k: v for k, v in INSTANCE_CONFIG.items() if k != "lock_configuration"}
_READ_SETTINGS = "SELECT " + ", ".join(f"current_setting('{name}')" for name in INSTANCE_CONFIG)


def ensure_sandboxed(con: duckdb.DuckDBPyConnection) -> None:
    """Make sure the instance of `con` runs with INSTANCE_CONFIG (locked last)."""
    row = con.execute(_READ_SETTINGS).fetchone()
    if row is not None and list(row) == list(INSTANCE_CONFIG.values()):
        return
    for name, value in _SANDBOXED.items():
        con.execute(f"SET {name} = {str(value).lower()}")
    con.execute("SET lock_configuration = true")


def run_sandboxed(
    con: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, int], limits: SqlLimits
) -> SqlResult:
    """`query` as one read-only SELECT on a new cursor of `con`, within `limits`."""
    cur = con.cursor()
    ensure_sandboxed(cur)
    timer = threading.Timer(limits.timeout_s, cur.interrupt)
    try:
        cur.execute("BEGIN TRANSACTION READ ONLY")
        timer.start()
        result = cur.execute(wrapped(query, limits), dict(params))
        columns = [d[0] for d in result.description or []]
        rows = [tuple(r) for r in result.fetchmany(limits.max_rows + 1)]
    except duckdb.InterruptException:
        raise timeout_error(limits) from None
    except duckdb.PermissionException as exc:
        raise access_error(_first_line(exc)) from None
    except duckdb.Error as exc:
        raise BadDataError(f"sql: the query failed: {_explained(exc)}") from None
    finally:
        timer.cancel()
        if timer.is_alive():
            timer.join()  # an interrupt on its way must not reach a cursor in use again
        cur.close()  # rolls the read-only transaction back
    check_row_count(len(rows), limits)
    return SqlResult(columns, rows)


def _first_line(exc: duckdb.Error) -> str:
    return str(exc).splitlines()[0]


def _explained(exc: duckdb.Error) -> str:
    text = str(exc)
    if "expression depth" in text:
        # DuckDB's own advice (SET max_expression_depth) is not open to a KPI query
        return "it nests more than 1000 levels deep; flatten it (name subqueries with WITH)"
    return text
