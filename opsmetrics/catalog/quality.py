"""config/quality.yaml: how the data-quality monitors judge each source (all optional).

    interval: 1m                   # how often the monitors run (on the alerting node)
    defaults:                      # for every source, unless the source says otherwise
      freshness_factor: 3          # expected gap = the source's p99 arrival gap × this
      min_freshness: 15m           # ... but never less than this
      volume_threshold: 5          # robust z past which an hour's volume is anomalous
      completeness_tolerance: 0.05 # a KPI-read property may be missing this much more often
    sources:                       # keyed by source id: event:<name>, metric:<name>,
      event:purchase:              #   scrape:<job>, sql:<name>
        freshness: 2h              # expected freshness, instead of the learned one
        disable: [volume]          # monitors to switch off for this source

The monitors are freshness, volume, completeness, schema_drift and duplicates.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BeforeValidator, Field, field_validator

from opsmetrics.catalog.config_fields import ConfigModel
from opsmetrics.catalog.yamlfile import parse_model, read_config_text
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import BadDataError

FILE = "quality.yaml"
T = TypeVar("T")
SOURCE_KINDS = ("event", "metric", "scrape", "sql")


class Monitor(enum.Enum):
    FRESHNESS = "freshness"
    VOLUME = "volume"
    COMPLETENESS = "completeness"
    SCHEMA_DRIFT = "schema_drift"
    DUPLICATES = "duplicates"


def _duration(value: object) -> int:
    try:
        ms = parse_duration_ms(str(value))
    except BadDataError as exc:
        raise ValueError(exc.message.removeprefix("duration: ")) from None
    if ms <= 0:
        raise ValueError("must be longer than 0")
    return ms


DurationMs = Annotated[int, BeforeValidator(_duration)]


class _Rules(ConfigModel):
    freshness_factor: float | None = Field(default=None, gt=0)
    min_freshness: DurationMs | None = None
    volume_threshold: float | None = Field(default=None, gt=0)
    completeness_tolerance: float | None = Field(default=None, ge=0, le=1)


class _SourceRules(_Rules):
    freshness: DurationMs | None = None
    disable: list[Monitor] = Field(default_factory=list)


class _QualityFile(ConfigModel):
    interval: DurationMs = 60_000
    defaults: _Rules = Field(default_factory=_Rules)
    sources: dict[str, _SourceRules] = Field(default_factory=dict)

    @field_validator("sources")
    @classmethod
    def _ids(cls, value: dict[str, _SourceRules]) -> dict[str, _SourceRules]:
        for key in value:
            kind, _, name = key.partition(":")
            if kind not in SOURCE_KINDS or not name:
                kinds = ", ".join(f"{k}:<name>" for k in SOURCE_KINDS)
                raise ValueError(f"{key!r} is not a source id; write one of {kinds}")
        return value


@dataclass(frozen=True, slots=True)
class SourceRules:
    """How one source is judged: the defaults with the source's own settings over them."""

    freshness_factor: float = 3.0
    min_freshness_ms: int = 15 * 60_000
    volume_threshold: float = 5.0
    completeness_tolerance: float = 0.05
    #: Set: the expected freshness, instead of the one learned from the source's cadence.
    freshness_ms: int | None = None
    disabled: frozenset[Monitor] = frozenset()


@dataclass(frozen=True, slots=True)
class QualityConfig:
    interval_ms: int = 60_000
    defaults: SourceRules = field(default_factory=SourceRules)
    sources: dict[str, SourceRules] = field(default_factory=dict)

    def rules_for(self, source_id: str) -> SourceRules:
        return self.sources.get(source_id, self.defaults)


def load_quality_config(config_dir: Path | None) -> QualityConfig:
    """config_dir/quality.yaml, or the defaults without one; ConfigError (file:line) if bad."""
    if config_dir is None or not (config_dir / FILE).exists():
        return QualityConfig()
    path = config_dir / FILE
    parsed, _ = parse_model(read_config_text(path), str(path), _QualityFile)
    defaults = _merged(SourceRules(), parsed.defaults)
    sources = {
        key: replace(
            _merged(defaults, rules),
            freshness_ms=rules.freshness,
            disabled=frozenset(rules.disable),
        )
        for key, rules in parsed.sources.items()
    }
    return QualityConfig(parsed.interval, defaults, sources)


def _merged(base: SourceRules, rules: _Rules) -> SourceRules:
    return SourceRules(
        freshness_factor=_first(rules.freshness_factor, base.freshness_factor),
        min_freshness_ms=_first(rules.min_freshness, base.min_freshness_ms),
        volume_threshold=_first(rules.volume_threshold, base.volume_threshold),
        completeness_tolerance=_first(rules.completeness_tolerance, base.completeness_tolerance),
    )


def _first(value: T | None, default: T) -> T:
    return default if value is None else value
