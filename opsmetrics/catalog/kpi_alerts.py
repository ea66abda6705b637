"""KPI alert rules as written: on a KPI (`alerts:` in kpis/*.yaml) or in a rule file whose top
level is `alerts:` (the name → {metric, condition, timeframe, severity, channels} form).

Both decode to `KpiAlertSpec`, the frozen record the evaluator (alerting/kpi_rules.py) runs;
see docs/kpi-alerts.md. Problems are reported as `file:line: field: message`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from opsmetrics.catalog.config_fields import ConfigModel, LabelMap, PromQL
from opsmetrics.catalog.timewindows import TimeInterval, parse_time_interval
from opsmetrics.catalog.yamlfile import read_yaml
from opsmetrics.durations import config_duration_ms
from opsmetrics.errors import ConfigError

DEFAULT_INTERVAL_MS = 60_000
FORECAST_INTERVAL_MS = 3_600_000
DEFAULT_CLEAR_MARGIN = 0.05
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SEED_CONDITION = re.compile(
    r"\s*(value|percentage_change|change)\s*(<=|>=|<|>)\s*([-+]?\d+(?:\.\d+)?)\s*(%?)\s*"
)


class Condition(enum.Enum):
    THRESHOLD = "threshold"  # past the KPI's thresholds, or past `above`/`below`
    CHANGE = "change"  # relative change vs a baseline past `above`/`below`
    NO_DATA = "no_data"  # no new input for `for`
    FORECAST = "forecast"  # the forecast crosses the thresholds within `horizon`
    ANOMALY = "anomaly"  # the last complete period is far outside its seasonal baseline


class AnomalyDirection(enum.Enum):
    BOTH = "both"  # unusually high or low
    LOW = "low"  # unusually low only
    HIGH = "high"  # unusually high only


_CONDITIONS = [c.value for c in Condition]


class Baseline(enum.Enum):
    PREVIOUS_PERIOD = "previous_period"  # the window just before
    SAME_HOUR_LAST_WEEK = "same_hour_last_week"  # the same window 7 days earlier
    SAME_HOUR_WEEKS = "same_hour_weeks"  # the mean of the same window over the last N weeks


def _duration(value: object) -> int:
    return config_duration_ms(value, "5m, 1h or 1d")


def _number(value: object) -> object:
    """`-20%` → -0.2; numbers as they are."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage such as -20%") from None
    return value


def _alert_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid alert name; use letters, digits and _")
    return name


DurationMs = Annotated[int, BeforeValidator(_duration)]
Number = Annotated[float, BeforeValidator(_number)]
Windows = list[dict[str, Any]]


class VolumeModel(ConfigModel):
    """Evaluate only when `event` happened more than `count` times in the window, or the
    PromQL `promql` is above `value` at evaluation time."""

    event: str | None = None
    count: int = Field(default=0, ge=0)
    promql: PromQL | None = None
    value: float = 0.0

    @model_validator(mode="after")
    def _one_source(self) -> VolumeModel:
        if (self.event is None) == (self.promql is None):
            raise ValueError("set one of `event` (with `count`) or `promql` (with `value`)")
        return self


class _Common(ConfigModel):
    for_: DurationMs = Field(default=0, alias="for")
    interval: DurationMs | None = None
    window: DurationMs | None = None
    severity: str | None = None
    min_volume: VolumeModel | None = None
    clear_margin: Number = DEFAULT_CLEAR_MARGIN
    clear_for: DurationMs | None = None
    active_time_intervals: Windows = Field(default_factory=list)
    mute_time_intervals: Windows = Field(default_factory=list)
    labels: LabelMap = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    channels: list[str] = Field(default_factory=list)

    @field_validator("active_time_intervals", "mute_time_intervals")
    @classmethod
    def _windows(cls, value: Windows) -> Windows:
        parse_time_interval(value)
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: int | None) -> int | None:
        if value is not None and value < 1000:
            raise ValueError("must be at least 1s")
        return value


class _Rule(_Common):
    compare: Baseline = Baseline.PREVIOUS_PERIOD
    weeks: int = Field(default=4, ge=1, le=52)
    above: Number | None = None
    below: Number | None = None
    severity_from_thresholds: bool | None = None
    horizon: DurationMs | None = None
    history: DurationMs | None = None
    threshold: Number | None = Field(default=None, gt=0)  # anomaly: the score
    direction: AnomalyDirection | None = None  # anomaly: None → by the KPI's direction


class KpiAlertModel(_Rule):
    """One item of a KPI's `alerts:` list."""

    name: str
    condition: Condition

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _alert_name(value)


class SeedAlertModel(_Rule):
    """One entry of a rule file's `alerts:` mapping (the alert's name is its key)."""

    metric: str = Field(min_length=1)
    condition: str
    timeframe: DurationMs | None = None

    @field_validator("condition")
    @classmethod
    def _seed_condition(cls, value: str) -> str:
        if value not in _CONDITIONS and not _SEED_CONDITION.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a condition; write `value > 5`, `value < 2%`, "
                "`percentage_change < -10` or one of threshold, change, no_data, forecast, "
                "anomaly"
            )
        return value


class AlertFileModel(ConfigModel):
    alerts: dict[str, SeedAlertModel]

    @field_validator("alerts")
    @classmethod
    def _names(cls, value: dict[str, SeedAlertModel]) -> dict[str, SeedAlertModel]:
        for name in value:
            _alert_name(name)
        return value


@dataclass(frozen=True, slots=True)
class VolumeGate:
    event: str | None
    count: int
    promql: str | None
    value: float


@dataclass(frozen=True, slots=True)
class KpiAlertSpec:
    """One KPI alert rule as evaluated. `kpi` names a catalog KPI; `promql` is set instead
    when a rule file's `metric` is not a KPI (then the PromQL expression is the value)."""

    name: str
    condition: Condition
    source: str  # file:line
    kpi: str | None = None
    promql: str | None = None
    op: Literal["<", ">", None] = None  # explicit limit: breach when value op limit
    limit: float | None = None
    compare: Baseline = Baseline.PREVIOUS_PERIOD
    weeks: int = 4
    window_ms: int | None = None  # None: the KPI's grain
    horizon_ms: int | None = None  # forecast: how far ahead
    history_ms: int | None = None  # forecast/anomaly: how much history (None: by grain)
    score_threshold: float | None = None  # anomaly: |score| to flag (None: the detector's)
    direction: AnomalyDirection | None = None  # anomaly: None → by the KPI's direction
    for_ms: int = 0
    interval_ms: int = DEFAULT_INTERVAL_MS
    severity: str | None = None  # None: from the KPI's thresholds (threshold) or "warning"
    volume: VolumeGate | None = None
    clear_margin: float = DEFAULT_CLEAR_MARGIN
    clear_for_ms: int | None = None
    active: TimeInterval | None = None
    mute: TimeInterval | None = None
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    channels: tuple[str, ...] = field(default=())

    @property
    def rule_id(self) -> str:
        return f"kpi:{self.kpi or self.promql}:{self.name}"


def spec_from_kpi_alert(model: KpiAlertModel, kpi: str, source: str) -> KpiAlertSpec:
    return _spec(model, model.name, model.condition, kpi, None, source, model.window)


def _spec(
    model: _Rule,
    name: str,
    condition: Condition,
    kpi: str | None,
    promql: str | None,
    source: str,
    window: int | None,
) -> KpiAlertSpec:
    op, limit = _explicit_limit(model.above, model.below)
    severity = model.severity
    by_lines = condition in (Condition.THRESHOLD, Condition.FORECAST)
    if model.severity_from_thresholds and by_lines:
        severity = None
    elif severity is None and (not by_lines or op is not None):
        severity = "warning"
    return KpiAlertSpec(
        name=name,
        condition=condition,
        source=source,
        kpi=kpi,
        promql=promql,
        op=op,
        limit=limit,
        compare=model.compare,
        weeks=model.weeks,
        severity=severity,
        horizon_ms=model.horizon,
        history_ms=model.history,
        score_threshold=model.threshold,
        direction=model.direction,
        **_common(model, window),
        interval_ms=model.interval or _default_interval(condition),
    )


def _default_interval(condition: Condition) -> int:
    """Forecasts refit a model and anomalies judge complete periods (an hour at the finest
    grain): once an hour unless `interval` says otherwise."""
    hourly = condition in (Condition.FORECAST, Condition.ANOMALY)
    return FORECAST_INTERVAL_MS if hourly else DEFAULT_INTERVAL_MS


def _explicit_limit(
    above: float | None, below: float | None
) -> tuple[Literal["<", ">", None], float | None]:
    if above is not None:
        return ">", above
    if below is not None:
        return "<", below
    return None, None


def _common(model: _Common, window: int | None) -> dict[str, Any]:
    volume = model.min_volume
    return {
        "window_ms": window,
        "for_ms": model.for_,
        "volume": None
        if volume is None
        else VolumeGate(volume.event, volume.count, volume.promql, volume.value),
        "clear_margin": model.clear_margin,
        "clear_for_ms": model.clear_for,
        "active": _interval(model.active_time_intervals),
        "mute": _interval(model.mute_time_intervals),
        "labels": tuple(sorted(model.labels.items())),
        "annotations": tuple(sorted(model.annotations.items())),
        "channels": tuple(model.channels),
    }


def _interval(windows: Windows) -> TimeInterval | None:
    return parse_time_interval(windows) if windows else None


def spec_from_seed(name: str, model: SeedAlertModel, source: str, kpis: set[str]) -> KpiAlertSpec:
    """`metric` names a KPI when the catalog has it; otherwise it is a PromQL expression."""
    is_kpi = model.metric in kpis
    kpi, promql = (model.metric, None) if is_kpi else (None, model.metric)
    window = model.timeframe or model.window
    if model.condition in _CONDITIONS:
        return _spec(model, name, Condition(model.condition), kpi, promql, source, window)
    match = _SEED_CONDITION.fullmatch(model.condition)
    assert match is not None  # checked by the model
    what, op, number, percent = match.groups()
    limit = float(number) / 100 if percent or what != "value" else float(number)
    return KpiAlertSpec(
        name=name,
        condition=Condition.THRESHOLD if what == "value" else Condition.CHANGE,
        source=source,
        kpi=kpi,
        promql=promql,
        op="<" if op.startswith("<") else ">",
        limit=limit,
        severity=model.severity or "warning",
        score_threshold=model.threshold,  # checked: anomaly options only
        direction=model.direction,
        **_common(model, window),
        interval_ms=model.interval or DEFAULT_INTERVAL_MS,
    )


# --- rule files with `alerts:` ------------------------------------------------------------


def is_alert_file(text: str) -> bool:
    """A rule file whose top level is `alerts:` (not Prometheus `groups:`)."""
    try:
        data, _ = read_yaml(text, "")
    except ConfigError:
        return False
    return isinstance(data, dict) and "alerts" in data and "groups" not in data
