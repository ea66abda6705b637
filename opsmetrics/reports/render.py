"""Render one report for one slot into every format it asks for (docs/reports.md, "Content
and rendering").

    inputs = inputs_from_services(services)
    rendered = render_report(inputs, spec, slot_ms, formats=frozenset({"html", "pdf"}))

Numbers are read as of the slot (the KPI evaluator's clock reads `slot_ms`), for the window
the report's spec gives (catalog/reports.py `report_window`), in its time zone.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from opsmetrics.catalog.dashboards import DashboardSet
from opsmetrics.catalog.kpi_model import KpiDefinition
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.catalog.reports import ReportSpec, comparison_window, report_window
from opsmetrics.clock import Clock, FakeClock
from opsmetrics.dashboards.context import DashboardContext, TimeRange
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.reports.alerts import window_alerts
from opsmetrics.reports.charts_ssr import ChartRenderer, ChartSvg, shared_renderer
from opsmetrics.reports.content import KpiSection, Reading, kpi_section, select_kpis
from opsmetrics.reports.dashboard_charts import DashboardChart, dashboard_charts
from opsmetrics.reports.document import Document, csv_of, summary_of, text_of
from opsmetrics.reports.figures import DAY_MS, local_text
from opsmetrics.reports.memo import Memo
from opsmetrics.reports.pdf import (
    CHART_HEIGHT,
    CHART_WIDTH,
    png_of,
    render_html,
    svg_data_uri,
)
from opsmetrics.reports.pdf_workers import PdfMaker, shared_pdf_maker
from opsmetrics.reports.rendered import ChartImages, RenderedReport, content_hash
from opsmetrics.reports.sections import audience_tables
from opsmetrics.reports.tables import ReportTable
from opsmetrics.storage.base import Storage

FORMATS = frozenset({"html", "pdf", "csv"})
#: KPI sections computed at once (DuckDB reads use one cursor per thread). Two: on this
#: machine's two cores four were no faster and held about 6 MB more at the peak (issue 18).
WORKERS = 2
#: Tables to show instead of the audience's own (reports/sections.py): (spec, slot_ms) → tables.
TableSource = Callable[[ReportSpec, int], list[ReportTable]]
#: A KPI section is reused this long by other reports of the same slot (one burst of reports),
#: then read again, so data that arrived since shows.
SECTION_TTL_MS = 60_000
SHARED_KEPT = 512


@dataclass(frozen=True)
class SharedWork:
    """What reports rendered together share: KPI sections (same KPI, slot, window, wording)
    and the PNG of each chart SVG."""

    sections: Memo[KpiSection]
    pngs: Memo[bytes]

    @classmethod
    def of(cls, clock: Clock) -> SharedWork:
        return cls(Memo(SHARED_KEPT, clock, SECTION_TTL_MS), Memo(SHARED_KEPT))

    def png(self, svg: str) -> bytes:
        return self.pngs.get(svg, lambda: png_of(svg))


@dataclass(frozen=True)
class ReportInputs:
    """What rendering reads. `clock` is the real one (rendering reads the slot, not it)."""

    storage: Storage
    catalog: Catalog
    dashboards: DashboardSet
    clock: Clock
    renderer: ChartRenderer | None = None
    tables: TableSource | None = None
    workers: int = field(default=WORKERS)
    #: None: every report reads and draws its own.
    shared: SharedWork | None = None
    #: None: the process's (reports/pdf_workers.py).
    pdfs: PdfMaker | None = None


class ServicesLike(Protocol):
    """The parts of opsmetrics.services.Services rendering needs (services sits above this
    layer, so it is named by shape)."""

    @property
    def storage(self) -> Storage: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def dashboards(self) -> DashboardSet: ...
    @property
    def clock(self) -> Clock: ...


def inputs_from_services(services: ServicesLike, tables: TableSource | None = None) -> ReportInputs:
    return ReportInputs(services.storage, services.catalog, services.dashboards, services.clock,
                        tables=tables, shared=SharedWork.of(services.clock))  # fmt: skip


def render_report(
    ctx: ReportInputs,
    spec: ReportSpec,
    slot_ms: int,
    *,
    delayed: bool = False,
    formats: frozenset[str],
) -> RenderedReport:
    """The report at `slot_ms` in `formats` (html: the email's HTML and PNG charts; pdf; csv).
    The page HTML (preview) is always made."""
    pdfs = ctx.pdfs or shared_pdf_maker()
    with pdfs.rendering():
        return _render(ctx, pdfs, spec, slot_ms, delayed, formats)


def _render(
    ctx: ReportInputs,
    pdfs: PdfMaker,
    spec: ReportSpec,
    slot_ms: int,
    delayed: bool,
    formats: frozenset[str],
) -> RenderedReport:
    doc, charts = build(ctx, spec, slot_ms, delayed)
    tz = spec.timezone

    def local(ms: int) -> str:
        return local_text(ms, tz)

    page = render_html(doc, lambda cid: svg_data_uri(charts[cid].svg), local)
    if "pdf" in formats and pdfs.alone():
        # A PDF made in place: the chart engine's memory goes back before WeasyPrint takes
        # its ~50 MB (issue 18: a report peaks within 200 MB); a burst keeps it.
        (ctx.renderer or shared_renderer()).release()
    pending = pdfs.submit(page) if "pdf" in formats else None  # the email is made meanwhile
    images = None
    email = ""
    if "html" in formats:
        draw = png_of if ctx.shared is None else ctx.shared.png
        images = ChartImages({cid: chart.svg for cid, chart in charts.items()}, draw)
        email = render_html(doc, lambda cid: f"cid:{cid}", local)
    table = csv_of(doc) if "csv" in formats else None
    text = text_of(doc)
    window = report_window(spec, slot_ms)
    pdf = pending.result() if pending is not None else None
    return RenderedReport(
        subject=doc.subject, text=text, html_email=email, html_page=page, pdf=pdf, csv=table,
        summary=summary_of(doc, spec.name, slot_ms, window),
        sha256=content_hash(text, page.encode(), table), chart_images=images,
    )  # fmt: skip


def build(
    ctx: ReportInputs, spec: ReportSpec, slot_ms: int, delayed: bool
) -> tuple[Document, dict[str, ChartSvg]]:
    """The document and its charts (SVG by chart id)."""
    window = report_window(spec, slot_ms)
    at_slot = KpiEvaluator(ctx.storage, ctx.catalog, FakeClock(slot_ms))
    dash = DashboardContext(ctx.storage, ctx.catalog, at_slot, TimeRange.of(*window))
    reading = Reading(at_slot, dash, spec, slot_ms, window)
    names = select_kpis(spec, ctx.catalog, ctx.dashboards)
    with ThreadPoolExecutor(max(1, ctx.workers), thread_name_prefix="report") as pool:
        sections = list(pool.map(lambda n: _section(ctx, reading, ctx.catalog.get(n)), names))
    renderer = ctx.renderer or shared_renderer()
    charts: dict[str, ChartSvg] = {}
    numbered = []
    for i, s in enumerate(sections):
        cid = f"chart{i + 1}-{spec.name}"
        payload = local_times(s.chart, ZoneInfo(spec.timezone))
        charts[cid] = renderer.render("trend", payload, CHART_WIDTH, CHART_HEIGHT)
        numbered.append(replace(s, chart_id=cid))
    boards = _dashboards(ctx, spec, dash, slot_ms, renderer, charts)
    if ctx.tables is not None:
        tables = ctx.tables(spec, slot_ms)
    else:
        tables = audience_tables(ctx.storage, ctx.catalog, ctx.dashboards, at_slot, spec, slot_ms)
    doc = Document(
        audience=spec.audience, title=spec.title or spec.name,
        subject=_subject(spec, window, delayed), period=_period(spec, window),
        compare_text=_compare_text(spec, slot_ms), delayed=delayed, tz=spec.timezone,
        sections=numbered,
        alerts=window_alerts(ctx.storage, window[0], slot_ms), tables=tables,
        warnings=_warnings(sections, charts), dashboards=boards,
    )  # fmt: skip
    return doc, charts


def _section(ctx: ReportInputs, r: Reading, kpi: KpiDefinition) -> KpiSection:
    if ctx.shared is None:
        return kpi_section(r, kpi)
    spec = r.spec
    key = (kpi.name, kpi.definition_json, spec.window, spec.compare, spec.timezone, r.slot_ms,
           r.technical)  # fmt: skip
    return ctx.shared.sections.get(key, lambda: kpi_section(r, kpi))


def _dashboards(
    ctx: ReportInputs,
    spec: ReportSpec,
    dash: DashboardContext,
    slot_ms: int,
    renderer: ChartRenderer,
    charts: dict[str, ChartSvg],
) -> list[DashboardChart]:
    """The named dashboards' chart widgets, drawn; their SVG goes into `charts`."""
    out = []
    for name in spec.sources.dashboards:
        if name not in ctx.dashboards.dashboards:
            continue
        for chart in dashboard_charts(dash, ctx.dashboards.get(name), slot_ms):
            cid = f"chart{len(charts) + 1}-{spec.name}"
            payload = chart.payload
            if chart.kind == "trend":
                payload = local_times(payload, ZoneInfo(spec.timezone))
            if chart.error is None:
                charts[cid] = renderer.render(chart.kind, payload, CHART_WIDTH, CHART_HEIGHT)
            out.append(replace(chart, chart_id=cid if chart.error is None else ""))
    return out


def _warnings(sections: list[KpiSection], charts: dict[str, ChartSvg]) -> list[str]:
    stale = [f"{s.kpi.title}: {s.figures.warning}" for s in sections if s.figures.warning]
    broken = [f"A chart could not be drawn ({c.error})" for c in charts.values() if c.error]
    return stale + sorted(set(broken))


def _subject(spec: ReportSpec, window: tuple[int, int], delayed: bool) -> str:
    text = f"{spec.title or spec.name} — {_period(spec, window)}"
    return text + " (delayed)" if delayed else text


def _period(spec: ReportSpec, window: tuple[int, int]) -> str:
    start, end = window
    tz = spec.timezone
    if end - start >= DAY_MS and _is_midnight(start, tz) and _is_midnight(end, tz):
        first = local_text(start, tz, with_time=False)
        last = local_text(end - 1, tz, with_time=False)
        return first if first == last else f"{first} – {last}"
    return f"{local_text(start, tz)} – {local_text(end, tz)} ({tz})"


def _is_midnight(ms: int, tz: str) -> bool:
    return local_text(ms, tz).endswith("00:00")


def _compare_text(spec: ReportSpec, slot_ms: int) -> str:
    other = comparison_window(spec, slot_ms)
    if other is None:
        return ""
    return "a year earlier" if spec.compare == "previous_year" else "the period before"


def local_times(payload: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """The chart payload with its times as the report's wall clock read as UTC: the charts
    draw in UTC (charts_ssr.js), so their axes show local times, across DST too."""

    def shift(ms: Any) -> Any:
        if ms is None:
            return None
        offset = datetime.fromtimestamp(int(ms) / 1000, tz).utcoffset()
        return int(ms) + int(offset.total_seconds() * 1000) if offset else int(ms)

    out = dict(payload)
    out["series"] = [
        {**s, "points": [[shift(p[0]), *p[1:]] for p in s.get("points") or []]}
        for s in payload.get("series", [])
    ]
    if payload.get("forecast"):
        pts = payload["forecast"]["points"]
        out["forecast"] = {**payload["forecast"], "points": [[shift(p[0]), *p[1:]] for p in pts]}
    out["annotations"] = [
        {**a, "ts": shift(a["ts"]), "end_ts": shift(a.get("end_ts"))}
        for a in payload.get("annotations", [])
    ]
    return out
