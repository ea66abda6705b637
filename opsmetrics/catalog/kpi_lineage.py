"""Lineage: what a KPI reads (series selectors, events, other KPIs, views) and what uses it.

Dashboards, alerts and reports join later through `DependentSource`: anything that can say
which of its parts use a KPI (`dependents_of(kpi)`) is passed to `Catalog.lineage`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Protocol, assert_never

import promql_parser

from opsmetrics.catalog.kpi_expr import names_in
from opsmetrics.catalog.kpi_library import LIBRARY
from opsmetrics.catalog.kpi_model import (
    ConversionFormula,
    CumulativeFormula,
    EventFormula,
    ExprFormula,
    KpiRef,
    LibraryFormula,
    ManualFormula,
    Operand,
    PromqlFormula,
    RatioFormula,
    SqlFormula,
    StateFormula,
)
from opsmetrics.catalog.promql_text import parse_promql


class InputKind(enum.Enum):
    SERIES = "series"  # a PromQL series selector
    EVENT = "event"  # an event name
    KPI = "kpi"  # another KPI of the catalog
    VIEW = "view"  # a view or table an sql: KPI selects from
    MANUAL = "manual"  # values entered by people
    LIBRARY = "library"  # a standard KPI not yet expanded


@dataclass(frozen=True, slots=True)
class LineageInput:
    kind: InputKind
    name: str


@dataclass(frozen=True, slots=True)
class Dependent:
    """Something that uses a KPI: kind is kpi, dashboard, alert, report…; source is file:line."""

    kind: str
    name: str
    source: str


@dataclass(frozen=True, slots=True)
class Lineage:
    kpi: str
    inputs: tuple[LineageInput, ...]
    dependents: tuple[Dependent, ...]


class DependentSource(Protocol):
    """The extension point for dashboards, alert rules and reports."""

    def dependents_of(self, kpi: str) -> list[Dependent]: ...


def formula_inputs(formula: Operand) -> list[LineageInput]:
    """The direct inputs of a formula, each once, in order of appearance."""
    found = _inputs(formula)
    return list(dict.fromkeys(found))


def _inputs(formula: Operand) -> list[LineageInput]:
    if isinstance(formula, KpiRef):
        return [LineageInput(InputKind.KPI, formula.name)]
    if isinstance(formula, RatioFormula):
        return _inputs(formula.numerator) + _inputs(formula.denominator)
    if isinstance(formula, CumulativeFormula):
        return _inputs(formula.of)
    if isinstance(formula, LibraryFormula):
        return _library_inputs(formula)
    return _leaf_inputs(formula)


_Leaf = (
    PromqlFormula
    | EventFormula
    | StateFormula
    | ExprFormula
    | ConversionFormula
    | SqlFormula
    | ManualFormula
)


def _leaf_inputs(formula: _Leaf) -> list[LineageInput]:
    if isinstance(formula, PromqlFormula):
        return [LineageInput(InputKind.SERIES, s) for s in promql_selectors(formula.query)]
    if isinstance(formula, EventFormula | StateFormula):
        name = formula.name if isinstance(formula, EventFormula) else formula.event
        return [LineageInput(InputKind.EVENT, name)]
    if isinstance(formula, ExprFormula):
        return _expr_inputs(formula)
    if isinstance(formula, ConversionFormula):
        names = (formula.from_event, formula.to_event)
        return [LineageInput(InputKind.EVENT, name) for name in names]
    if isinstance(formula, SqlFormula):
        return [LineageInput(InputKind.VIEW, name) for name in sql_relations(formula.query)]
    if isinstance(formula, ManualFormula):
        return [LineageInput(InputKind.MANUAL, "manual values")]
    assert_never(formula)


def _expr_inputs(formula: ExprFormula) -> list[LineageInput]:
    bound = dict(formula.bindings)
    found: list[LineageInput] = []
    for name in names_in(formula.expr):
        operand = bound.get(name)
        found += [LineageInput(InputKind.KPI, name)] if operand is None else _inputs(operand)
    return found


def _library_inputs(formula: LibraryFormula) -> list[LineageInput]:
    entry = LIBRARY.get(formula.name)
    expanded = entry.expand(dict(formula.params)) if entry is not None else None
    if expanded is None:
        return [LineageInput(InputKind.LIBRARY, formula.name)]
    return _inputs(expanded)


def promql_selectors(query: str) -> list[str]:
    """The series selectors of a PromQL expression, as text (`http_requests_total{code="500"}`)."""
    found: list[str] = []
    stack: list[Any] = [parse_promql(query)]
    while stack:
        node = stack.pop()
        if isinstance(node, promql_parser.VectorSelector):
            found.append(_selector_text(node))
            continue
        children = [getattr(node, a, None) for a in ("lhs", "rhs", "expr", "vector_selector")]
        children += list(getattr(node, "args", None) or [])
        stack += reversed([c for c in children if c is not None])
    return list(dict.fromkeys(found))


def _selector_text(node: Any) -> str:
    matchers = [str(m) for m in node.matchers.matchers]
    name = node.name or ""
    return f"{name}{{{','.join(matchers)}}}" if matchers else name


_RELATION = re.compile(r"\b(?:from|join)\s+([a-zA-Z_][\w.]*)", re.IGNORECASE)


def sql_relations(query: str) -> list[str]:
    """Names after FROM / JOIN (views and CTE names), each once."""
    return list(dict.fromkeys(m.group(1) for m in _RELATION.finditer(query)))
