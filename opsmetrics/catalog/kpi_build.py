"""Turn validated KPI file models (kpi_schema.py) into the frozen records of kpi_model.py."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from opsmetrics.catalog.kpi_alerts import spec_from_kpi_alert
from opsmetrics.catalog.kpi_expr import parse_expr
from opsmetrics.catalog.kpi_model import (
    FORMULA_KEYS,
    ConversionFormula,
    CumulativeFormula,
    DisplayFormat,
    EventAgg,
    EventField,
    EventFormula,
    ExprFormula,
    FieldSource,
    FilterOp,
    Formula,
    KpiDefinition,
    KpiRef,
    LibraryFormula,
    ManualFormula,
    Operand,
    PromqlFormula,
    PropFilter,
    RatioFormula,
    Scalar,
    SourceRef,
    SqlFormula,
    StateFormula,
    Target,
    TargetStep,
    Thresholds,
)
from opsmetrics.catalog.kpi_schema import (
    ConversionModel,
    CumulativeModel,
    EventModel,
    FilterValue,
    InlineFormulaModel,
    KpiModel,
    StateModel,
    TargetValue,
)


def formula_keys_set(model: InlineFormulaModel) -> list[str]:
    """The formula keys a definition sets, in the documented order."""
    return [key for key in FORMULA_KEYS if getattr(model, key, None) is not None]


def build_kpi(model: KpiModel, source: SourceRef, raw: dict[str, Any]) -> KpiDefinition:
    """The record for a KPI whose model passed every check (exactly one formula)."""
    return KpiDefinition(
        name=model.name,
        title=model.title,
        formula=build_formula(model),
        source=source,
        definition_json=canonical_json({k: v for k, v in raw.items() if k != "alerts"}),
        description=model.description,
        owner=model.owner,
        level=model.level,
        indicator=model.indicator,
        unit=model.unit,
        display=DisplayFormat(model.currency, model.decimals),
        direction=model.direction,
        cadence=model.cadence,
        grain=model.grain,
        dimensions=tuple(model.dimensions),
        target=build_target(model.target),
        thresholds=Thresholds(model.thresholds.warning, model.thresholds.critical),
        tags=tuple(model.tags),
        alerts=tuple(spec_from_kpi_alert(a, model.name, str(source)) for a in model.alerts),
    )


def canonical_json(raw: dict[str, Any]) -> str:
    """Sorted keys, no whitespace, dates as ISO text: equal definitions give equal text."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def build_target(value: TargetValue | None) -> Target | None:
    if value is None:
        return None
    if isinstance(value, float | int):
        return Target((TargetStep(date.min, float(value)),))
    return Target(tuple(TargetStep(step.from_, step.value) for step in value))


def build_formula(model: InlineFormulaModel) -> Formula:
    if isinstance(model, KpiModel) and model.manual:
        return ManualFormula()
    if isinstance(model, KpiModel) and model.use is not None:
        return LibraryFormula(model.use, tuple(sorted(model.params.items())))
    return _build_inline(model)


def _build_inline(model: InlineFormulaModel) -> Formula:
    if model.promql is not None:
        return PromqlFormula(model.promql)
    if model.event is not None:
        return _event(model.event)
    if model.ratio is not None:
        return RatioFormula(_operand(model.ratio.numerator), _operand(model.ratio.denominator))
    if model.expr is not None:
        return ExprFormula(model.expr, parse_expr(model.expr))
    if model.cumulative is not None:
        return _cumulative(model.cumulative)
    if model.conversion is not None:
        return _conversion(model.conversion)
    if model.state is not None:
        return _state(model.state)
    if model.sql is not None:
        return SqlFormula(model.sql)
    raise ValueError("no formula")  # kpi_checks reports this before anything is built


def _operand(value: str | InlineFormulaModel) -> Operand:
    return KpiRef(value) if isinstance(value, str) else _build_inline(value)


def _event(model: EventModel) -> EventFormula:
    field = event_field(model.field) if model.field is not None else None
    if field is None and model.agg is EventAgg.UNIQUE:
        field = EventField(FieldSource.ENTITY)
    elif field is None and model.agg is not EventAgg.COUNT:
        field = EventField(FieldSource.VALUE)
    where = tuple(f for prop, cond in model.where.items() for f in prop_filters(prop, cond))
    return EventFormula(model.name, model.agg, field, where)


def event_field(text: str) -> EventField:
    if text.startswith("props."):
        return EventField(FieldSource.PROP, text.removeprefix("props."))
    return EventField(FieldSource(text))


def prop_filters(prop: str, cond: FilterValue) -> list[PropFilter]:
    """`plan: pro` → eq; `plan: [a, b]` → in; `amount: {gte: 10, lt: 99}` → one per operator."""
    if isinstance(cond, list):
        return [PropFilter(prop, FilterOp.IN, tuple(cond))]
    if not isinstance(cond, dict):
        return [PropFilter(prop, FilterOp.EQ, (cond,))]
    return [PropFilter(prop, FilterOp(op), _values(v)) for op, v in cond.items()]


def _values(value: Scalar | list[Scalar] | None) -> tuple[Scalar, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def _cumulative(model: CumulativeModel) -> CumulativeFormula:
    return CumulativeFormula(_operand(model.of), model.window)


def _conversion(model: ConversionModel) -> ConversionFormula:
    prop = model.entity.removeprefix("props.") if model.entity.startswith("props.") else None
    return ConversionFormula(model.from_, model.to, model.within, model.entity, prop)


def _state(model: StateModel) -> StateFormula:
    return StateFormula(model.event, event_field(model.field), event_field(model.by), model.agg)
