"""A report's parts in the order its audience reads them, and its plain forms: the text
alternative of the email, the CSV (one row per KPI) and the JSON summary for webhooks/Slack.

- executive: the attainment table first, the three biggest movers with their explanations,
  then every other KPI, then the alerts still open;
- operations: the KPIs past a threshold, the open alerts, every KPI, the resolved alerts;
- engineering: every KPI with its anomalies and dimensions, then the open and resolved alerts;
- owner, hygiene: their tables (reports/reviews.py, reports/hygiene.py), then the KPIs if any.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opsmetrics.reports.alerts import AlertLine
from opsmetrics.reports.content import KpiSection, biggest_movers, breaches
from opsmetrics.reports.dashboard_charts import DashboardChart
from opsmetrics.reports.figures import local_text
from opsmetrics.reports.tables import ReportTable

CSV_COLUMNS = ("name", "title", "value", "unit", "target", "attainment", "status", "change")


@dataclass(frozen=True, slots=True)
class Part:
    kind: str  # attainment | kpis | alerts | table
    title: str
    items: Sequence[Any] = ()
    empty: str = ""
    table: ReportTable | None = None


@dataclass(frozen=True, slots=True)
class Document:
    audience: str
    title: str
    subject: str
    period: str
    compare_text: str
    delayed: bool
    tz: str
    sections: list[KpiSection]
    alerts: list[AlertLine]
    tables: list[ReportTable] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dashboards: list[DashboardChart] = field(default_factory=list)

    @property
    def parts(self) -> list[Part]:
        return layout(self)


def layout(doc: Document) -> list[Part]:
    """The audience's parts, then one per dashboard the report names (its charts)."""
    return [*_audience_parts(doc), *_dashboard_parts(doc)]


def _dashboard_parts(doc: Document) -> list[Part]:
    names = list(dict.fromkeys(c.dashboard for c in doc.dashboards))
    return [Part("charts", f"Dashboard: {name}", [c for c in doc.dashboards if c.dashboard == name])
            for name in names]  # fmt: skip


def _audience_parts(doc: Document) -> list[Part]:
    opened = [a for a in doc.alerts if a.is_open]
    closed = [a for a in doc.alerts if not a.is_open]
    open_part = Part("alerts", "Open alerts", opened, "No alert was open at the end of the period.")
    closed_part = Part("alerts", "Resolved alerts", closed, "No alert was resolved in the period.")
    tables = [Part("table", t.title, table=t) for t in doc.tables]
    kpis = doc.sections
    if doc.audience == "executive":
        movers = biggest_movers(kpis)
        rest = [s for s in kpis if s not in movers]
        return [Part("attainment", "Targets", kpis),
                Part("kpis", "Biggest movers", movers, "No KPI has a value to compare with."),
                *([Part("kpis", "Every other KPI", rest)] if rest else []),
                *tables, open_part]  # fmt: skip
    if doc.audience == "operations":
        bad = breaches(kpis)
        return [Part("kpis", "Past a threshold", bad, "Every KPI is within its thresholds."),
                open_part, Part("kpis", "KPIs", kpis, "No KPI selected."), *tables,
                closed_part]  # fmt: skip
    if doc.audience == "engineering":
        return [Part("kpis", "KPIs", kpis, "No KPI selected."), open_part, closed_part, *tables]
    listed = [Part("attainment", "KPIs", kpis)] if kpis else []
    return [*tables, *listed]


def text_of(doc: Document) -> str:
    """The plain-text alternative: the same figures, sentences and alerts."""
    lines = [doc.title, doc.period + (" (delayed)" if doc.delayed else ""), ""]
    lines += [f"! {w}" for w in doc.warnings]
    for s in doc.sections:
        lines.append(_kpi_line(s))
        lines += [f"    - {e.sentence}" for e in s.explanations]
    for t in doc.tables:
        lines += ["", t.title, " | ".join(t.columns)]
        lines += [" | ".join(row) for row in t.rows] or [t.empty]
    if doc.alerts:
        lines += ["", "Alerts"]
        lines += [_alert_line(a, doc.tz) for a in doc.alerts]
    return "\n".join(lines) + "\n"


def _kpi_line(s: KpiSection) -> str:
    f = s.figures
    if f.warning:
        return f"{s.kpi.title}: {f.warning}"
    parts = [f"{s.kpi.title}: {f.formatted}"]
    if f.target is not None:
        parts.append(f"target {f.target_formatted} ({f.attainment_text} attained)")
    parts.append(f.status_text)
    if f.change_text:
        parts.append(f.change_text)
    return " · ".join(parts)


def _alert_line(a: AlertLine, tz: str) -> str:
    state = "open" if a.is_open else f"resolved {local_text(a.resolved_ms or 0, tz)}"
    fired = local_text(a.fired_ms, tz)
    return f"  {a.name} ({a.severity or 'no severity'}): fired {fired}, {state}"


def csv_of(doc: Document) -> bytes:
    """One row per KPI: name, title, value, unit, target, attainment, status, change (empty
    where unknown; a stale KPI has no value and status `unknown`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in doc.sections:
        f = s.figures
        writer.writerow([s.kpi.name, s.kpi.title, _cell(f.value), s.kpi.unit.value,
                         _cell(f.target), _cell(f.attainment), f.status.value,
                         _cell(f.change)])  # fmt: skip
    return out.getvalue().encode()


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def summary_of(doc: Document, name: str, slot_ms: int, window: tuple[int, int]) -> dict[str, Any]:
    """JSON-able: the KPIs' figures and explanations, and the alerts (webhook, Slack)."""
    return {
        "report": name,
        "title": doc.title,
        "audience": doc.audience,
        "slot_ms": slot_ms,
        "window": {"start_ms": window[0], "end_ms": window[1]},
        "period": doc.period,
        "delayed": doc.delayed,
        "warnings": list(doc.warnings),
        "kpis": [_kpi_json(s) for s in doc.sections],
        "alerts": {
            "open": [_alert_json(a) for a in doc.alerts if a.is_open],
            "resolved": [_alert_json(a) for a in doc.alerts if not a.is_open],
        },
        "tables": [
            {"title": t.title, "columns": list(t.columns), "rows": [list(r) for r in t.rows]}
            for t in doc.tables
        ],  # fmt: skip
    }


def _kpi_json(s: KpiSection) -> dict[str, Any]:
    f = s.figures
    return {
        "name": s.kpi.name, "title": s.kpi.title, "unit": s.kpi.unit.value,
        "value": f.value, "formatted": f.formatted, "target": f.target,
        "attainment": f.attainment, "status": f.status.value, "status_text": f.status_text,
        "compare": f.compare, "change": f.change, "change_text": f.change_text,
        "verdict": f.verdict, "warning": f.warning,
        "explanations": [{"kind": e.kind, "ts": e.ts, "sentence": e.sentence}
                         for e in s.explanations],
    }  # fmt: skip


def _alert_json(a: AlertLine) -> dict[str, Any]:
    return {"name": a.name, "severity": a.severity, "summary": a.summary,
            "fired_ms": a.fired_ms, "resolved_ms": a.resolved_ms}  # fmt: skip
