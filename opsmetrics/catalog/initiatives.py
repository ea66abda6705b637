"""Improvement initiatives: config/initiatives/*.yaml (one per file) or POST /api/v1/initiatives.

    name: checkout_campaign
    title: Autumn checkout campaign
    owner: growth-team
    kpis:
      - {kpi: checkout_conversion_rate, direction: up, expected: +8%}
    start: 2026-11-16            # a date (UTC midnight) or an RFC 3339 instant
    end: 2026-12-31              # optional
    segment: {country: DE}       # optional: the part of the KPI it acts on
    control: {kpi: other_kpi}    # optional: or {segment: {country: FR}}; none by default

See docs/initiatives.md; the impact is measured by analysis/impact_api.py.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from opsmetrics.catalog.yamlfile import error_message, line_of, parse_model, read_config_text
from opsmetrics.errors import BadDataError, ConfigError, NotFoundError
from opsmetrics.storage.initiative_records import InitiativeRecord

FOLDER = "initiatives"
_EFFECT = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*%$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InitiativeKpi(_Strict):
    kpi: str = Field(min_length=1)
    direction: Literal["up", "down"]
    expected: float | None = None  # a fraction: "+10%" is 0.10

    @field_validator("expected", mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        if isinstance(value, str):
            m = _EFFECT.match(value.strip())
            if m is None:
                raise ValueError(f"{value!r}: write the expected effect as a percentage, e.g. +10%")
            return float(m.group(1)) / 100
        return value


class Control(_Strict):
    """Another KPI, or a segment of the same KPI (dimension values)."""

    kpi: str | None = None
    segment: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one(self) -> Control:
        if (self.kpi is None) == (self.segment is None):
            raise ValueError("give exactly one of kpi: NAME or segment: {dimension: value}")
        return self


class Initiative(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=100)
    title: str = Field(min_length=1, max_length=200)
    owner: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    kpis: list[InitiativeKpi] = Field(min_length=1, max_length=20)
    start: datetime
    end: datetime | None = None
    segment: dict[str, str] | None = None
    control: Control | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _instant(cls, value: object) -> object:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time(), UTC)
        return value

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _order(self) -> Initiative:
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        names = [k.kpi for k in self.kpis]
        if len(set(names)) != len(names):
            raise ValueError("kpis: a KPI is listed twice")
        return self

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int | None:
        return None if self.end is None else int(self.end.timestamp() * 1000)

    def kpi_problems(self, known: set[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """(location, message) for every KPI named here that the catalog does not define."""
        found: list[tuple[tuple[str | int, ...], str]] = [
            (("kpis", i, "kpi"), k.kpi) for i, k in enumerate(self.kpis) if k.kpi not in known
        ]
        if self.control is not None and self.control.kpi and self.control.kpi not in known:
            found.append((("control", "kpi"), self.control.kpi))
        return [(loc, f"unknown KPI {name!r}; see `opsmetrics kpi list`") for loc, name in found]


def initiative_files(config_dir: Path | None) -> list[Path]:
    if config_dir is None or not (config_dir / FOLDER).is_dir():
        return []
    folder = config_dir / FOLDER
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def read_initiatives(
    config_dir: Path | None, known_kpis: set[str]
) -> tuple[dict[str, Initiative], list[str]]:
    """Every valid initiative by name, and the problems (`file:line: field: message`)."""
    found: dict[str, Initiative] = {}
    problems: list[str] = []
    for path in initiative_files(config_dir):
        try:
            got, lines = parse_model(read_config_text(path), str(path), Initiative)
        except ConfigError as exc:
            problems += exc.message.splitlines()
            continue
        bad = got.kpi_problems(known_kpis)
        problems += [f"{path}:{line_of(lines, loc)}: {_dotted(loc)}: {msg}" for loc, msg in bad]
        if got.name in found:
            problems.append(f"{path}:1: name: initiative {got.name!r} is defined twice")
        elif not bad:
            found[got.name] = got
    return found, problems


def load_initiatives(config_dir: Path | None, known_kpis: set[str]) -> dict[str, Initiative]:
    """Every initiative by name; ConfigError listing every problem."""
    found, problems = read_initiatives(config_dir, known_kpis)
    if problems:
        raise ConfigError("\n".join(problems))
    return found


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def all_initiatives(
    config_dir: Path | None, known_kpis: set[str], stored: list[InitiativeRecord]
) -> dict[str, Initiative]:
    """The files' initiatives (the valid ones) and the API-created ones, by name."""
    found = {r.name: Initiative.model_validate_json(r.definition) for r in stored}
    return found | read_initiatives(config_dir, known_kpis)[0]


def get_initiative(
    config_dir: Path | None, known_kpis: set[str], stored: list[InitiativeRecord], name: str
) -> Initiative:
    found = all_initiatives(config_dir, known_kpis, stored)
    if name not in found:
        known = ", ".join(sorted(found)) or "none defined"
        raise NotFoundError(f"initiative {name!r} is not defined ({known})")
    return found[name]


def new_initiative(raw: bytes, known_kpis: set[str], taken: set[str]) -> Initiative:
    """A POST body as an Initiative; BadDataError naming the field (nothing is stored)."""
    try:
        got = Initiative.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _dotted(tuple(err["loc"])) or "(body)"
        raise BadDataError(f"{where}: {error_message(err)}; see docs/initiatives.md") from None
    bad = got.kpi_problems(known_kpis)
    if bad:
        raise BadDataError(f"{_dotted(bad[0][0])}: {bad[0][1]}")
    if got.name in taken:
        raise BadDataError(f"name: initiative {got.name!r} exists already; choose another name")
    return got
