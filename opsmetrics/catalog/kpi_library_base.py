"""The machinery of the standard KPI library: parameter specs, checking, and formula builders.

A standard KPI is a `StandardKpi`: its parameters (each with a kind, a default or required),
a `build` function from checked parameters to an ordinary formula of kpi_model.py, and the
text docs/kpi-library.md shows (formula, inputs, worked example). Arithmetic that needs more
than a ratio is an `ExprFormula` whose names are bound in place (`bindings`), so a library KPI
never needs helper KPIs in the catalog.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from opsmetrics.catalog.kpi_expr import parse_expr
from opsmetrics.catalog.kpi_model import (
    CumulativeFormula,
    EventAgg,
    EventField,
    EventFormula,
    ExprFormula,
    FieldSource,
    FilterOp,
    Formula,
    Operand,
    PromqlFormula,
    PropFilter,
    Scalar,
)
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import OpsMetricsError

Params = Mapping[str, Scalar]


class ParamKind(enum.Enum):
    TEXT = "text"  # an event name, a property name, a metric name, a property value
    NUMBER = "number"
    DURATION = "duration"  # 30m, 1d, 4w
    FIELD = "field"  # value | entity | props.<name>
    CHOICE = "choice"
    LIST = "list"  # comma-separated text: "cart_view, checkout, purchase"
    MATCHERS = "matchers"  # PromQL label matchers without braces: service="checkout"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: ParamKind
    help: str
    default: Scalar | None = None  # None: required
    choices: tuple[str, ...] = ()  # CHOICE: the values; FIELD: the sources allowed, if fewer

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True, slots=True)
class StandardKpi:
    """One entry of the library; satisfies kpi_library.LibraryKpi."""

    name: str
    title: str
    unit: str
    formula: str  # the formula in words and symbols, for the docs
    params: tuple[Param, ...]
    build: Callable[[Params], Formula]
    example: str  # the `params:` mapping of the docs example, as YAML flow text
    worked: str  # a worked example with numbers

    def check(self, params: Params) -> list[str]:
        known = {p.name: p for p in self.params}
        problems = [_unknown(name, known) for name in params if name not in known]
        for spec in self.params:
            if spec.name in params:
                problems += _kind_problems(spec, params[spec.name])
            elif spec.required:
                problems.append(f"{self.name} needs parameter {spec.name!r}: {spec.help}")
        return problems

    def expand(self, params: Params) -> Formula | None:
        """The formula for `params`; None when they do not pass `check`."""
        if self.check(params):
            return None
        filled = {p.name: p.default for p in self.params if p.default is not None}
        return self.build({**filled, **params})


def _unknown(name: str, known: Mapping[str, Param]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known) or 'none'}"
    return f"unknown parameter {name!r}{hint}"


def _kind_problems(spec: Param, value: Scalar) -> list[str]:
    where = f"parameter {spec.name!r}"
    if spec.kind is ParamKind.NUMBER:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not a number"]
    if not isinstance(value, str) or not value.strip():
        return [f"{where}: {value!r} is not text; {spec.help}"]
    return _text_problems(spec, value, where)


def _text_problems(spec: Param, value: str, where: str) -> list[str]:
    if spec.kind is ParamKind.CHOICE and value not in spec.choices:
        return [f"{where}: {value!r} is not one of {', '.join(spec.choices)}"]
    if spec.kind is ParamKind.FIELD and not _is_field(value, spec.choices):
        sources = spec.choices or FIELD_SOURCES
        names = [f"{c}.<name>" if c == "props" else c for c in sources]
        allowed = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        return [f"{where}: {value!r} is not an event field; use {allowed}"]
    if spec.kind is ParamKind.DURATION:
        try:
            parse_duration_ms(value, field=spec.name)
        except (OpsMetricsError, ValueError):
            return [f"{where}: {value!r} is not a duration; use e.g. 30m, 1d or 4w"]
    if spec.kind is ParamKind.LIST and len(as_list(value)) < 2:
        return [f"{where}: list at least two names separated by commas"]
    return []


#: The sources a FIELD parameter may name unless its `choices` narrow them.
FIELD_SOURCES = ("value", "entity", "props")


def _is_field(value: str, choices: tuple[str, ...]) -> bool:
    allowed = choices or FIELD_SOURCES
    prop = value.startswith("props.") and len(value) > 6
    return value in allowed if not prop else "props" in allowed


# --- reading checked parameters -------------------------------------------------------------


def text(params: Params, name: str) -> str:
    return str(params[name]).strip()


def number(params: Params, name: str) -> float:
    value = params[name]
    assert isinstance(value, int | float)
    return float(value)


def duration_ms(params: Params, name: str) -> int:
    return parse_duration_ms(text(params, name), field=name)


def as_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def field(params: Params, name: str) -> EventField:
    value = text(params, name)
    if value.startswith("props."):
        return EventField(FieldSource.PROP, value.removeprefix("props."))
    return EventField(FieldSource(value))


# --- building formulas ----------------------------------------------------------------------


def events(
    name: str, agg: EventAgg = EventAgg.COUNT, of: EventField | None = None, *where: PropFilter
) -> EventFormula:
    """An event formula with the defaults kpi_build gives a file's `event:` mapping."""
    if of is None and agg is EventAgg.UNIQUE:
        of = EventField(FieldSource.ENTITY)
    elif of is None and agg is not EventAgg.COUNT:
        of = EventField(FieldSource.VALUE)
    return EventFormula(name, agg, of, tuple(where))


def eq(prop: str, value: Scalar) -> PropFilter:
    return PropFilter(prop, FilterOp.EQ, (value,))


def one_of(prop: str, values: tuple[Scalar, ...]) -> PropFilter:
    return PropFilter(prop, FilterOp.IN, values)


def running(of: Operand) -> CumulativeFormula:
    return CumulativeFormula(of, None)


def expr(source: str, **bindings: Operand) -> ExprFormula:
    """`source` over the names bound here (in sorted order, so equal inputs are equal)."""
    return ExprFormula(source, parse_expr(source), tuple(sorted(bindings.items())))


def scaled(formula: Formula, divisor: float) -> Formula:
    """`formula / divisor`, or the formula itself when the divisor is 1 (no arithmetic)."""
    if divisor == 1:
        return formula
    return expr(f"x / {divisor:g}", x=formula)


def promql(query: str) -> PromqlFormula:
    return PromqlFormula(query)


def selector(metric: str, matchers: str, *extra: str) -> str:
    """`metric{a="b",…}` from a matchers parameter ("" for none) and extra matchers."""
    inside = [m for m in (matchers.strip(), *extra) if m]
    return f"{metric}{{{','.join(inside)}}}" if inside else metric
