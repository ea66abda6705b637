"""The table sections of the owner and hygiene audiences: the owners' review list
(reports/reviews.py) and the hygiene findings (reports/hygiene.py), as of the slot.

Both are imported when a report of their audience is rendered: the hygiene checks pull in
the alert notifiers (apprise among them, about 10 MB), which an executive, operations or
engineering report never needs (issue 18: a PDF report within 200 MB)."""

from __future__ import annotations

from opsmetrics.catalog.dashboards import DashboardSet
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.catalog.reports import ReportSpec
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.reports.tables import ReportTable
from opsmetrics.storage.base import Storage


def audience_tables(
    storage: Storage,
    catalog: Catalog,
    dashboards: DashboardSet,
    at_slot: KpiEvaluator,
    spec: ReportSpec,
    slot_ms: int,
) -> list[ReportTable]:
    """`owner`: the review list (one owner's when the report names exactly one in
    `sources.owners`); `hygiene`: the findings with their fixes; others: none."""
    if spec.audience == "owner":
        from opsmetrics.reports.reviews import evaluator_points, review_items, review_table

        owners = spec.sources.owners
        owner = owners[0] if len(owners) == 1 else None
        items = review_items(catalog, storage, evaluator_points(at_slot), slot_ms)
        return [review_table(items, owner)]
    if spec.audience == "hygiene":
        from opsmetrics.reports.hygiene import hygiene, hygiene_table

        return [hygiene_table(hygiene(storage, catalog, [dashboards], slot_ms))]
    return []
