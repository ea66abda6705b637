"""Which sources each KPI reads, and which event properties: what the data-quality monitors
check completeness against and whom a stale source concerns.

An event formula reads its `where` properties and its `field` when that is a property; a state
formula its `field` and `by`; a conversion its `entity_prop`; every KPI reads its dimensions
from the events it aggregates. Other KPIs a formula refers to are followed, library KPIs
expanded (catalog/kpi_lineage.py gives the event names and series selectors).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from opsmetrics.analysis.quality import QualityReport, SourceReport
from opsmetrics.catalog.kpi_library import LIBRARY
from opsmetrics.catalog.kpi_lineage import InputKind
from opsmetrics.catalog.kpi_model import (
    ConversionFormula,
    CumulativeFormula,
    EventField,
    EventFormula,
    ExprFormula,
    KpiDefinition,
    LibraryFormula,
    Operand,
    RatioFormula,
    StateFormula,
)
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.errors import BadDataError
from opsmetrics.model import MatchOp
from opsmetrics.query.kpi.freshness import leaf_inputs
from opsmetrics.query.selectors import parse_selector


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A source a KPI reads: an event name, or a metric name from a series selector."""

    kind: str  # "event" or "metric"
    name: str


@dataclass(slots=True)
class KpiReads:
    """Per KPI its sources; per event name the properties KPIs read, and which KPIs."""

    sources: dict[str, list[SourceRef]] = field(default_factory=dict)
    props: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def kpis_of(self, ref: SourceRef) -> list[str]:
        return sorted(k for k, refs in self.sources.items() if ref in refs)


def kpi_reads(catalog: Catalog) -> KpiReads:
    out = KpiReads()
    for kpi in catalog:
        out.sources[kpi.name] = sources_of(catalog, kpi)
        for event, prop in _props_of(kpi):
            out.props.setdefault(event, {}).setdefault(prop, set()).add(kpi.name)
    return out


def sources_of(catalog: Catalog, kpi: KpiDefinition) -> list[SourceRef]:
    """The events and metrics a KPI reads, following the KPIs it refers to."""
    found: list[SourceRef] = []
    for _, item in leaf_inputs(catalog, kpi):
        if item.kind is InputKind.EVENT:
            found.append(SourceRef("event", item.name))
        elif item.kind is InputKind.SERIES:
            found += [SourceRef("metric", m) for m in _metric_names(item.name)]
    return list(dict.fromkeys(found))


def _metric_names(selector: str) -> list[str]:
    try:
        matchers = parse_selector(selector).matchers
    except BadDataError:
        return []
    return [m.value for m in matchers if m.name == "__name__" and m.op is MatchOp.EQ]


def _props_of(kpi: KpiDefinition) -> Iterator[tuple[str, str]]:
    for event, props in _formula_props(kpi.formula):
        yield from ((event, p) for p in props)
        yield from ((event, d) for d in kpi.dimensions)


def _formula_props(formula: Operand) -> Iterator[tuple[str, list[str]]]:
    if isinstance(formula, RatioFormula):
        yield from _formula_props(formula.numerator)
        yield from _formula_props(formula.denominator)
    elif isinstance(formula, CumulativeFormula):
        yield from _formula_props(formula.of)
    elif isinstance(formula, ExprFormula):
        for _, operand in formula.bindings:
            yield from _formula_props(operand)
    elif isinstance(formula, LibraryFormula):
        entry = LIBRARY.get(formula.name)
        expanded = entry.expand(dict(formula.params)) if entry is not None else None
        if expanded is not None:
            yield from _formula_props(expanded)
    else:
        yield from _leaf_props(formula)


def _leaf_props(formula: object) -> Iterator[tuple[str, list[str]]]:
    if isinstance(formula, EventFormula):
        yield formula.name, [f.prop for f in formula.where] + _prop(formula.field)
    elif isinstance(formula, StateFormula):
        yield formula.event, _prop(formula.field) + _prop(formula.by)
    elif isinstance(formula, ConversionFormula):
        props = [formula.entity_prop] if formula.entity_prop else []
        yield formula.from_event, props
        yield formula.to_event, props


def _prop(f: EventField | None) -> list[str]:
    return [f.prop] if f is not None and f.prop is not None else []


def stale_for_kpi(
    report: QualityReport, catalog: Catalog, kpi: KpiDefinition
) -> list[SourceReport]:
    """The stale sources among those the KPI reads (the KPI API and widgets note them)."""
    return report.stale_sources([(r.kind, r.name) for r in sources_of(catalog, kpi)])
