"""notify.yaml: notification channels, routes, inhibition rules and mute time intervals.

Secrets never live in the file: a channel names the environment variables that hold them
(`url_env`, `routing_key_env`, `password_env`, `urls_env`). See docs/alerting.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from opsmetrics.catalog.mute_windows import MONTHS, WEEKDAYS, Window, parse_range, parse_time
from opsmetrics.catalog.yamlfile import LinePath, parse_model, problem, read_config_text
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import BadDataError, ConfigError

FILE = "notify.yaml"
ChannelType = Literal["webhook", "slack", "pagerduty", "email", "apprise", "alertmanager"]


@dataclass(frozen=True, slots=True)
class Timings:
    group_wait_ms: int
    group_interval_ms: int
    repeat_interval_ms: int
    escalate_after_ms: int | None = None


#: Per-severity defaults for what a route leaves unset. `info` alerts are dashboard only:
#: they reach a channel only through a route that matches `severity: info` explicitly.
SEVERITY_DEFAULTS = {
    "critical": Timings(10_000, 60_000, 3_600_000, 15 * 60_000),
    "warning": Timings(30_000, 300_000, 4 * 3_600_000),
    "info": Timings(60_000, 600_000, 24 * 3_600_000),
}
DEFAULT_TIMINGS = Timings(30_000, 300_000, 4 * 3_600_000)


def _duration(value: Any) -> str | None:
    if value is None:
        return None
    try:
        parse_duration_ms(str(value))
    except BadDataError as exc:
        raise ValueError(exc.message.removeprefix("duration: ")) from None
    return str(value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ChannelModel(_Model):
    name: str = Field(min_length=1)
    type: ChannelType
    url: str | None = None
    url_env: str | None = None
    headers: dict[str, str] = {}
    headers_env: dict[str, str] = {}  # header name → env var holding its value
    routing_key_env: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    sender: str | None = Field(None, alias="from")
    to: list[str] = []
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    urls: list[str] = []
    urls_env: str | None = None
    timeout: str = "10s"
    max_retries: int = Field(5, ge=0, le=20)

    _dur = field_validator("timeout")(classmethod(lambda cls, v: _duration(v)))


class RouteModel(_Model):
    name: str | None = None
    match: dict[str, str] = {}
    match_re: dict[str, str] = {}
    channels: list[str] = []
    group_by: list[str] = ["alertname"]
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None
    escalate_after: str | None = None
    escalate_to: list[str] = []
    send_resolved: bool = True
    continue_: bool = Field(False, alias="continue")
    mute_time_intervals: list[str] = []

    _durs = field_validator("group_wait", "group_interval", "repeat_interval", "escalate_after")(
        classmethod(lambda cls, v: _duration(v))
    )

    @field_validator("match_re")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{name}: invalid regular expression: {exc}") from None
        return value


class InhibitModel(_Model):
    source_match: dict[str, str] = {}
    target_match: dict[str, str] = {}
    equal: list[str] = []


class TimeRangeModel(_Model):
    start_time: str
    end_time: str

    @field_validator("start_time", "end_time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value // 60:02d}:{value % 60:02d}"  # YAML 1.1 read 22:00 as 1320
        parse_time(str(value))
        return str(value)


class WindowModel(_Model):
    weekdays: list[str] = []
    times: list[TimeRangeModel] = []
    days_of_month: list[str] = []
    months: list[str] = []
    location: str = "UTC"

    @field_validator("weekdays", "days_of_month", "months", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_range(text, WEEKDAYS)
        return value

    @field_validator("months")
    @classmethod
    def _months(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_range(text, MONTHS, offset=1)
        return value

    @field_validator("days_of_month")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_range(text)
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use e.g. Europe/Berlin") from None
        return value


class TimeIntervalModel(_Model):
    name: str = Field(min_length=1)
    time_intervals: list[WindowModel] = []


class NotifyFile(_Model):
    channels: list[ChannelModel] = []
    routes: list[RouteModel] = []
    inhibit_rules: list[InhibitModel] = []
    time_intervals: list[TimeIntervalModel] = []


@dataclass(frozen=True, slots=True)
class RouteSpec:
    index: int
    name: str
    match: dict[str, str]
    match_re: dict[str, re.Pattern[str]]
    channels: tuple[str, ...]
    group_by: tuple[str, ...]
    timings: Timings
    escalate_to: tuple[str, ...]
    send_resolved: bool
    continue_: bool
    mute_time_intervals: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    channels: dict[str, ChannelModel] = field(default_factory=dict)
    routes: tuple[RouteSpec, ...] = ()
    inhibit_rules: tuple[InhibitModel, ...] = ()
    time_intervals: dict[str, tuple[Window, ...]] = field(default_factory=dict)


def load_notify(config_dir: Path | None) -> NotifyConfig:
    """config_dir/notify.yaml, or an empty config (every alert dashboard only) if absent."""
    if config_dir is None or not (config_dir / FILE).exists():
        return NotifyConfig()
    path = config_dir / FILE
    return parse_notify(read_config_text(path), str(path))


def parse_notify(text: str, source: str) -> NotifyConfig:
    parsed, lines = parse_model(text, source, NotifyFile)
    problems = [problem(source, lines, loc, msg) for loc, msg in _reference_problems(parsed)]
    if problems:
        raise ConfigError("\n".join(problems))
    return NotifyConfig(
        channels={c.name: c for c in parsed.channels},
        routes=tuple(_route(i, r) for i, r in enumerate(parsed.routes)),
        inhibit_rules=tuple(parsed.inhibit_rules),
        time_intervals={t.name: tuple(_window(w) for w in t.time_intervals)
                        for t in parsed.time_intervals},
    )  # fmt: skip


def _reference_problems(parsed: NotifyFile) -> Iterator[tuple[LinePath, str]]:
    names = [c.name for c in parsed.channels]
    for i, name in enumerate(names):
        if name in names[:i]:
            yield ("channels", i, "name"), f"duplicate channel name {name!r}"
    for i, channel in enumerate(parsed.channels):
        yield from _channel_problems(i, channel)
    intervals = {t.name for t in parsed.time_intervals}
    for i, route in enumerate(parsed.routes):
        for key in ("channels", "escalate_to"):
            for j, name in enumerate(getattr(route, key)):
                if name not in names:
                    yield ("routes", i, key, j), f"unknown channel {name!r}; define it in channels"
        for j, name in enumerate(route.mute_time_intervals):
            if name not in intervals:
                yield (
                    ("routes", i, "mute_time_intervals", j),
                    f"unknown time interval {name!r}; define it in time_intervals",
                )


_NEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "webhook": (("url", "url_env"),),
    "slack": (("url", "url_env"),),
    "alertmanager": (("url", "url_env"),),
    "pagerduty": (("routing_key_env",),),
    "email": (("smtp_host",), ("sender",), ("to",)),
    "apprise": (("urls", "urls_env"),),
}


_SECRET_HEADERS = {"authorization", "x-api-key", "api-key", "x-auth-token"}


def _channel_problems(i: int, channel: ChannelModel) -> Iterator[tuple[LinePath, str]]:
    for options in _NEEDS[channel.type]:
        if not any(getattr(channel, name) for name in options):
            shown = " or ".join("from" if n == "sender" else n for n in options)
            yield ("channels", i), f"a {channel.type} channel needs {shown}"
    for name in channel.headers:
        if name.lower() in _SECRET_HEADERS:
            yield ("channels", i, "headers", name), "holds a secret; use headers_env instead"
    if channel.url and re.search(r"://[^/@\s]+:[^/@\s]+@", channel.url):
        yield ("channels", i, "url"), "holds a password; move the URL to an env var (url_env)"


def _route(index: int, r: RouteModel) -> RouteSpec:
    base = SEVERITY_DEFAULTS.get(r.match.get("severity", ""), DEFAULT_TIMINGS)
    timings = Timings(
        _ms(r.group_wait, base.group_wait_ms),
        _ms(r.group_interval, base.group_interval_ms),
        _ms(r.repeat_interval, base.repeat_interval_ms),
        _ms(r.escalate_after, base.escalate_after_ms) if r.escalate_to else None,
    )
    return RouteSpec(
        index=index,
        name=r.name or f"route-{index}",
        match=dict(r.match),
        match_re={k: re.compile(f"(?s:{v})") for k, v in r.match_re.items()},
        channels=tuple(r.channels),
        group_by=tuple(r.group_by),
        timings=timings,
        escalate_to=tuple(r.escalate_to),
        send_resolved=r.send_resolved,
        continue_=r.continue_,
        mute_time_intervals=tuple(r.mute_time_intervals),
    )


def _ms(text: str | None, default: int | None) -> int:
    if text is None:
        return default if default is not None else 15 * 60_000
    return parse_duration_ms(text)


def _window(w: WindowModel) -> Window:
    return Window(
        weekdays=tuple(parse_range(d, WEEKDAYS) for d in w.weekdays),
        times=tuple((parse_time(t.start_time), parse_time(t.end_time)) for t in w.times),
        days_of_month=tuple(parse_range(d) for d in w.days_of_month),
        months=tuple(parse_range(m, MONTHS, offset=1) for m in w.months),
        location=w.location,
    )
