"""The pydantic models that decode one `dashboards/*.yaml|json` file (see docs/dashboards.md).

They check each value on its own (types, durations, PromQL, widget types); dashboards.py checks
what needs the catalog (KPI names) and the whole file (widget ids). Every widget has a `type`
that selects its model; the keys each type takes are in WIDGET_KEYS of docs/dashboards.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from opsmetrics.catalog.kpi_schema import DurationMs, KpiName, PromQL

Compare = Literal["previous_period", "previous_year", "none"]
Period = Literal["day", "week", "month"]
Width = Annotated[int, Field(ge=1, le=12)]


def _refresh(value: object) -> object:
    """`off`, a duration (`30s`, `5m`) or a number of seconds; None means off."""
    if value is None or value == "off" or value is False:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = f"{value}s"
    return value


Refresh = Annotated[DurationMs | None, BeforeValidator(_refresh)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Model):
    """Bands of a gauge or a query's status; higher_is_better when good > critical."""

    good: float | None = None
    warning: float | None = None
    critical: float | None = None


class QueryRef(_Model):
    expr: PromQL
    legend: str = ""
    title: str = ""
    unit: str = ""
    thresholds: Thresholds | None = None


class Axis(_Model):
    """One axis of a scatter: a KPI or a PromQL query."""

    kpi: KpiName | None = None
    query: PromQL | None = None
    title: str = ""
    unit: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> Axis:
        _exactly_one(kpi=self.kpi, query=self.query)
        return self


def _exactly_one(**sources: object) -> None:
    given = [name for name, value in sources.items() if value]
    if len(given) != 1:
        names = " or ".join(f"`{n}`" for n in sources)
        raise ValueError(f"give exactly one of {names}" + (f"; got {given}" if given else ""))


class _Widget(_Model):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] | None = None
    title: str | None = None
    description: str = ""
    width: Width | None = None
    #: The widget's own time range ending at the dashboard's end (the seed's `timeframe`).
    range: DurationMs | None = None


class MetricCard(_Widget):
    type: Literal["metric_card"]
    kpi: KpiName | None = None
    query: PromQL | None = None
    unit: str | None = None
    compare: Compare = "previous_period"

    @model_validator(mode="after")
    def _one_source(self) -> MetricCard:
        _exactly_one(kpi=self.kpi, query=self.query)
        return self


class TrendChart(_Widget):
    type: Literal["trend_chart"]
    kpis: list[KpiName] = []
    queries: list[QueryRef] = []
    unit: str | None = None
    compare: Compare = "none"
    annotations: bool = True
    forecast: bool = False
    #: Flag points of the first series that fall outside its seasonal baseline.
    anomalies: bool = False
    step: DurationMs | None = None

    @model_validator(mode="after")
    def _something(self) -> TrendChart:
        if not self.kpis and not self.queries:
            raise ValueError("give `kpis`, `queries` or both")
        return self


class Gauge(_Widget):
    type: Literal["gauge"]
    kpi: KpiName | None = None
    query: PromQL | None = None
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    thresholds: Thresholds | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Gauge:
        _exactly_one(kpi=self.kpi, query=self.query)
        return self


class StatusGrid(_Widget):
    type: Literal["status_grid"]
    kpis: list[KpiName] = []
    queries: list[QueryRef] = []

    @model_validator(mode="after")
    def _something(self) -> StatusGrid:
        if not self.kpis and not self.queries:
            raise ValueError("give `kpis`, `queries` or both")
        return self


class FunnelWidget(_Widget):
    type: Literal["funnel"]
    steps: Annotated[list[str], Field(min_length=2, max_length=20)] | None = None
    kpi: KpiName | None = None
    within: DurationMs = 86_400_000
    entity: str = "user"

    @model_validator(mode="after")
    def _one_source(self) -> FunnelWidget:
        _exactly_one(steps=self.steps, kpi=self.kpi)
        return self


class CohortWidget(_Widget):
    type: Literal["cohort"]
    start_event: str
    return_event: str | None = None
    period: Period = "week"
    periods: Annotated[int, Field(ge=1, le=52)] = 8


class TableWidget(_Widget):
    type: Literal["table"]
    kpis: list[KpiName] = []
    query: PromQL | None = None
    compare: Compare = "previous_period"

    @model_validator(mode="after")
    def _one_source(self) -> TableWidget:
        _exactly_one(kpis=self.kpis, query=self.query)
        return self


class BarWidget(_Widget):
    type: Literal["bar"]
    query: PromQL | None = None
    legend: str = ""
    kpi: KpiName | None = None
    by: str | None = None
    unit: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BarWidget:
        _exactly_one(query=self.query, kpi=self.kpi)
        if self.kpi and not self.by:
            raise ValueError("a bar chart of a KPI needs `by: <dimension>`")
        return self


class ScatterWidget(_Widget):
    type: Literal["scatter"]
    x: Axis
    y: Axis
    regression: bool = True
    #: One point per step for PromQL axes (default: one per period of the range's grain).
    step: DurationMs | None = None


class AlertListWidget(_Widget):
    type: Literal["alert_list"]
    match: dict[str, str] = {}
    limit: Annotated[int, Field(ge=1, le=500)] = 20


class TextWidget(_Widget):
    type: Literal["text"]
    markdown: str


class ExperimentWidget(_Widget):
    type: Literal["experiment"]
    experiment: str


WIDGET_MODELS: dict[str, type[_Widget]] = {
    "metric_card": MetricCard,
    "trend_chart": TrendChart,
    "gauge": Gauge,
    "status_grid": StatusGrid,
    "funnel": FunnelWidget,
    "cohort": CohortWidget,
    "table": TableWidget,
    "bar": BarWidget,
    "scatter": ScatterWidget,
    "alert_list": AlertListWidget,
    "text": TextWidget,
    "experiment": ExperimentWidget,
}
WIDGET_TYPES = tuple(WIDGET_MODELS)
DEFAULT_WIDTH = {"metric_card": 3, "gauge": 3, "text": 12}


def _widget_type(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) else None


Widget = Annotated[
    Annotated[MetricCard, Tag("metric_card")]
    | Annotated[TrendChart, Tag("trend_chart")]
    | Annotated[Gauge, Tag("gauge")]
    | Annotated[StatusGrid, Tag("status_grid")]
    | Annotated[FunnelWidget, Tag("funnel")]
    | Annotated[CohortWidget, Tag("cohort")]
    | Annotated[TableWidget, Tag("table")]
    | Annotated[BarWidget, Tag("bar")]
    | Annotated[ScatterWidget, Tag("scatter")]
    | Annotated[AlertListWidget, Tag("alert_list")]
    | Annotated[TextWidget, Tag("text")]
    | Annotated[ExperimentWidget, Tag("experiment")],
    Discriminator(_widget_type),
]


class Section(_Model):
    title: str = ""
    widgets: list[Widget]


class DashboardModel(_Model):
    title: str | None = None
    audience: str = ""
    description: str = ""
    refresh: Refresh = None
    time_range: DurationMs = 86_400_000
    sections: Annotated[list[Section], Field(min_length=1)]
