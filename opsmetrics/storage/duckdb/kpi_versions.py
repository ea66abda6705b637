"""The kpi_versions table of the DuckDB backend: the history of each KPI definition."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import duckdb

from opsmetrics.storage.base import KpiVersion

_COLUMNS = "name, version, hash, definition, diff, author, recorded_ms"


class KpiVersionTable:
    """Mixed into DuckDBStorage, whose cursor and transaction it uses."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def record_kpi_version(self, version: KpiVersion) -> None:
        row = [
            version.name,
            version.version,
            version.hash,
            version.definition,
            version.diff,
            version.author,
            version.recorded_ms,
        ]
        sql = f"INSERT INTO kpi_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        try:
            with self._transaction() as cur:
                cur.execute(sql, row)
        except duckdb.ConstraintException as exc:
            raise ValueError(f"KPI {version.name!r} already has version {version.version}") from exc

    def kpi_versions(self, name: str) -> list[KpiVersion]:
        sql = f"SELECT {_COLUMNS} FROM kpi_versions WHERE name = ? ORDER BY version"
        rows = self._cursor().execute(sql, [name]).fetchall()
        return [_version(row) for row in rows]

    def kpi_names(self) -> list[str]:
        sql = "SELECT name FROM kpi_versions UNION SELECT kpi FROM manual_kpi_values ORDER BY 1"
        return [str(r[0]) for r in self._cursor().execute(sql).fetchall()]


def _version(row: tuple[Any, ...]) -> KpiVersion:
    name, version, digest, definition, diff, author, recorded_ms = row
    return KpiVersion(name, int(version), digest, definition, diff, author, int(recorded_ms))
