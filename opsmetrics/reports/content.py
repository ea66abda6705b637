"""What a report says, before any HTML: the KPIs it covers (its sources, or its audience's
default), each KPI's figures, trend chart and explanations, and the alerts of the window.

Everything is read as of the slot: the KPI evaluator's clock reads the slot, so a catch-up run
shows the numbers of its own period, not of the moment it ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opsmetrics.analysis.forecast import forecast
from opsmetrics.catalog.dashboards import DashboardSet
from opsmetrics.catalog.kpi_model import Grain, KpiDefinition, Level
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.catalog.reports import ReportSpec
from opsmetrics.dashboards.analysis import as_series
from opsmetrics.dashboards.charts import annotations_in
from opsmetrics.dashboards.context import DashboardContext, TimeRange
from opsmetrics.dashboards.format import number
from opsmetrics.errors import OpsMetricsError
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.query.kpi import periods as cal
from opsmetrics.reports.explain import Explanation, analysis_scope, explain
from opsmetrics.reports.figures import DAY_MS, Figures, figures, value_grain

Payload = dict[str, Any]
#: The KPIs an audience reads when the report names no sources.
DEFAULT_LEVELS = {
    "executive": (Level.STRATEGIC,),
    "operations": (Level.TACTICAL, Level.OPERATIONAL),
    "engineering": (Level.OPERATIONAL,),
}
TECHNICAL = frozenset({"engineering"})


@dataclass(frozen=True, slots=True)
class KpiSection:
    figures: Figures
    chart: Payload
    explanations: list[Explanation] = field(default_factory=list)
    #: The id of its chart image (cid: in the email).
    chart_id: str = ""

    @property
    def kpi(self) -> KpiDefinition:
        return self.figures.kpi


def select_kpis(spec: ReportSpec, catalog: Catalog, dashboards: DashboardSet) -> list[str]:
    """The report's KPIs in catalog order: those its sources name (by name, tag, level,
    owner, or through a dashboard's widgets), else its audience's default levels."""
    src = spec.sources
    if src.is_empty:
        levels = DEFAULT_LEVELS.get(spec.audience, ())
        return [k.name for k in catalog if k.level in levels]
    named = set(src.kpis)
    for name in src.dashboards:
        if name in dashboards.dashboards:
            named |= set(dashboards.get(name).kpis())
    return [k.name for k in catalog if k.name in named or _matches(k, spec)]


def _matches(kpi: KpiDefinition, spec: ReportSpec) -> bool:
    src = spec.sources
    return (bool(set(kpi.tags) & set(src.tags)) or kpi.level.value in src.levels
            or (bool(kpi.owner) and kpi.owner in src.owners))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reading:
    """What every section reads: the evaluator (its clock at the slot), the window."""

    evaluator: KpiEvaluator
    dashboard: DashboardContext
    spec: ReportSpec
    slot_ms: int
    window: tuple[int, int]

    @property
    def technical(self) -> bool:
        return self.spec.audience in TECHNICAL


def kpi_section(r: Reading, kpi: KpiDefinition) -> KpiSection:
    fig, _ = figures(r.evaluator, kpi, r.spec.window, r.spec.compare, r.spec.timezone, r.slot_ms)
    chart = trend_payload(r, kpi, fig)
    explanations: list[Explanation] = []
    if fig.warning is None:
        scope = analysis_scope(r.evaluator, kpi, r.window, r.spec.timezone, r.technical)
        explanations = explain(scope, chart["annotations"])
    return KpiSection(fig, chart, explanations)


def chart_grain(window: str) -> Grain:
    return Grain.HOUR if value_grain(window) is Grain.HOUR else Grain.DAY


def trend_payload(r: Reading, kpi: KpiDefinition, fig: Figures) -> Payload:
    """The KPI's trend chart (the UI's trend_chart payload): 48 hours or 30-90 days up to the
    slot, with its target line, threshold bands, annotations and a forecast to the end of
    the day (hourly charts) or month (daily charts)."""
    grain = chart_grain(r.spec.window)
    tz = r.spec.timezone
    span = {Grain.HOUR: 2 * DAY_MS}.get(grain, max(30 * DAY_MS, 3 * (r.window[1] - r.window[0])))
    start = cal.floor(r.slot_ms - span, grain, tz)
    got = r.evaluator.series(kpi.name, start, r.slot_ms, grain=grain, tz=tz)
    # Whole periods only: the current, partial one would read as a sudden drop.
    done = [[p.start_ms, number(p.value)] for p in got.points
            if not p.group and p.end_ms <= r.slot_ms]  # fmt: skip
    rng = TimeRange.of(start, r.slot_ms)
    return {
        "type": "trend_chart",
        "title": kpi.title,
        "unit": kpi.unit.value,
        "series": [
            {
                "name": kpi.name,
                "label": kpi.title,
                "unit": kpi.unit.value,
                "points": done,
                "compare_points": None,
            }
        ],  # fmt: skip
        "target": number(fig.target),
        "thresholds": _thresholds(kpi),
        "annotations": annotations_in(r.dashboard, rng, [kpi.name]),
        "forecast": _forecast(done, grain, tz, r.slot_ms),
        "anomalies": [],
    }


def _thresholds(kpi: KpiDefinition) -> Payload | None:
    t = kpi.thresholds
    if (t.warning is None and t.critical is None) or kpi.direction.value == "target_is_best":
        return None
    return {"warning": t.warning, "critical": t.critical, "direction": kpi.direction.value}


def _forecast(done: list[list[Any]], grain: Grain, tz: str, slot_ms: int) -> Payload | None:
    series = as_series(done)
    if series is None:
        return None
    horizon_grain = Grain.DAY if grain is Grain.HOUR else Grain.MONTH
    period_end = cal.add(cal.floor(slot_ms - 1, horizon_grain, tz), horizon_grain, 1, tz)
    steps = max(1, -(-(period_end - int(series.ts[-1])) // series.step_ms) - 1)
    try:
        got = forecast(series, min(steps, 400))
    except OpsMetricsError:
        return None
    rows = zip(got.ts.tolist(), got.mean.tolist(), got.lower.tolist(), got.upper.tolist(),
               strict=True)  # fmt: skip
    return {"points": [[int(t), number(m), number(lo), number(hi)] for t, m, lo, hi in rows]}


def biggest_movers(sections: Sequence[KpiSection], n: int = 3) -> list[KpiSection]:
    """The `n` KPIs that changed most against the comparison period (relative change)."""
    moved = [s for s in sections if s.figures.change is not None]
    return sorted(moved, key=lambda s: -abs(s.figures.change or 0.0))[:n]


def breaches(sections: Sequence[KpiSection]) -> list[KpiSection]:
    """KPIs past a threshold, critical first."""
    bad = [s for s in sections if s.figures.status.value in ("critical", "warning")]
    return sorted(bad, key=lambda s: s.figures.status.value != "critical")
