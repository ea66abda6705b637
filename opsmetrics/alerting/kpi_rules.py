"""KPI alert rules: evaluated on their interval with the injectable clock, as an AlertSource.

Each rule's instances (one for a KPI; one per series when a rule file's metric is PromQL) go
inactive → pending → firing → resolved like Prometheus alerts, with `for`, plus hysteresis: a
firing alert resolves only when its measure is back past the line by `clear_margin`, or has
been back past it for `clear_for`. Outside a rule's active time intervals (or inside a mute
interval) the rule pauses: pending alerts are dropped, firing ones resolve.

Each rule is a group of one on the rule-group scheduler (schedule.py), due at once and then
every `interval`; rules due together are evaluated concurrently. After each pass the firing and
recently resolved alerts go to the hub, and `ALERTS` and `ALERTS_FOR_STATE` of every rule are
written through the ingestor in one request, so a restart can restore when pending alerts
became active (alert_state.py).

Benchmarks and tests: `KpiAlertManager(specs, storage, catalog, clock).evaluate_all()` runs
every rule once at the clock's time (`kpi_alert_rules(catalog, config_dir)` loads the specs).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from opsmetrics.alerting import kpi_alert_text as text
from opsmetrics.alerting.alert_state import (
    DEFAULT_OUTAGE_TOLERANCE_MS,
    RESOLVED_RETENTION_MS,
    AlertInstance,
    alert_series,
    restored_active_at,
)
from opsmetrics.alerting.evaluator import write_rows
from opsmetrics.alerting.kpi_conditions import Reading, Verdict, judge, read
from opsmetrics.alerting.model import ALERT_NAME, SEVERITY, Alert, AlertHub, AlertState
from opsmetrics.alerting.schedule import GroupResult, GroupScheduler, ImmediateTicks
from opsmetrics.catalog.kpi_alerts import Baseline, Condition, KpiAlertSpec
from opsmetrics.catalog.kpi_lineage import Dependent
from opsmetrics.catalog.kpi_model import KpiDefinition
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.clock import Clock
from opsmetrics.errors import OpsMetricsError
from opsmetrics.ingest.pipeline import Ingestor
from opsmetrics.model import Labels
from opsmetrics.storage.base import Storage
from opsmetrics.storage.lease import Lease
from opsmetrics.telemetry import Telemetry

log = logging.getLogger(__name__)
SOURCE = "kpi_alerts"


@dataclass(slots=True)
class _Instance(AlertInstance):
    """One alert of a KPI rule; `ok_since_ms` counts `clear_for` while it is back in range."""

    ok_since_ms: int | None = None


@dataclass(slots=True)
class RuleRun:
    """A rule's live instances and how its last evaluation went."""

    spec: KpiAlertSpec
    instances: dict[Labels, _Instance] = field(default_factory=dict)
    last_error: str = ""
    last_evaluation_ms: int | None = None
    evaluation_s: float = 0.0
    restored: bool = False
    #: During the first evaluation after start: activeAt per alert labels from ALERTS_FOR_STATE.
    restore: dict[Labels, int] = field(default_factory=dict)


class KpiAlertManager:
    """Evaluates KPI alert rules on their intervals; `active_alerts()` makes it an AlertSource."""

    def __init__(
        self,
        specs: list[KpiAlertSpec],
        storage: Storage,
        catalog: Catalog,
        clock: Clock,
        ingestor: Ingestor | None = None,
        hub: AlertHub | None = None,
        outage_tolerance_ms: int = DEFAULT_OUTAGE_TOLERANCE_MS,
        telemetry: Telemetry | None = None,
        lease: Lease | None = None,
        scheduler: GroupScheduler[Any] | None = None,
    ) -> None:
        self._outage_tolerance_ms = outage_tolerance_ms
        self._storage = storage
        self._catalog = catalog
        self._ingestor = ingestor
        self._hub = hub
        self._started_ms = clock.now_ms()
        self.runs = [RuleRun(s) for s in specs]
        self._resolved: list[Alert] = []
        self._written: set[Labels] = set()
        # The server's scheduler is shared with the Prometheus rule groups (web/app.py).
        self._scheduler: GroupScheduler[Any] = scheduler or GroupScheduler(
            "opsmetrics-kpi-alerts", clock, telemetry=telemetry, lease=lease
        )
        for run in self.runs:
            ticks, rule = ImmediateTicks(run.spec.interval_ms), run.spec.rule_id
            self._scheduler.add(run, ticks, rule, rule, self._evaluate_rule, self._after_pass)

    # --- running --------------------------------------------------------------------------
    async def start(self) -> None:
        await self._scheduler.start()

    async def stop(self) -> None:
        await self._scheduler.stop()

    def evaluate_due(self) -> int:
        """Evaluate every rule whose time has come; returns how many were evaluated."""
        return len(self._scheduler.evaluate_due())

    def evaluate_all(self) -> int:
        """Evaluate every rule once now, due or not (benchmarks, `opsmetrics` tests)."""
        return len(self._scheduler.evaluate_all())

    def _after_pass(self, runs: Sequence[RuleRun], now: int) -> None:
        self._write_series(now)
        self._send(now)

    # --- AlertSource ----------------------------------------------------------------------
    def active_alerts(self) -> list[Alert]:
        with self._scheduler.lock:
            return [self._alert(run, i) for run in self.runs for i in run.instances.values()]

    def dependents_of(self, kpi: str) -> list[Dependent]:
        """DependentSource for KPI lineage: the alert rules on `kpi`."""
        return [
            Dependent("alert", r.spec.name, r.spec.source) for r in self.runs if r.spec.kpi == kpi
        ]

    def to_send(self, now_ms: int) -> list[Alert]:
        """Firing alerts and the ones resolved in the last 15 minutes."""
        with self._scheduler.lock:
            active = self.active_alerts()
            live = {a.fingerprint for a in active}  # an alert that fired again is not resolved
            self._resolved = [
                a
                for a in self._resolved
                if now_ms - (a.resolved_at_ms or 0) < RESOLVED_RETENTION_MS
                and a.fingerprint not in live
            ]
            firing = [a for a in active if a.state is AlertState.FIRING]
            # Rules are evaluated concurrently: resolved alerts in an order of their own.
            resolved = sorted(self._resolved, key=lambda a: (a.resolved_at_ms or 0, a.rule_id))
            return firing + resolved

    def _send(self, now: int) -> None:
        if self._hub is None:
            return
        try:
            self._hub.send(self.to_send(now), now)
        except Exception:  # a sink's failure must not stop evaluation
            log.exception("sending KPI alerts failed")

    # --- one rule -------------------------------------------------------------------------
    def _evaluate_rule(self, run: RuleRun, now: int) -> GroupResult:
        started = time.perf_counter()
        spec = run.spec
        run.last_evaluation_ms = now
        try:
            if _paused(spec, now):
                self._end_all(run, now)
            else:
                kpi = self._catalog.get(spec.kpi) if spec.kpi is not None else None
                readings = read(self._storage, self._catalog, spec, now, self._started_ms)
                run.restore = self._restore(run, now)
                self._apply(run, kpi, readings, now)
            run.last_error = ""
        except OpsMetricsError as exc:
            run.last_error = str(exc)
            log.warning("KPI alert %s (%s): %s", spec.name, spec.source, exc)
        except Exception as exc:  # one broken rule must not stop the others
            run.last_error = f"internal error: {exc}"
            log.exception("KPI alert %s (%s) failed", spec.name, spec.source)
        run.restored, run.restore = True, {}
        run.evaluation_s = time.perf_counter() - started
        samples = 2 * len(run.instances)  # ALERTS and ALERTS_FOR_STATE
        return GroupResult(run.evaluation_s, samples, int(bool(run.last_error)), rules=1)

    def _restore(self, run: RuleRun, now: int) -> dict[Labels, int]:
        """After a restart, pending alerts keep the activeAt they wrote to ALERTS_FOR_STATE."""
        if run.restored or not run.spec.for_ms or self._ingestor is None:
            return {}
        tolerance = self._outage_tolerance_ms
        return restored_active_at(self._storage, run.spec.name, now, tolerance)

    def _apply(
        self, run: RuleRun, kpi: KpiDefinition | None, readings: dict[Labels, Reading], now: int
    ) -> None:
        for key in [k for k in run.instances if k not in readings]:
            self._end(run, key, now)  # the series went away
        for key, reading in readings.items():
            verdict = judge(run.spec, kpi, reading, now)
            notes = text.alert_annotations(run.spec, kpi, reading, verdict)
            self._step(run, kpi, key, reading, verdict, notes, now)

    def _step(
        self,
        run: RuleRun,
        kpi: KpiDefinition | None,
        key: Labels,
        r: Reading,
        v: Verdict,
        notes: dict[str, str],
        now: int,
    ) -> None:
        inst = run.instances.get(key)
        value = _value(r, v)
        if v.severity is None:
            if inst is not None:
                self._not_breached(run, key, inst, v, value, notes, now)
            return
        labels = _labels(run.spec, kpi, key, v.severity)
        if inst is None:
            active_at = min(now, run.restore.get(labels, now))
            inst = run.instances[key] = _Instance(
                labels, (), AlertState.PENDING, math.nan, active_at
            )
        elif inst.labels != labels and inst.state is AlertState.FIRING:
            self._resolved.append(_resolved(self._alert(run, inst), now))  # severity changed
            inst.labels, inst.fired_at_ms = labels, now
        inst.labels, inst.ok_since_ms, inst.value = labels, None, value
        inst.annotations = _annotations(run.spec, notes)
        if inst.state is AlertState.PENDING and now - inst.active_at_ms >= _for_ms(run.spec):
            inst.state, inst.fired_at_ms = AlertState.FIRING, now

    def _not_breached(
        self,
        run: RuleRun,
        key: Labels,
        inst: _Instance,
        v: Verdict,
        value: float,
        notes: dict[str, str],
        now: int,
    ) -> None:
        if inst.state is AlertState.PENDING or v.cleared:
            self._end(run, key, now)
            return
        inst.value = value
        inst.annotations = _annotations(run.spec, notes)
        clear_for = run.spec.clear_for_ms
        if not v.ok or clear_for is None:
            return  # inside the hysteresis band (or no reading): keeps firing
        inst.ok_since_ms = inst.ok_since_ms if inst.ok_since_ms is not None else now
        if now - inst.ok_since_ms >= clear_for:
            self._end(run, key, now)

    def _end(self, run: RuleRun, key: Labels, now: int) -> None:
        """Drop a pending instance; resolve a firing one."""
        inst = run.instances.pop(key)
        if inst.state is AlertState.FIRING:
            self._resolved.append(_resolved(self._alert(run, inst), now))

    def _end_all(self, run: RuleRun, now: int) -> None:
        for key in list(run.instances):
            self._end(run, key, now)

    def _alert(self, run: RuleRun, inst: _Instance) -> Alert:
        spec = run.spec
        url = f"/kpis/{spec.kpi}" if spec.kpi is not None else "/explore"
        return inst.to_alert("kpi", spec.rule_id, url)

    # --- ALERTS series --------------------------------------------------------------------
    def _write_series(self, now: int) -> None:
        if self._ingestor is None:
            return
        rows = alert_series(i for run in self.runs for i in run.instances.values())
        self._written = write_rows(self._ingestor, SOURCE, rows, now, self._written)


def _paused(spec: KpiAlertSpec, now: int) -> bool:
    if spec.active is not None and not spec.active.contains(now):
        return True
    return spec.mute is not None and spec.mute.contains(now)


def _for_ms(spec: KpiAlertSpec) -> int:
    """A KPI's `no_data` counts its `for` in the age of the data, not again as a pending
    time; on a PromQL metric (no age: the series are there or not) `for` is a pending time."""
    return 0 if spec.condition is Condition.NO_DATA and spec.kpi is not None else spec.for_ms


def _value(r: Reading, v: Verdict) -> float:
    """The KPI's value; for no_data the age of the newest input in seconds."""
    if r.age_ms is not None:
        return r.age_ms / 1000
    return math.nan if r.value is None else float(r.value)


def _labels(spec: KpiAlertSpec, kpi: KpiDefinition | None, key: Labels, severity: str) -> Labels:
    out = dict(key)
    out.update(spec.labels)
    if kpi is not None:
        out["kpi"] = kpi.name
    if spec.channels:
        out["channels"] = ",".join(spec.channels)
    out[ALERT_NAME] = spec.name
    out[SEVERITY] = severity
    return tuple(sorted(out.items()))


def _annotations(spec: KpiAlertSpec, notes: dict[str, str]) -> Labels:
    return tuple(sorted({**notes, **dict(spec.annotations)}.items()))


def _resolved(alert: Alert, now: int) -> Alert:
    return replace(alert, state=AlertState.INACTIVE, resolved_at_ms=now)


def benchmark_rules(catalog: Catalog, n: int) -> list[KpiAlertSpec]:
    """`n` rules spread over the catalog's KPIs for benchmarks: in turn a threshold, a change
    against the same hour last week and a no-data rule, each with an explicit line."""
    kinds: list[tuple[Condition, Literal["<", ">", None], float | None]] = [
        (Condition.THRESHOLD, "<", 0.0),
        (Condition.CHANGE, "<", -0.2),
        (Condition.NO_DATA, None, None),
    ]
    names = catalog.names()
    specs = []
    for i in range(n if names else 0):
        condition, op, limit = kinds[i % len(kinds)]
        specs.append(
            KpiAlertSpec(
                name=f"Bench{i}",
                condition=condition,
                source="benchmark",
                kpi=names[i % len(names)],
                op=op,
                limit=limit,
                compare=Baseline.SAME_HOUR_LAST_WEEK,
                severity="warning",
            )
        )
    return specs
