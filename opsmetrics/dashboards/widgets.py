"""Payloads of the event, alert and text widgets: funnels, retention cohorts, alert lists,
Markdown text and experiment panels.
"""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt

from opsmetrics.alerting.model import Alert
from opsmetrics.catalog.dashboard_schema import (
    AlertListWidget,
    CohortWidget,
    ExperimentWidget,
    FunnelWidget,
    TextWidget,
)
from opsmetrics.catalog.dashboards import conversion_steps
from opsmetrics.dashboards.context import DashboardContext
from opsmetrics.errors import BadDataError, NotFoundError
from opsmetrics.query import events as ev

Payload = dict[str, Any]
_SEVERITY_ORDER = {"critical": 0, "page": 0, "warning": 1, "info": 2}
#: CommonMark without raw HTML: `<script>` in a dashboard file is shown as text, not run.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def funnel(ctx: DashboardContext, w: FunnelWidget) -> Payload:
    rng = ctx.range.ending(w.range)
    names, window = list(w.steps or []), w.within
    title = w.title
    if w.kpi is not None:
        found = conversion_steps(ctx.catalog, w.kpi)
        if found is None:
            raise BadDataError(f"KPI {w.kpi!r} is not a conversion KPI; give `steps:` instead")
        names, window = found
        title = title or ctx.catalog.get(w.kpi).title
    q = ev.Funnel(tuple(ev.EventMatch(n) for n in names), rng.start_ms, rng.end_ms, window)
    result = ev.funnel(ctx.storage, q)
    counts = {s.step: s for s in result.groups[0].steps} if result.groups else {}
    steps = []
    for i, name in enumerate(names):
        s = counts.get(i)
        steps.append({"name": name, "count": s.entities if s else 0,
                      "rate_from_start": s.conversion_from_first if s else None,
                      "rate_from_previous": s.conversion_from_previous if s else None})  # fmt: skip
    return {"type": w.type, "title": title or " → ".join(names), "steps": steps}


def cohort(ctx: DashboardContext, w: CohortWidget) -> Payload:
    rng = ctx.range.ending(w.range)
    returning = ev.EventMatch(w.return_event) if w.return_event else None
    q = ev.Retention(
        ev.EventMatch(w.start_event),
        returning,
        rng.start_ms,
        rng.end_ms,
        grain=ev.Grain(w.period),
        periods=w.periods,
    )
    matrix = ev.retention(ctx.storage, q)
    cohorts = [{"start": c.start_ms, "size": c.size, "retention": c.rates} for c in matrix.cohorts]
    title = w.title or f"Retention: {w.start_event} → {w.return_event or 'any event'}"
    return {"type": w.type, "title": title, "period": w.period, "cohorts": cohorts}


def alert_list(ctx: DashboardContext, w: AlertListWidget) -> Payload:
    alerts = ctx.alerts.active_alerts() if ctx.alerts is not None else []
    wanted = [a for a in alerts if all(dict(a.labels).get(k) == v for k, v in w.match.items())]
    wanted.sort(key=lambda a: (_SEVERITY_ORDER.get(a.severity, 3), -a.active_at_ms))
    rows = [_alert_json(ctx, a) for a in wanted[: w.limit]]
    return {"type": w.type, "title": w.title or "Active alerts", "alerts": rows}


def _alert_json(ctx: DashboardContext, a: Alert) -> Payload:
    annotations = dict(a.annotations)
    return {
        "fingerprint": a.fingerprint,
        "name": a.name,
        "severity": a.severity,
        "state": a.state.value,
        "summary": annotations.get("summary") or annotations.get("description", ""),
        "active_at": a.active_at_ms,
        "acknowledged": ctx.acked is not None and ctx.acked(a.fingerprint),
        "link": a.generator_url or None,
    }


def text(ctx: DashboardContext, w: TextWidget) -> Payload:
    return {"type": w.type, "title": w.title or "", "html": _MARKDOWN.render(w.markdown)}


def experiment(ctx: DashboardContext, w: ExperimentWidget) -> Payload:
    """The readout of an experiment of config/experiments/ (analysis/experiments.py)."""
    from opsmetrics.analysis.experiments import readout
    from opsmetrics.catalog.experiments import load_experiments

    found = load_experiments(ctx.catalog.config_dir)
    exp = found.get(w.experiment)
    if exp is None:
        known = ", ".join(sorted(found)) or "none (add config/experiments/*.yaml)"
        raise NotFoundError(f"no experiment named {w.experiment!r}; experiments: {known}")
    # The readout scans every exposure: shared by requests within the same minute.
    minute = ctx.range.end_ms // 60_000
    result = ctx.cached(
        ("experiment", exp.name, minute), lambda: readout(ctx.storage, exp, ctx.range.end_ms)
    )
    return {"type": w.type, "title": w.title or exp.title or exp.name, "result": result}
