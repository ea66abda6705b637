"""Experiment definitions: config/experiments/*.yaml, one experiment per file.

    name: checkout_redesign
    title: Checkout redesign
    hypothesis: A one-page checkout lifts purchase conversion
    variants: [{name: control, weight: 0.5}, {name: treatment, weight: 0.5}]  # or [control, …]
    exposure: {event: experiment_exposure, variant_prop: variant}  # where: {experiment: <name>}
    entity: user
    start: 2026-10-01T00:00:00Z     # optional; end too
    primary: {name: purchase_conversion, kind: proportion, event: purchase, within: 1d}
    guardrails:
      - {name: revenue_per_user, kind: mean, event: purchase, within: 1d}
      - name: order_value
        kind: ratio
        numerator: {event: purchase, agg: sum}
        denominator: {event: purchase, agg: count}
    mde: 0.01       # absolute, in the primary metric's unit
    alpha: 0.05
    power: 0.8
    sequential: true
    cuped: {pre_period: 14d}

The first variant is the control. See docs/experiments.md.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opsmetrics.catalog.yamlfile import parse_model, read_config_text
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import BadDataError, ConfigError, NotFoundError

FOLDER = "experiments"
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: str) -> str:
    try:
        if parse_duration_ms(str(value)) <= 0:
            raise ValueError("must be longer than 0")
    except BadDataError as exc:
        raise ValueError(exc.message.removeprefix("duration: ")) from None
    return str(value)


class Variant(_Strict):
    name: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)


class Exposure(_Strict):
    event: str = "experiment_exposure"
    variant_prop: str = "variant"
    where: dict[str, Scalar] | None = None  # default {experiment: <name>}


class Part(_Strict):
    """A ratio's numerator or denominator: per unit, the count or the value sum of an event."""

    event: str
    where: dict[str, Scalar] = Field(default_factory=dict)
    agg: Literal["count", "sum"] = "count"
    value: str | None = None  # property holding the number (default: the event's value)


class Metric(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["proportion", "mean", "ratio"]
    event: str | None = None
    where: dict[str, Scalar] = Field(default_factory=dict)
    agg: Literal["sum", "count"] = "sum"  # mean: per-unit value sum or event count
    value: str | None = None
    numerator: Part | None = None
    denominator: Part | None = None
    within: str = "7d"
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"

    @field_validator("within")
    @classmethod
    def _within(cls, value: str) -> str:
        return _duration(value)

    @model_validator(mode="after")
    def _parts(self) -> Metric:
        if self.kind == "ratio":
            if self.numerator is None or self.denominator is None:
                raise ValueError("a ratio metric needs numerator and denominator")
        elif self.event is None:
            raise ValueError(f"a {self.kind} metric needs event")
        return self

    @property
    def within_ms(self) -> int:
        return parse_duration_ms(self.within)


class CupedSpec(_Strict):
    pre_period: str = "14d"

    @field_validator("pre_period")
    @classmethod
    def _pre(cls, value: str) -> str:
        return _duration(value)

    @property
    def pre_period_ms(self) -> int:
        return parse_duration_ms(self.pre_period)


class Experiment(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    title: str = ""
    hypothesis: str = ""
    owner: str = ""
    variants: list[Variant] = Field(min_length=2)
    exposure: Exposure = Field(default_factory=Exposure)
    entity: str = "user"
    start: datetime | None = None
    end: datetime | None = None
    primary: Metric
    guardrails: list[Metric] = Field(default_factory=list)
    mde: float | None = None
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    sequential: bool = False
    sequential_tuning_n: int = Field(default=5000, gt=0)
    cuped: CupedSpec | None = None

    @field_validator("variants", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _checks(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def control(self) -> str:
        return self.variants[0].name

    @property
    def split(self) -> list[float]:
        total = sum(v.weight for v in self.variants)
        return [v.weight / total for v in self.variants]

    def exposure_where(self) -> dict[str, Scalar]:
        if self.exposure.where is not None:
            return dict(self.exposure.where)
        return {"experiment": self.name}


def experiment_files(config_dir: Path | None) -> list[Path]:
    if config_dir is None or not (config_dir / FOLDER).is_dir():
        return []
    folder = config_dir / FOLDER
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_experiments(config_dir: Path | None) -> dict[str, Experiment]:
    """Every experiment by name; ConfigError listing every problem (file:line: field: …)."""
    found: dict[str, Experiment] = {}
    problems: list[str] = []
    for path in experiment_files(config_dir):
        try:
            exp, _ = parse_model(read_config_text(path), str(path), Experiment)
        except ConfigError as exc:
            problems.append(exc.message)
            continue
        if exp.name in found:
            problems.append(f"{path}:1: name: experiment {exp.name!r} is defined twice")
        found[exp.name] = exp
    if problems:
        raise ConfigError("\n".join(problems))
    return found


def experiment_problems(config_dir: Path) -> list[str]:
    """For `opsmetrics validate`: one line per problem."""
    try:
        load_experiments(config_dir)
    except ConfigError as exc:
        return exc.message.splitlines()
    return []


def get_experiment(config_dir: Path | None, name: str) -> Experiment:
    experiments = load_experiments(config_dir)
    if name not in experiments:
        known = ", ".join(sorted(experiments)) or "none defined"
        raise NotFoundError(f"experiment {name!r} is not defined in experiments/*.yaml ({known})")
    return experiments[name]
