"""KPI reviews: an owner's note that a KPI was looked at (docs/reviews.md), and the store
protocol that holds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: The table's columns in the order `review_from_row` reads them (both backends).
COLUMNS = "id, kpi, reviewed_ms, author, note, version, status, value"


@dataclass(frozen=True, slots=True)
class KpiReview:
    """One review of one KPI: who, when, what they noted, and what the KPI was then."""

    id: str
    kpi: str
    reviewed_ms: int
    author: str
    note: str
    #: The definition version reviewed (storage.kpi_versions); None if none was recorded.
    version: int | None
    #: The KPI's status when it was reviewed: ok | warning | critical | unknown.
    status: str
    #: Its current value then (None when it had none).
    value: float | None = None


def review_from_row(row: Sequence[Any]) -> KpiReview:
    id_, kpi, at, author, note, version, status, value = row
    return KpiReview(
        str(id_), str(kpi), int(at), str(author), str(note),
        None if version is None else int(version), str(status),
        None if value is None else float(value),
    )  # fmt: skip


class ReviewStore(Protocol):
    """Part of the StateStore (storage/base.py): both state backends hold reviews."""

    def record_review(self, review: KpiReview) -> None:
        """Store it durably; ValueError if its id is stored already."""
        ...

    def kpi_reviews(self, kpi: str, limit: int) -> list[KpiReview]:
        """The KPI's newest `limit` reviews, newest first (by reviewed_ms, then id)."""
        ...

    def latest_reviews(self, kpis: Sequence[str]) -> dict[str, KpiReview]:
        """The newest review of each of these KPIs that has one."""
        ...
