"""A table section of a report: the owners' review list and the hygiene report render as these."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReportTable:
    """Rows of plain text under a title; `note` is one sentence shown under the table."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    note: str = ""
    #: Shown instead of an empty table ("Every KPI was reviewed within its cadence.").
    empty: str = ""
