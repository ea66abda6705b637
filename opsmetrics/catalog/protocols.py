"""Response protocols: config/protocols/*.yaml, what to do when an alert fires.

    protocols:
      - name: checkout-errors
        title: Checkout is failing
        match: {alertname: CheckoutErrorRateHigh}   # label equality; or kpi: <name>
        severity: [critical]                        # optional: only these levels
        team: sre
        role: on-call engineer
        response_time: {critical: 5m, warning: 30m} # unacknowledged that long: escalate
        steps:
          - title: Look at the error rate by route
            query: sum by (route) (rate(http_requests_total{code=~"5.."}[5m]))
          - {title: Open the engineering dashboard, link: /dashboards/engineering}
        actions:
          - name: scale-out
            run: manual                              # manual | auto (when the alert fires)
            method: POST
            url_env: SCALER_URL                      # or url:
            headers_env: {Authorization: SCALER_TOKEN}
            body: '{"service": "{{ $labels.service }}", "value": {{ $value }}}'

An alert takes the first protocol that matches it (files in name order, protocols in file
order). See docs/alerting.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from opsmetrics.catalog.alert_template_funcs import TemplateError
from opsmetrics.catalog.alert_templates import parse as parse_template
from opsmetrics.catalog.config_fields import ConfigModel, LabelMap, PromQL
from opsmetrics.catalog.yamlfile import LinePath, parse_model, problem
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import BadDataError, ConfigError

FOLDER = "protocols"
Severity = Literal["critical", "warning", "info"]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SECRET_HEADERS = {"authorization", "x-api-key", "api-key", "x-auth-token"}


def _duration(value: str) -> str:
    try:
        if parse_duration_ms(str(value)) <= 0:
            raise ValueError("must be longer than 0")
    except BadDataError as exc:
        raise ValueError(exc.message.removeprefix("duration: ")) from None
    return str(value)


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r}: use letters, digits, '-', '_' or '.' (e.g. scale-out)")
    return value


class StepModel(ConfigModel):
    title: str = Field(min_length=1)
    link: str | None = None
    query: PromQL | None = None


class ActionModel(ConfigModel):
    name: str
    run: Literal["manual", "auto"] = "manual"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str | None = None
    url_env: str | None = None
    headers: dict[str, str] = {}
    headers_env: dict[str, str] = {}  # header name → env var holding its value
    body: str | None = None
    timeout: str = "10s"

    _names = field_validator("name")(classmethod(lambda cls, v: _name(v)))
    _dur = field_validator("timeout")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("body")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_template(value, "body")
            except TemplateError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("headers")
    @classmethod
    def _no_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in _SECRET_HEADERS:
                raise ValueError(f"{name} holds a secret; name its env var in headers_env")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> ActionModel:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give the action exactly one of url or url_env")
        if self.url and re.search(r"://[^/@\s]+:[^/@\s]+@", self.url):
            raise ValueError("url holds a password; move the URL to an env var (url_env)")
        return self


class ProtocolModel(ConfigModel):
    name: str
    title: str = ""
    match: LabelMap = {}
    kpi: str | None = None
    severity: list[Severity] = []
    team: str = Field(min_length=1)
    role: str = ""
    response_time: dict[Severity, str] = {}
    steps: list[StepModel] = Field(min_length=1)
    actions: list[ActionModel] = []

    _names = field_validator("name")(classmethod(lambda cls, v: _name(v)))

    @field_validator("response_time")
    @classmethod
    def _durations(cls, value: dict[str, str]) -> dict[str, str]:
        for severity, text in value.items():
            try:
                _duration(text)
            except ValueError as exc:
                raise ValueError(f"{severity}: {exc}") from None
        return value

    @field_validator("severity", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _attached(self) -> ProtocolModel:
        if not self.match and self.kpi is None:
            raise ValueError("attach the protocol: give match (alert labels) or kpi")
        names = [a.name for a in self.actions]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"actions[{i}]: duplicate action name {name!r}")
        return self


class ProtocolFile(ConfigModel):
    protocols: list[ProtocolModel] = []


@dataclass(frozen=True, slots=True)
class Step:
    title: str
    link: str | None = None
    query: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    run: str  # manual | auto
    method: str
    url: str | None
    url_env: str | None
    headers: Mapping[str, str]
    headers_env: Mapping[str, str]
    body: str | None
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str
    title: str
    match: Mapping[str, str]
    kpi: str | None
    severities: tuple[str, ...]
    team: str
    role: str
    response_ms: Mapping[str, int]
    steps: tuple[Step, ...]
    actions: tuple[Action, ...]
    source: str  # file:line, for messages

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k, "") != v for k, v in self.match.items()):
            return False
        if self.kpi is not None and labels.get("kpi") != self.kpi:
            return False
        return not self.severities or labels.get("severity", "") in self.severities

    def response_time_ms(self, severity: str) -> int | None:
        """How long an alert of this severity may stay unacknowledged before escalating."""
        return self.response_ms.get(severity)

    def action(self, name: str) -> Action | None:
        return next((a for a in self.actions if a.name == name), None)


@dataclass(frozen=True, slots=True)
class ProtocolSet:
    protocols: tuple[Protocol, ...] = ()

    def for_labels(self, labels: Mapping[str, str]) -> Protocol | None:
        """The first protocol that matches an alert's labels."""
        return next((p for p in self.protocols if p.matches(labels)), None)

    def named(self, name: str) -> Protocol | None:
        return next((p for p in self.protocols if p.name == name), None)


def protocol_files(config_dir: Path | None) -> list[Path]:
    if config_dir is None or not (config_dir / FOLDER).is_dir():
        return []
    return sorted((config_dir / FOLDER).glob("*.yaml"))


def load_protocols(config_dir: Path | None, kpis: Sequence[str] | None = None) -> ProtocolSet:
    """Every protocol of config_dir/protocols/, or ConfigError listing every problem."""
    protocols, problems = read_protocols(config_dir, kpis)
    if problems:
        raise ConfigError("\n".join(problems))
    return protocols


def read_protocols(
    config_dir: Path | None, kpis: Sequence[str] | None = None
) -> tuple[ProtocolSet, list[str]]:
    """The protocols and the problems (`file:line: field: message`) found reading them;
    with `kpis`, a `kpi:` that names none of them is a problem too."""
    out: list[Protocol] = []
    problems: list[str] = []
    for path in protocol_files(config_dir):
        try:
            out += parse_protocols(path.read_text(encoding="utf-8"), str(path), kpis)
        except ConfigError as exc:
            problems += exc.message.splitlines()
    seen: dict[str, str] = {}
    for p in out:
        if p.name in seen:
            problems.append(f"{p.source}: name: protocol {p.name!r} is defined at {seen[p.name]}")
        seen.setdefault(p.name, p.source)
    return ProtocolSet(tuple(out)), problems


def parse_protocols(text: str, source: str, kpis: Sequence[str] | None = None) -> list[Protocol]:
    parsed, lines = parse_model(text, source, ProtocolFile)
    found = [problem(source, lines, loc, msg) for loc, msg in _kpi_problems(parsed, kpis)]
    if found:
        raise ConfigError("\n".join(found))
    return [_protocol(p, f"{source}:{lines.get(('protocols', i), 1)}")
            for i, p in enumerate(parsed.protocols)]  # fmt: skip


def _kpi_problems(
    parsed: ProtocolFile, kpis: Sequence[str] | None
) -> Iterator[tuple[LinePath, str]]:
    if kpis is None:
        return
    for i, p in enumerate(parsed.protocols):
        if p.kpi is not None and p.kpi not in kpis:
            yield ("protocols", i, "kpi"), f"unknown KPI {p.kpi!r}; see `opsmetrics kpi list`"


def _protocol(m: ProtocolModel, source: str) -> Protocol:
    return Protocol(
        name=m.name,
        title=m.title or m.name,
        match=dict(m.match),
        kpi=m.kpi,
        severities=tuple(m.severity),
        team=m.team,
        role=m.role,
        response_ms={k: parse_duration_ms(v) for k, v in m.response_time.items()},
        steps=tuple(Step(s.title, s.link, s.query) for s in m.steps),
        actions=tuple(_action(a) for a in m.actions),
        source=source,
    )


def _action(a: ActionModel) -> Action:
    return Action(
        a.name, a.run, a.method, a.url, a.url_env, dict(a.headers), dict(a.headers_env),
        a.body, parse_duration_ms(a.timeout),
    )  # fmt: skip
