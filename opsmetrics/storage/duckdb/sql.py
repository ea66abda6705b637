"""Small statement helpers: DuckDB needs each result fully fetched before the next statement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb


def scalar(cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row, or None when there is no row."""
    rows = cur.execute(sql, list(params)).fetchall()
    return rows[0][0] if rows else None


def first_row(
    cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()
) -> tuple[Any, ...]:
    rows = cur.execute(sql, list(params)).fetchall()
    if not rows:
        raise LookupError(f"no row from {sql!r}")
    return tuple(rows[0])
