"""The KPI reviews table of the DuckDB backend (storage/review_records.py)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import duckdb

from opsmetrics.storage.review_records import COLUMNS, KpiReview, review_from_row

#: Migration 15 (storage/duckdb/migrations.py).
REVIEW_TABLES = """
    -- Owners' reviews of KPIs (POST /api/v1/kpis/{name}/reviews, reports/reviews.py).
    CREATE TABLE kpi_reviews (
        id VARCHAR PRIMARY KEY,
        kpi VARCHAR NOT NULL,
        reviewed_ms BIGINT NOT NULL,
        author VARCHAR NOT NULL,
        note VARCHAR NOT NULL,
        version INTEGER,                   -- the KPI definition version reviewed
        status VARCHAR NOT NULL,           -- the KPI's status then (ok, warning, critical…)
        value DOUBLE                       -- its current value then
    );
"""


class ReviewTables:
    """Mixed into DuckDBStorage, whose cursor and (locked) transaction it uses."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def record_review(self, review: KpiReview) -> None:
        r = review
        row = [r.id, r.kpi, r.reviewed_ms, r.author, r.note, r.version, r.status, r.value]
        with self._transaction() as cur:
            got = cur.execute(
                f"INSERT INTO kpi_reviews ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                row,
            ).fetchone()
        if not (got and got[0]):
            raise ValueError(f"a review with id {r.id!r} is stored already")

    def kpi_reviews(self, kpi: str, limit: int) -> list[KpiReview]:
        sql = (
            f"SELECT {COLUMNS} FROM kpi_reviews WHERE kpi = ? "
            "ORDER BY reviewed_ms DESC, id DESC LIMIT ?"
        )
        return [review_from_row(r) for r in self._cursor().execute(sql, [kpi, limit]).fetchall()]

    def latest_reviews(self, kpis: Sequence[str]) -> dict[str, KpiReview]:
        if not kpis:
            return {}
        sql = (
            f"SELECT {COLUMNS} FROM kpi_reviews WHERE list_contains(?::VARCHAR[], kpi) "
            "QUALIFY row_number() OVER (PARTITION BY kpi ORDER BY reviewed_ms DESC, id DESC) = 1"
        )
        rows = self._cursor().execute(sql, [list(kpis)]).fetchall()
        return {str(r[1]): review_from_row(r) for r in rows}
