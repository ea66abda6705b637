"""The KPI reviews table of the PostgreSQL state store; the same semantics as
storage/duckdb/review_store.py."""

from __future__ import annotations

from collections.abc import Sequence

from opsmetrics.storage.postgres.database import Database
from opsmetrics.storage.review_records import COLUMNS, KpiReview, review_from_row

#: Migration 6 (storage/postgres/migrations.py).
REVIEW_TABLES = """
    -- Owners' reviews of KPIs (POST /api/v1/kpis/{name}/reviews, reports/reviews.py).
    CREATE TABLE kpi_reviews (
        id text COLLATE "C" PRIMARY KEY,
        kpi text COLLATE "C" NOT NULL,
        reviewed_ms bigint NOT NULL,
        author text NOT NULL,
        note text NOT NULL,
        version integer,                   -- the KPI definition version reviewed
        status text NOT NULL,              -- the KPI's status then
        value double precision             -- its current value then
    );
    CREATE INDEX kpi_reviews_kpi ON kpi_reviews (kpi, reviewed_ms);
"""


class ReviewLog:
    """Mixed into PostgresStateStore, whose Database it uses."""

    _db: Database

    def record_review(self, review: KpiReview) -> None:
        r = review
        row = [r.id, r.kpi, r.reviewed_ms, r.author, r.note, r.version, r.status, r.value]
        with self._db.transaction() as conn:
            got = conn.execute(
                f"INSERT INTO kpi_reviews ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                row,
            )
            if got.rowcount != 1:
                raise ValueError(f"a review with id {r.id!r} is stored already")

    def kpi_reviews(self, kpi: str, limit: int) -> list[KpiReview]:
        sql = (
            f"SELECT {COLUMNS} FROM kpi_reviews WHERE kpi = %s "
            "ORDER BY reviewed_ms DESC, id DESC LIMIT %s"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql, [kpi, limit]).fetchall()
        return [review_from_row(r) for r in rows]

    def latest_reviews(self, kpis: Sequence[str]) -> dict[str, KpiReview]:
        if not kpis:
            return {}
        sql = (
            f"SELECT DISTINCT ON (kpi) {COLUMNS} FROM kpi_reviews WHERE kpi = ANY(%s) "
            "ORDER BY kpi, reviewed_ms DESC, id DESC"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql, [list(kpis)]).fetchall()
        return {str(r[1]): review_from_row(r) for r in rows}
