"""config/rules/*.yaml: Prometheus rule groups, in Prometheus's format, unchanged.

    groups:
      - name: api
        interval: 1m          # optional; default 1m
        limit: 0              # optional; series per rule, 0 = no limit
        rules:
          - record: job:http_requests:rate5m
            expr: sum by (job) (rate(http_requests_total[5m]))
            labels: {team: web}
          - alert: HighErrorRate
            expr: job:errors:ratio5m > 0.05
            for: 10m
            labels: {severity: page}
            annotations: {summary: "error rate above 5%"}

Every problem is reported as `file:line: field: message`, and every `expr` is parsed as PromQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from opsmetrics.catalog.config_fields import ConfigModel, LabelMap, PromQL
from opsmetrics.catalog.kpi_alerts import is_alert_file
from opsmetrics.catalog.yamlfile import LinePath, parse_model, problem, read_config_text
from opsmetrics.durations import config_duration_ms
from opsmetrics.errors import ConfigError

RULES_DIR = "rules"
DEFAULT_INTERVAL_MS = 60_000
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _duration(value: object) -> int:
    return config_duration_ms(value, "30s, 1m or 1h30m")


DurationMs = Annotated[int, BeforeValidator(_duration)]


class RuleModel(ConfigModel):
    record: str | None = None
    alert: str | None = None
    expr: PromQL
    for_: DurationMs | None = Field(default=None, alias="for")
    keep_firing_for: DurationMs | None = None
    labels: LabelMap = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("record")
    @classmethod
    def _record_name(cls, value: str | None) -> str | None:
        if value is not None and not _METRIC_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid metric name (e.g. job:requests:rate5m)")
        return value


class GroupModel(ConfigModel):
    name: str = Field(min_length=1)
    interval: DurationMs | None = None
    query_offset: DurationMs | None = None
    limit: int = Field(default=0, ge=0)
    labels: LabelMap = Field(default_factory=dict)
    rules: list[RuleModel] = Field(default_factory=list)


class RuleFileModel(ConfigModel):
    groups: list[GroupModel] = Field(default_factory=list)


class RuleType(Enum):
    RECORDING = "recording"
    ALERTING = "alerting"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule as loaded: `name` is the record name or the alert name."""

    type: RuleType
    name: str
    expr: str
    labels: dict[str, str]
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RuleGroup:
    name: str
    file: str
    interval_ms: int
    limit: int
    query_offset_ms: int
    rules: tuple[Rule, ...]


def parse_rule_file(text: str, source: str) -> list[RuleGroup]:
    """Validate one rule file; raise ConfigError listing problems as `file:line: field: msg`.

    A file whose top level is `alerts:` holds KPI alert rules (catalog/kpi_alerts.py, checked
    by kpi_alert_files.py): it has no Prometheus groups."""
    if is_alert_file(text):
        return []
    parsed, lines = parse_model(text, source, RuleFileModel)
    problems = _semantic_problems(parsed, source, lines)
    if problems:
        raise ConfigError("\n".join(problems))
    return [_group(g, source) for g in parsed.groups]


def _semantic_problems(parsed: RuleFileModel, source: str, lines: dict[LinePath, int]) -> list[str]:
    """What pydantic cannot see: repeated group names, record vs alert fields (as promtool)."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, group in enumerate(parsed.groups):
        if group.name in seen:
            message = f"group name {group.name!r} is repeated in the same file; rename one"
            problems.append(problem(source, lines, ("groups", i, "name"), message))
        seen.add(group.name)
        for j, rule in enumerate(group.rules):
            loc: tuple[Any, ...] = ("groups", i, "rules", j)
            problems += [problem(source, lines, (*loc, f), m) for f, m in _rule_problems(rule)]
            problems += [problem(source, lines, (*loc, *f), m) for f, m in _template_problems(rule)]
    return problems


def _rule_problems(rule: RuleModel) -> list[tuple[str, str]]:
    if rule.record is not None and rule.alert is not None:
        return [("record", "only one of 'record' and 'alert' may be set")]
    if rule.record is None and rule.alert is None:
        return [("expr", "one of 'record' or 'alert' must be set")]
    if rule.alert is not None:
        return [] if rule.alert.strip() else [("alert", "must not be empty")]
    fields = {"for": rule.for_, "keep_firing_for": rule.keep_firing_for}
    found = [
        (name, f"invalid field {name!r} in a recording rule; it applies to alerts only")
        for name, value in fields.items()
        if value is not None
    ]
    if rule.annotations:
        found.append(("annotations", "invalid field 'annotations' in a recording rule"))
    return found


def _template_problems(rule: RuleModel) -> list[tuple[tuple[str, str], str]]:
    """Label and annotation templates of an alerting rule that do not parse."""
    from opsmetrics.catalog.alert_template_funcs import TemplateError
    from opsmetrics.catalog.alert_templates import parse

    if rule.alert is None:
        return []
    found: list[tuple[tuple[str, str], str]] = []
    for kind, mapping in (("labels", rule.labels), ("annotations", rule.annotations)):
        for key, text in mapping.items():
            try:
                parse(text, f"__alert_{rule.alert}")
            except TemplateError as exc:
                found.append(((kind, key), f"invalid template: {exc.message}"))
    return found


def _group(model: GroupModel, source: str) -> RuleGroup:
    rules = tuple(_rule(r, model.labels) for r in model.rules)
    return RuleGroup(
        name=model.name,
        file=source,
        interval_ms=model.interval or DEFAULT_INTERVAL_MS,
        limit=model.limit,
        query_offset_ms=model.query_offset or 0,
        rules=rules,
    )


def _rule(model: RuleModel, group_labels: dict[str, str]) -> Rule:
    labels = {**group_labels, **model.labels}  # as Prometheus 3: rule labels win
    if model.record is not None:
        return Rule(RuleType.RECORDING, model.record, model.expr, labels)
    return Rule(
        RuleType.ALERTING,
        str(model.alert),
        model.expr,
        labels,
        for_ms=model.for_ or 0,
        keep_firing_for_ms=model.keep_firing_for or 0,
        annotations=tuple(sorted(model.annotations.items())),
    )


def rule_files(config_dir: Path) -> list[Path]:
    """The rule files of a config directory, in name order."""
    rules_dir = config_dir / RULES_DIR
    if not rules_dir.is_dir():
        return []
    return sorted(p for p in rules_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_rule_file(path: Path) -> list[RuleGroup]:
    text = read_config_text(path)
    return parse_rule_file(text, str(path))


def load_rules(config_dir: Path | None) -> list[RuleGroup]:
    """Every group of every rule file; ConfigError lists the problems of all files at once."""
    if config_dir is None:
        return []
    groups: list[RuleGroup] = []
    problems: list[str] = []
    for path in rule_files(config_dir):
        try:
            groups += load_rule_file(path)
        except ConfigError as exc:
            problems.append(exc.message)
    if problems:
        raise ConfigError("\n".join(problems))
    return groups
