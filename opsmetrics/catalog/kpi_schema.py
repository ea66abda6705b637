"""The pydantic models that decode one KPI of a `kpis/*.yaml` file (see docs/kpis.md).

They check each value in isolation (types, enums, durations, PromQL, SQL, `where` filters,
expressions); kpi_checks.py checks what needs the whole definition or the whole catalog.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)

from opsmetrics.catalog.kpi_alerts import KpiAlertModel
from opsmetrics.catalog.kpi_expr import ExprError, parse_expr
from opsmetrics.catalog.kpi_model import (
    Cadence,
    Direction,
    EventAgg,
    FilterOp,
    Grain,
    Indicator,
    Level,
    StateAgg,
    Unit,
)
from opsmetrics.catalog.kpi_sql import SqlRefusedError, check_read_only
from opsmetrics.catalog.promql_text import parse_promql
from opsmetrics.durations import config_duration_ms

NAME_PATTERN = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FIELD = re.compile(r"value|entity|props\.[^\s.][^\s]*")
_CURRENCY = re.compile(r"[A-Z]{3}")
#: Union members' tags, which pydantic puts in error locations; they are not YAML keys.
UNION_TAGS = frozenset({"kpi-name", "inline-formula", "constant", "steps"})


def _kpi_name(value: object) -> object:
    if isinstance(value, str) and not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid KPI name; use letters, digits and _ "
            "(not starting with a digit), e.g. checkout_conversion_rate"
        )
    return value


def _dimension(value: object) -> object:
    if isinstance(value, str) and not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid dimension; name an event property or label")
    return value


def _duration(value: object) -> int:
    ms = config_duration_ms(value, "30m, 1d or 4w")
    if ms <= 0:
        raise ValueError("must be longer than 0")
    return ms


def _promql(value: object) -> object:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a PromQL expression")
    try:
        parse_promql(value)
    except ValueError as exc:
        raise ValueError(f"invalid PromQL: {exc}") from None
    return value


def _expr(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an expression over KPI names, e.g. 'ltv / cac'")
    try:
        parse_expr(value)
    except ExprError as exc:
        raise ValueError(str(exc)) from None
    return value


def _sql(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be a SELECT statement")
    try:
        check_read_only(value)
    except SqlRefusedError as exc:
        raise ValueError(str(exc)) from None
    return value


def _event_field(value: object) -> object:
    if isinstance(value, str) and not _FIELD.fullmatch(value):
        raise ValueError(f"{value!r} is not an event field; use value, entity or props.<name>")
    return value


KpiName = Annotated[str, BeforeValidator(_kpi_name)]
Dimension = Annotated[str, BeforeValidator(_dimension)]
DurationMs = Annotated[int, BeforeValidator(_duration)]
PromQL = Annotated[str, BeforeValidator(_promql)]
EventFieldText = Annotated[str, BeforeValidator(_event_field)]
Scalar = str | int | float | bool
FilterValue = Scalar | list[Scalar] | dict[str, Scalar | list[Scalar] | None]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventModel(_Model):
    name: str = Field(min_length=1)
    agg: EventAgg = EventAgg.COUNT
    field: EventFieldText | None = None
    where: dict[str, FilterValue] = Field(default_factory=dict)

    @field_validator("where")
    @classmethod
    def _where(cls, value: dict[str, FilterValue]) -> dict[str, FilterValue]:
        for prop, cond in value.items():
            if isinstance(cond, dict):
                _check_ops(prop, cond)
        return value


def _check_ops(prop: str, cond: dict[str, Any]) -> None:
    allowed = [op.value for op in FilterOp]
    for op, operand in cond.items():
        if op not in allowed:
            raise ValueError(f"{prop}: unknown operator {op!r}; use one of {', '.join(allowed)}")
        is_list = isinstance(operand, list)
        if (op in ("in", "not_in")) != is_list:
            raise ValueError(f"{prop}: {op} takes {'a list' if not is_list else 'one value'}")
        if op == "exists" and not isinstance(operand, bool):
            raise ValueError(f"{prop}: exists takes true or false")


def _operand_tag(value: object) -> str | None:
    if isinstance(value, str):
        return "kpi-name"
    return "inline-formula" if isinstance(value, dict) else None


class InlineFormulaModel(_Model):
    """A formula written in place of a KPI name (ratio numerator/denominator, cumulative of)."""

    promql: PromQL | None = None
    event: EventModel | None = None
    ratio: RatioModel | None = None
    expr: Annotated[str, BeforeValidator(_expr)] | None = None
    cumulative: CumulativeModel | None = None
    conversion: ConversionModel | None = None
    state: StateModel | None = None
    sql: Annotated[str, BeforeValidator(_sql)] | None = None


Operand = Annotated[
    Annotated[KpiName, Tag("kpi-name")] | Annotated[InlineFormulaModel, Tag("inline-formula")],
    Discriminator(
        _operand_tag,
        custom_error_type="operand",
        custom_error_message="expected a KPI name or a formula such as {event: {name: signup}}",
    ),
]


class RatioModel(_Model):
    numerator: Operand
    denominator: Operand


class CumulativeModel(_Model):
    of: Operand
    window: DurationMs | None = None
    running: bool | None = None


class ConversionModel(_Model):
    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    within: DurationMs
    entity: str = "entity"


class StateModel(_Model):
    event: str = Field(min_length=1)
    field: EventFieldText = "value"
    by: EventFieldText = "entity"
    agg: StateAgg = StateAgg.SUM


class TargetStepModel(_Model):
    from_: date = Field(alias="from")
    value: float


def _target_tag(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "constant"
    return "steps" if isinstance(value, list) else None


TargetValue = Annotated[
    Annotated[float, Tag("constant")] | Annotated[list[TargetStepModel], Tag("steps")],
    Discriminator(
        _target_tag,
        custom_error_type="target",
        custom_error_message="expected a number or a list of {from: YYYY-MM-DD, value: …}",
    ),
]


class ThresholdsModel(_Model):
    warning: float | None = None
    critical: float | None = None


class KpiModel(InlineFormulaModel):
    """One KPI as written in a `kpis/*.yaml` file."""

    name: KpiName
    title: str = Field(min_length=1)
    description: str = ""
    owner: str = Field(min_length=1)
    level: Level = Level.OPERATIONAL
    indicator: Indicator = Indicator.LAGGING
    unit: Unit
    currency: str | None = None
    decimals: int | None = Field(default=None, ge=0, le=10)
    direction: Direction
    cadence: Cadence = Cadence.WEEKLY
    grain: Grain = Grain.DAY
    dimensions: list[Dimension] = Field(default_factory=list)
    target: TargetValue | None = None
    thresholds: ThresholdsModel = Field(default_factory=ThresholdsModel)
    tags: list[str] = Field(default_factory=list)
    manual: Literal[True] | None = None
    use: str | None = None
    params: dict[str, Scalar] = Field(default_factory=dict)
    alerts: list[KpiAlertModel] = Field(default_factory=list)  # docs/kpi-alerts.md

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is not None and not _CURRENCY.fullmatch(value):
            raise ValueError(f"{value!r} is not an ISO 4217 currency code such as EUR or USD")
        return value


InlineFormulaModel.model_rebuild()
RatioModel.model_rebuild()
CumulativeModel.model_rebuild()
KpiModel.model_rebuild()
