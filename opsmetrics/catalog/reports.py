"""Reports as code: config/reports/*.yaml, what to send to whom and when (docs/reports.md).

    reports:
      - name: executive-daily
        title: Executive summary
        audience: executive          # executive | operations | engineering | owner | hygiene
        schedule: "0 8 * * *"        # cron, at local wall-clock time in `timezone`
        timezone: Europe/Berlin
        window: day                  # 1h, 7d… or day | week | month | month-to-date
        compare: previous_period     # previous_period | previous_year | none
        sources: {dashboards: [executive], kpis: [revenue], tags: [], levels: [], owners: []}
        formats: [html, pdf]         # any of html, pdf, csv
        deliver:
          - {channel: email, to: [board@shop.example]}   # a channel of notify.yaml
          - {channel: slack}
        catch_up: {policy: latest, max_age: 1d}          # latest | all | none
        enabled: true

`load_reports(config_dir, catalog, dashboards, notify)` returns the `ReportSet` or raises
ConfigError listing every problem as `file:line: field: message`; `read_reports` lists them for
`opsmetrics validate`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from opsmetrics.catalog.config_fields import ConfigModel
from opsmetrics.catalog.dashboards import DashboardSet
from opsmetrics.catalog.kpi_checks import did_you_mean
from opsmetrics.catalog.kpi_lineage import Dependent
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.catalog.notify import NotifyConfig
from opsmetrics.catalog.report_times import (
    CALENDAR_WINDOWS,
    compare_bounds,
    cron_slots,
    window_bounds,
)
from opsmetrics.catalog.yamlfile import LinePath, parse_model, problem, read_config_text
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import BadDataError, ConfigError, NotFoundError

FOLDER = "reports"
Audience = Literal["executive", "operations", "engineering", "owner", "hygiene"]
Compare = Literal["previous_period", "previous_year", "none"]
Format = Literal["html", "pdf", "csv"]
CatchUpPolicy = Literal["latest", "all", "none"]
LevelName = Literal["strategic", "tactical", "operational"]
#: The notify.yaml channel types a report can be delivered through.
DELIVERY_TYPES = ("email", "slack", "webhook")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_ADDRESS = re.compile(r"[^@\s<>,]+@[^@\s<>,]+\.[^@\s<>,]+")


def _positive_duration(value: str, what: str) -> str:
    try:
        if parse_duration_ms(str(value)) <= 0:
            raise ValueError(f"{what} must be longer than 0")
    except BadDataError as exc:
        raise ValueError(exc.message.removeprefix("duration: ")) from None
    return str(value)


class SourcesModel(ConfigModel):
    dashboards: list[str] = []
    kpis: list[str] = []
    tags: list[str] = []
    levels: list[LevelName] = []
    owners: list[str] = []


class DeliveryModel(ConfigModel):
    channel: str = Field(min_length=1)
    to: list[str] = []

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for i, address in enumerate(value):
            if not _ADDRESS.fullmatch(address):
                raise ValueError(f"[{i}]: {address!r} is not an email address (name@example.com)")
        return value


class CatchUpModel(ConfigModel):
    policy: CatchUpPolicy = "latest"
    max_age: str = "1d"

    _age = field_validator("max_age")(classmethod(lambda cls, v: _positive_duration(v, "max_age")))


class ReportModel(ConfigModel):
    name: str
    title: str = ""
    description: str = ""
    audience: Audience
    schedule: str
    timezone: str = "UTC"
    window: str = "1d"
    compare: Compare = "previous_period"
    sources: SourcesModel = SourcesModel()
    formats: list[Format] = ["html", "pdf"]
    deliver: list[DeliveryModel] = []
    catch_up: CatchUpModel = CatchUpModel()
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"{value!r}: use lower-case letters, digits, '-' or '_' (e.g. executive-daily)"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5 and not value.startswith("@"):
            raise ValueError(f"{value!r}: give five cron fields, minute hour day month weekday")
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 8 * * 1-5')")
        try:
            fires = bool(cron_slots(value, ZoneInfo("UTC"), 0, 1))
        except ValueError:  # croniter's CroniterBadDateError: no date matches
            fires = False
        if not fires:
            raise ValueError(f"{value!r} never fires; check the day and month fields")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin"
            ) from None
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value in CALENDAR_WINDOWS:
            return value
        try:
            return _positive_duration(value, "window")
        except ValueError as exc:
            words = ", ".join(CALENDAR_WINDOWS)
            raise ValueError(f"{exc}; or one of {words}") from None

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one of html, pdf, csv")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _unique_channels(self) -> ReportModel:
        names = [d.channel for d in self.deliver]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"deliver[{i}]: channel {name!r} is listed twice; merge its `to`")
        return self


class ReportFile(ConfigModel):
    reports: list[ReportModel] = []


@dataclass(frozen=True, slots=True)
class ReportSources:
    """What a report covers. All empty: the audience's default selection (docs/reports.md)."""

    dashboards: tuple[str, ...] = ()
    kpis: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.dashboards or self.kpis or self.tags or self.levels or self.owners)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One channel of notify.yaml; `to` overrides an email channel's recipients."""

    channel: str
    to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CatchUp:
    policy: str  # latest | all | none
    max_age_ms: int


@dataclass(frozen=True, slots=True)
class ReportSpec:
    name: str
    title: str
    audience: str
    schedule: str
    timezone: str
    window: str
    compare: str
    sources: ReportSources
    formats: frozenset[str]
    deliver: tuple[Delivery, ...]
    catch_up: CatchUp
    enabled: bool = True
    description: str = ""
    source: str = ""  # file:line, for messages

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def with_formats(self, formats: frozenset[str]) -> ReportSpec:
        """The same report rendered in other formats (a preview of one format)."""
        return dataclasses.replace(self, formats=formats)


def next_slots(spec: ReportSpec, after_ms: int, n: int) -> list[int]:
    """The next `n` scheduled slots (UTC ms) strictly after `after_ms`."""
    return cron_slots(spec.schedule, spec.tz, after_ms, n)


def report_window(spec: ReportSpec, slot_ms: int) -> tuple[int, int]:
    """[start, end) UTC ms of the period the report at `slot_ms` covers."""
    return window_bounds(spec.window, spec.tz, slot_ms)


def comparison_window(spec: ReportSpec, slot_ms: int) -> tuple[int, int] | None:
    """[start, end) UTC ms of the period it is compared with; None for `compare: none`."""
    return compare_bounds(spec.window, spec.compare, spec.tz, slot_ms)


@dataclass(frozen=True, slots=True)
class ReportSet:
    reports: Mapping[str, ReportSpec]

    def __iter__(self) -> Iterator[ReportSpec]:
        return iter(self.reports.values())

    def __len__(self) -> int:
        return len(self.reports)

    def get(self, name: str) -> ReportSpec:
        try:
            return self.reports[name]
        except KeyError:
            hint = did_you_mean(name, self.reports) or "; see `opsmetrics reports list`"
            raise NotFoundError(f"no report named {name!r}{hint}") from None

    def dependents_of(self, kpi: str) -> list[Dependent]:
        """The reports that name the KPI in `sources.kpis` (a KPI lineage source)."""
        return [Dependent("report", r.name, r.source) for r in self if kpi in r.sources.kpis]


@dataclass(frozen=True, slots=True)
class References:
    """What report sources and deliveries may name; None skips that check."""

    catalog: Catalog | None = None
    dashboards: DashboardSet | None = None
    notify: NotifyConfig | None = None


def report_files(config_dir: Path | None) -> list[Path]:
    if config_dir is None or not (config_dir / FOLDER).is_dir():
        return []
    return sorted((config_dir / FOLDER).glob("*.yaml"))


def load_reports(config_dir: Path | None, refs: References) -> ReportSet:
    """Every report of config_dir/reports/, or ConfigError listing every problem."""
    reports, problems = read_reports(config_dir, refs)
    if problems:
        raise ConfigError("\n".join(problems))
    return reports


def read_reports(config_dir: Path | None, refs: References) -> tuple[ReportSet, list[str]]:
    """The valid reports and every problem (`file:line: field: message`)."""
    out: dict[str, ReportSpec] = {}
    problems: list[str] = []
    for path in report_files(config_dir):
        try:
            found = parse_reports(read_config_text(path), str(path), refs)
        except ConfigError as exc:
            problems += exc.message.splitlines()
            continue
        for spec in found:
            if spec.name in out:
                first = out[spec.name].source
                problems.append(f"{spec.source}: name: report {spec.name!r} is defined at {first}")
            out.setdefault(spec.name, spec)
    return ReportSet(dict(sorted(out.items()))), problems


def parse_reports(text: str, source: str, refs: References) -> list[ReportSpec]:
    parsed, lines = parse_model(text, source, ReportFile)
    found = [problem(source, lines, loc, msg) for loc, msg in _reference_problems(parsed, refs)]
    if found:
        raise ConfigError("\n".join(found))
    return [_spec(r, f"{source}:{lines.get(('reports', i), 1)}")
            for i, r in enumerate(parsed.reports)]  # fmt: skip


def _reference_problems(parsed: ReportFile, refs: References) -> Iterator[tuple[LinePath, str]]:
    for i, report in enumerate(parsed.reports):
        at: LinePath = ("reports", i)
        if refs.catalog is not None:
            yield from _kpi_problems((*at, "sources"), report.sources, refs.catalog)
        if refs.dashboards is not None:
            known = [d.name for d in refs.dashboards]
            yield from _unknown((*at, "sources", "dashboards"), report.sources.dashboards,
                                known, "dashboard", "see the dashboards/ folder")  # fmt: skip
        if refs.notify is not None:
            yield from _delivery_problems((*at, "deliver"), report.deliver, refs.notify)


def _kpi_problems(
    at: LinePath, sources: SourcesModel, catalog: Catalog
) -> Iterator[tuple[LinePath, str]]:
    yield from _unknown((*at, "kpis"), sources.kpis, catalog.names(), "KPI",
                        "see `opsmetrics kpi list`")  # fmt: skip
    tags = sorted({t for kpi in catalog for t in kpi.tags})
    yield from _unknown((*at, "tags"), sources.tags, tags, "tag", "no KPI has it")
    owners = sorted({kpi.owner for kpi in catalog if kpi.owner})
    yield from _unknown((*at, "owners"), sources.owners, owners, "owner", "no KPI has it")


def _unknown(
    at: LinePath, names: Sequence[str], known: Sequence[str], what: str, fix: str
) -> Iterator[tuple[LinePath, str]]:
    for j, name in enumerate(names):
        if name not in known:
            yield (*at, j), f"unknown {what} {name!r}{did_you_mean(name, known) or '; ' + fix}"


def _delivery_problems(
    at: LinePath, deliver: Sequence[DeliveryModel], notify: NotifyConfig
) -> Iterator[tuple[LinePath, str]]:
    usable = [name for name, c in notify.channels.items() if c.type in DELIVERY_TYPES]
    for j, d in enumerate(deliver):
        channel = notify.channels.get(d.channel)
        if channel is None:
            hint = did_you_mean(d.channel, usable) or "; define it in notify.yaml channels"
            yield (*at, j, "channel"), f"unknown channel {d.channel!r}{hint}"
        elif channel.type not in DELIVERY_TYPES:
            yield (
                (*at, j, "channel"),
                (
                    f"channel {d.channel!r} is a {channel.type} channel; reports go to "
                    f"{', '.join(DELIVERY_TYPES)} channels"
                ),
            )
        elif d.to and channel.type != "email":
            yield (*at, j, "to"), f"only email channels take `to`; {d.channel!r} is {channel.type}"


def _spec(m: ReportModel, source: str) -> ReportSpec:
    s = m.sources
    return ReportSpec(
        name=m.name,
        title=m.title or m.name.replace("-", " ").replace("_", " ").capitalize(),
        audience=m.audience,
        schedule=m.schedule,
        timezone=m.timezone,
        window=m.window,
        compare=m.compare,
        sources=ReportSources(
            *(tuple(getattr(s, f)) for f in ("dashboards", "kpis", "tags", "levels", "owners"))
        ),  # fmt: skip
        formats=frozenset(m.formats),
        deliver=tuple(Delivery(d.channel, tuple(d.to)) for d in m.deliver),
        catch_up=CatchUp(m.catch_up.policy, parse_duration_ms(m.catch_up.max_age)),
        enabled=m.enabled,
        description=m.description,
        source=source,
    )
