"""Every KPI alert rule of a config directory: the `alerts:` of each KPI and of each rule file
whose top level is `alerts:`, checked against the catalog (docs/kpi-alerts.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from opsmetrics.catalog.kpi_alerts import (
    AlertFileModel,
    Condition,
    KpiAlertSpec,
    is_alert_file,
    spec_from_seed,
)
from opsmetrics.catalog.kpi_model import Direction, Grain, KpiDefinition
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.catalog.promql_text import parse_promql
from opsmetrics.catalog.rules import rule_files
from opsmetrics.catalog.yamlfile import parse_model, read_config_text
from opsmetrics.errors import ConfigError


def kpi_alert_rules(catalog: Catalog, config_dir: Path | None) -> list[KpiAlertSpec]:
    """The rules, or ConfigError listing every problem as `file:line: field: message`."""
    specs, problems = read_kpi_alert_rules(catalog, config_dir)
    if problems:
        raise ConfigError("\n".join(problems))
    return specs


def read_kpi_alert_rules(
    catalog: Catalog, config_dir: Path | None
) -> tuple[list[KpiAlertSpec], list[str]]:
    specs = [spec for kpi in catalog for spec in kpi.alerts]
    problems: list[str] = []
    kpis = set(catalog.names())
    for path in alert_files(config_dir):
        try:
            specs += load_alert_file(path, kpis)
        except ConfigError as exc:
            problems += exc.message.splitlines()
    problems += list(_semantic_problems(catalog, specs))
    problems += list(_duplicates(specs))
    return specs, problems


def alert_files(config_dir: Path | None) -> list[Path]:
    """The rule files in `alerts:` form (the others hold Prometheus `groups:`)."""
    if config_dir is None:
        return []
    return [p for p in rule_files(config_dir) if _is_alert_file(p)]


def _is_alert_file(path: Path) -> bool:
    try:
        return is_alert_file(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False


def _semantic_problems(catalog: Catalog, specs: list[KpiAlertSpec]) -> Iterator[str]:
    for spec in specs:
        kpi = catalog.kpis.get(spec.kpi) if spec.kpi is not None else None
        message = _problem(spec, kpi)
        if message:
            yield f"{spec.source}: {spec.kpi or 'alerts'}.{spec.name}: {message}"


#: The conditions that use the KPI's thresholds when the rule sets no `above`/`below`.
_LINES = (Condition.THRESHOLD, Condition.FORECAST)


#: Grains with a seasonal baseline (hour-of-day × day-of-week, weekday, previous weeks).
_SEASONAL = (Grain.HOUR, Grain.DAY, Grain.WEEK)


def _anomaly_problem(spec: KpiAlertSpec, kpi: KpiDefinition | None) -> str | None:
    if spec.condition is not Condition.ANOMALY:
        if spec.score_threshold is not None or spec.direction is not None:
            return "`threshold` and `direction` are options of the anomaly condition only"
        return None
    if kpi is None:
        return "an anomaly condition needs a KPI as `metric`"
    if kpi.grain not in _SEASONAL:
        return (
            f"KPI {kpi.name} has grain {kpi.grain.value}; the anomaly condition needs an "
            "hour, day or week grain (a seasonal baseline)"
        )
    if spec.limit is not None:
        return "an anomaly condition takes `threshold` (a score), not `above`/`below`"
    return None


def _problem(spec: KpiAlertSpec, kpi: KpiDefinition | None) -> str | None:
    anomaly = _anomaly_problem(spec, kpi)
    if anomaly is not None or spec.condition is Condition.ANOMALY:
        return anomaly
    if spec.condition is Condition.CHANGE and spec.limit is None:
        return "a change condition needs `below` (e.g. -20%) or `above` (e.g. 50%)"
    if spec.condition is Condition.FORECAST and (spec.horizon_ms is None or kpi is None):
        return "a forecast condition needs a KPI as `metric` and a `horizon` such as 7d"
    if spec.condition not in _LINES or spec.limit is not None:
        return None
    if kpi is None:
        return "a metric that is not a KPI has no thresholds; set `above` or `below`"
    t = kpi.thresholds
    if t.warning is None and t.critical is None:
        return (
            f"KPI {kpi.name} has no thresholds; give the KPI `thresholds:` "
            "or the alert `above:`/`below:`"
        )
    if kpi.direction is Direction.TARGET_IS_BEST and kpi.target is None:
        return f"KPI {kpi.name} is target_is_best but has no target to measure distance from"
    return None


def _duplicates(specs: list[KpiAlertSpec]) -> Iterator[str]:
    seen: dict[str, KpiAlertSpec] = {}
    for spec in specs:
        first = seen.setdefault(spec.rule_id, spec)
        if first is not spec:
            yield (
                f"{spec.source}: {spec.name}: duplicate alert for the same KPI; "
                f"first defined at {first.source}"
            )


def parse_alert_file(text: str, source: str, kpis: set[str]) -> list[KpiAlertSpec]:
    """The rules of one `alerts:` file; ConfigError lists every problem as file:line."""
    parsed, lines = parse_model(text, source, AlertFileModel)
    problems = []
    specs = []
    for name, model in parsed.alerts.items():
        line = lines.get(("alerts", name), 1)
        try:
            _check_metric(model.metric, kpis)
        except ValueError as exc:
            problems.append(
                f"{source}:{lines.get(('alerts', name, 'metric'), line)}: "
                f"alerts.{name}.metric: {exc}"
            )
            continue
        specs.append(spec_from_seed(name, model, f"{source}:{line}", kpis))
    if problems:
        raise ConfigError("\n".join(problems))
    return specs


def _check_metric(metric: str, kpis: set[str]) -> None:
    if metric in kpis:
        return
    try:
        parse_promql(metric)
    except ValueError:
        raise ValueError(
            f"{metric!r} is neither a KPI of the catalog nor a PromQL expression"
        ) from None


def load_alert_file(path: Path, kpis: set[str]) -> list[KpiAlertSpec]:
    text = read_config_text(path)
    return parse_alert_file(text, str(path), kpis)
