"""The hygiene report: what in the definitions and the alerting needs care, each line with the
fix to make (docs/reviews.md).

- noisy alerts, from the week's incident timelines (reports/hygiene_alerts.py);
- KPIs never reviewed, KPIs whose review is overdue (reports/reviews.py), KPIs that no
  dashboard, alert, report or other KPI uses (catalog lineage);
- sources gone silent (reports/hygiene_sources.py).

`hygiene(...)` gathers it; `hygiene_table` is its report section, `hygiene_json` the API's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from opsmetrics.alerting.notifiers.base import rfc3339
from opsmetrics.catalog.kpi_lineage import DependentSource
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.reports.hygiene_alerts import KINDS, WEEK_MS, AlertNoise, alert_finding, alert_noise
from opsmetrics.reports.hygiene_model import Finding
from opsmetrics.reports.hygiene_sources import SourceActivity, silent_findings, source_activity
from opsmetrics.reports.reviews import (
    NO_OWNER,
    ReviewItem,
    ReviewState,
    has_owner,
    human_duration,
    review_items,
)
from opsmetrics.reports.tables import ReportTable
from opsmetrics.storage.base import Storage

AREAS = ("alert", "kpi", "source")
HYGIENE_COLUMNS = ("Area", "Item", "Finding", "Fix")


@dataclass(frozen=True, slots=True)
class Hygiene:
    as_of_ms: int
    findings: list[Finding]
    alerts: list[AlertNoise]
    sources: list[SourceActivity]


def hygiene(
    storage: Storage, catalog: Catalog, users: Sequence[DependentSource], now_ms: int
) -> Hygiene:
    """Everything the report lists, as of `now_ms`. `users` are what may use a KPI besides
    other KPIs: the dashboards, the KPI alert rules, the reports."""
    noise = alert_noise(storage.timeline_entries(KINDS, now_ms - WEEK_MS), now_ms)
    # Review standing only: no KPI is evaluated here (off target is the review list's).
    items = review_items(catalog, storage, lambda _name: None, now_ms)
    sources = source_activity(storage, now_ms)
    findings = [f for f in map(alert_finding, noise) if f is not None]
    findings += kpi_findings(items, catalog, users)
    findings += silent_findings(sources, now_ms)
    return Hygiene(now_ms, findings, noise, sources)


def kpi_findings(
    items: Iterable[ReviewItem], catalog: Catalog, users: Sequence[DependentSource]
) -> list[Finding]:
    """KPIs never reviewed (one line per owner: a new catalog would list every KPI), overdue
    reviews and unused KPIs (one line each)."""
    never: dict[str, list[ReviewItem]] = {}
    found: list[Finding] = []
    for item in items:
        kpi = item.kpi
        if item.last is None:
            never.setdefault(kpi.owner if has_owner(kpi) else NO_OWNER, []).append(item)
        elif item.state is ReviewState.OVERDUE:
            found.append(_overdue_finding(item))
        if not catalog.lineage(kpi.name, users).dependents:
            found.append(Finding("kpi", "unused", kpi.name,
                "no dashboard, alert, report or other KPI uses it",
                f"add {kpi.name} to a dashboard, an alert or a report, or delete it from "
                f"{kpi.source}: nothing uses it"))  # fmt: skip
    never_found = [_never_finding(owner, listed) for owner, listed in sorted(never.items())]
    return never_found + found


#: Never-reviewed KPIs named in one line; the rest are counted.
NAMED = 6


def _never_finding(owner: str, items: list[ReviewItem]) -> Finding:
    names = [i.kpi.name for i in items]
    shown = ", ".join(names[:NAMED]) + (
        f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
    )
    count = "1 KPI" if len(names) == 1 else f"{len(names)} KPIs"
    cmd = "`opsmetrics kpi review NAME --author NAME --note TEXT`"
    if owner == NO_OWNER:
        where = ", ".join(f"{i.kpi.name} ({i.kpi.source})" for i in items[:NAMED])
        fix = (
            f"set a real `owner:` for {where}, then have each reviewed and marked reviewed ({cmd})"
        )
    else:
        fix = f"ask {owner} to review {shown} and mark each reviewed ({cmd})"
    return Finding("kpi", "never_reviewed", owner, f"{count} never reviewed: {shown}", fix)


def _overdue_finding(item: ReviewItem) -> Finding:
    kpi = item.kpi
    cmd = f"`opsmetrics kpi review {kpi.name} --author NAME --note TEXT`"
    late = human_duration(item.overdue_ms)
    who = kpi.owner if has_owner(kpi) else "its owner"
    return Finding("kpi", "overdue_review", kpi.name,
        f"its {kpi.cadence.value} review is overdue by {late}",
        f"{who} should review {kpi.name} and mark it reviewed ({cmd}): the "
        f"{kpi.cadence.value} review is {late} late")  # fmt: skip


# --- views ------------------------------------------------------------------------------
def hygiene_table(h: Hygiene) -> ReportTable:
    """The findings, alerts first, then KPIs, then sources, each with its fix."""
    ordered = sorted(h.findings, key=lambda f: AREAS.index(f.area))
    return ReportTable(
        title="Hygiene",
        columns=HYGIENE_COLUMNS,
        rows=[(f.area, f.subject, f.detail, f.fix) for f in ordered],
        note="Noisy alerts are counted over the last 7 days of incident timelines.",
        empty="Nothing to clean up: alerts are quiet, KPIs are used and reviewed, "
        "every source is sending.",
    )


def hygiene_json(h: Hygiene) -> dict[str, object]:
    ordered = sorted(h.findings, key=lambda f: AREAS.index(f.area))
    return {
        "as_of": rfc3339(h.as_of_ms),
        "findings": [f.to_json() for f in ordered],
        "alerts": [n.to_json() for n in h.alerts],
        "sources": [
            {
                "kind": s.kind,
                "name": s.name,
                "last_seen": rfc3339(s.last_ms),
                "cadence_seconds": s.cadence_ms / 1000,
                "silent": s.is_silent(h.as_of_ms),
            }
            for s in h.sources
        ],  # fmt: skip
    }
