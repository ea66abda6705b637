"""`opsmetrics rules test`: promtool-style unit tests for rule files.

    rule_files: [alerts.yaml]           # relative to the test file
    evaluation_interval: 1m
    group_eval_order: [g1, g2]          # optional
    tests:
      - interval: 1m                    # step of input_series (default: evaluation_interval)
        input_series:
          - series: 'up{job="api", instance="a:1"}'
            values: '1 1 0x10 _ stale'
        alert_rule_test:
          - eval_time: 10m
            alertname: InstanceDown
            exp_alerts:
              - exp_labels: {severity: page, instance: "a:1", job: api}
                exp_annotations: {summary: "a:1 is down"}
        promql_expr_test:
          - expr: up == 0
            eval_time: 5m
            exp_samples:
              - labels: 'up{job="api", instance="a:1"}'
                value: 0

Each test runs in its own temporary DuckDB store with a FakeClock starting at 0: the input
series are written, every group is evaluated at 0, interval, 2·interval, … up to the last
eval_time, and at each eval_time the firing alerts of `alertname` are compared with
`exp_alerts` (labels plus alertname, and annotations, in any order), as promtool does.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from opsmetrics.alerting.evaluator import default_evaluator, vector_rows
from opsmetrics.alerting.groups import RuleManager
from opsmetrics.alerting.model import ALERT_NAME, AlertState
from opsmetrics.alerting.series_notation import Missing, parse_series, parse_values
from opsmetrics.catalog.rules import DurationMs, RuleGroup, load_rule_file
from opsmetrics.catalog.yamlfile import parse_model
from opsmetrics.clock import FakeClock
from opsmetrics.errors import ConfigError, OpsMetricsError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import Ingestor, WriteRequest
from opsmetrics.model import Labels, SampleBatchBuilder
from opsmetrics.settings import Limits, Settings
from opsmetrics.storage.base import Storage
from opsmetrics.storage.open import open_storage
from opsmetrics.telemetry import Telemetry

_FAR = 10**15  # ingest limits that never reject a test's timestamps


def _text(value: object) -> object:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class InputSeries(_Model):
    series: str
    values: Annotated[str, BeforeValidator(_text)] = ""


class ExpAlert(_Model):
    exp_labels: dict[str, str] = Field(default_factory=dict)
    exp_annotations: dict[str, str] = Field(default_factory=dict)


class AlertTest(_Model):
    eval_time: DurationMs
    alertname: str
    exp_alerts: list[ExpAlert] = Field(default_factory=list)


class ExpSample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    labels: str = ""
    value: float


class PromqlTest(_Model):
    expr: str
    eval_time: DurationMs
    exp_samples: list[ExpSample] = Field(default_factory=list)


class TestGroup(_Model):
    name: str = ""
    interval: DurationMs | None = None
    input_series: list[InputSeries] = Field(default_factory=list)
    alert_rule_test: list[AlertTest] = Field(default_factory=list)
    promql_expr_test: list[PromqlTest] = Field(default_factory=list)
    external_labels: dict[str, str] = Field(default_factory=dict)
    external_url: str = ""


class TestFile(_Model):
    rule_files: list[str] = Field(default_factory=list)
    evaluation_interval: DurationMs = 60_000
    group_eval_order: list[str] = Field(default_factory=list)
    tests: list[TestGroup] = Field(default_factory=list)


@dataclass
class FileResult:
    path: Path
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def report(self) -> str:
        head = f"Unit Testing:  {self.path}\n"
        if self.ok:
            return head + "  SUCCESS\n"
        return head + "  FAILED:\n" + "".join(f"{f}\n" for f in self.failures)


# --- running ------------------------------------------------------------------------------
def run_test_file(path: Path) -> FileResult:
    result = FileResult(path)
    try:
        spec, _ = parse_model(path.read_text(encoding="utf-8"), str(path), TestFile)
        groups = _rule_groups(path, spec)
        for test in spec.tests:
            failures = run_test_group(test, groups, spec.evaluation_interval)
            name = f"    name: {test.name},\n" if test.name else ""
            result.failures += [name + f for f in failures]
    except OSError as exc:
        result.failures.append(f"    {path}: cannot read: {exc.strerror}")
    except OpsMetricsError as exc:
        result.failures += [f"    {line}" for line in exc.message.splitlines()]
    return result


def _rule_groups(path: Path, spec: TestFile) -> list[RuleGroup]:
    groups: list[RuleGroup] = []
    for name in spec.rule_files:
        for file in sorted((path.parent / name).parent.glob((path.parent / name).name)):
            groups += load_rule_file(file)
    if not groups and spec.rule_files:
        raise ConfigError(f"{path}: rule_files: no file matches {spec.rule_files}")
    if spec.group_eval_order:
        order = {name: i for i, name in enumerate(spec.group_eval_order)}
        groups.sort(key=lambda g: order.get(g.name, len(order)))
    return groups


def run_test_group(test: TestGroup, groups: list[RuleGroup], eval_interval_ms: int) -> list[str]:
    """Failure messages of one test (empty when it passes)."""
    with tempfile.TemporaryDirectory(prefix="opsmetrics-rules-test-") as tmp:
        clock = FakeClock(0)
        limits = Limits(future_tolerance_ms=_FAR, samples_late_window_ms=_FAR)
        storage = open_storage(Settings(data_dir=Path(tmp), limits=limits), clock)
        ingestor = Ingestor(storage, clock, limits, Telemetry())
        ingestor.start()
        try:
            _write_inputs(ingestor, test, test.interval or eval_interval_ms)
            manager = RuleManager(groups, storage, ingestor, clock)
            failures = _run_alert_tests(manager, clock, test, eval_interval_ms)
            checked = [_check_expr(storage, t) for t in test.promql_expr_test]
            return failures + [f for f in checked if f]
        finally:
            ingestor.stop()
            storage.close()


def _write_inputs(ingestor: Ingestor, test: TestGroup, interval_ms: int) -> None:
    builder = SampleBatchBuilder()
    for item in test.input_series:
        labels = parse_series(item.series)
        for step, value in enumerate(parse_values(item.values)):
            if not isinstance(value, Missing):
                builder.add(labels, step * interval_ms, value)
    if len(builder):
        request = WriteRequest("rules-test", samples=DecodedSamples(builder.build()))
        ingestor.write(request)


def _run_alert_tests(
    manager: RuleManager, clock: FakeClock, test: TestGroup, interval_ms: int
) -> list[str]:
    checks = sorted(test.alert_rule_test, key=lambda t: t.eval_time)
    times = [t.eval_time for t in checks] + [t.eval_time for t in test.promql_expr_test]
    failures: list[str] = []
    ts = 0
    while ts <= max(times, default=-1):
        clock.set(ts)
        manager.evaluate_at(ts)
        while checks and checks[0].eval_time < ts + interval_ms:
            failures += _check_alerts(manager, checks.pop(0))
        ts += interval_ms
    return failures


# --- comparing ----------------------------------------------------------------------------
def _check_alerts(manager: RuleManager, test: AlertTest) -> list[str]:
    got = sorted(
        (a.labels, a.annotations)
        for group in manager.status()
        for rule in group.rules
        if rule.rule.name == test.alertname
        for a in rule.alerts
        if a.state is AlertState.FIRING
    )
    expected = sorted(
        (
            tuple(sorted({**e.exp_labels, ALERT_NAME: test.alertname}.items())),
            tuple(sorted(e.exp_annotations.items())),
        )
        for e in test.exp_alerts
    )
    if got == expected:
        return []
    when = format_duration(test.eval_time)
    return [
        f"    alertname: {test.alertname}, time: {when}, \n"
        f"        exp:{_alert_list(expected)}, \n"
        f"        got:{_alert_list(got)}"
    ]


def _alert_list(alerts: list[tuple[Labels, Labels]]) -> str:
    if not alerts:
        return "[]"
    lines = ["["]
    for i, (labels, notes) in enumerate(alerts):
        lines += [f"  {i}:", f"    Labels:{_braces(labels)}", f"    Annotations:{_braces(notes)}"]
    return "\n            ".join([*lines, "]"])


def _braces(pairs: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in pairs) + "}"


def _check_expr(storage: Storage, test: PromqlTest) -> str:
    try:
        value = default_evaluator()(storage, test.expr, test.eval_time)
        got = sorted(vector_rows(value))
    except OpsMetricsError as exc:
        when = format_duration(test.eval_time)
        return f'    expr: "{test.expr}", time: {when}, err: {exc.message}'
    expected = sorted((parse_series(s.labels), float(s.value)) for s in test.exp_samples)
    if _same_samples(got, expected):
        return ""
    return (
        f'    expr: "{test.expr}", time: {format_duration(test.eval_time)},\n'
        f"        exp: {_samples(expected)}\n"
        f"        got: {_samples(got)}"
    )


def _same_samples(a: list[tuple[Labels, float]], b: list[tuple[Labels, float]]) -> bool:
    return len(a) == len(b) and all(
        la == lb and _close(va, vb) for (la, va), (lb, vb) in zip(a, b, strict=True)
    )


def _close(x: float, y: float) -> bool:
    both_nan = math.isnan(x) and math.isnan(y)
    return both_nan or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def _samples(rows: list[tuple[Labels, float]]) -> str:
    if not rows:
        return "nil"
    return "\n             ".join(f"{_braces(labels)} {value!r}" for labels, value in rows)


def format_duration(ms: int) -> str:
    """Prometheus's model.Duration text: 1h5m, 90s → 1m30s, 0 → 0s."""
    if ms == 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, ms = divmod(ms, size)
        out += f"{count}{unit}" if count else ""
    return out + (f"{ms}ms" if ms else "")
