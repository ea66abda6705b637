"""Prometheus rule groups: each group on its interval, its rules in order, as Prometheus does.

The groups run on the rule-group scheduler (schedule.py) with Prometheus's aligned ticks:
multiples of the interval shifted by Prometheus's hash of the group (file and name,
group_hash.py), so groups spread over the interval as they would in Prometheus and restarts
keep the same grid. Groups that are due together are evaluated concurrently.

One evaluation of a group reads through one `SharedReads`: a selector that several of its rules
use is read from storage once. Its recording rules' series, `ALERTS` and `ALERTS_FOR_STATE`
go to the write pipeline in one request at the end of the evaluation, with a stale marker for
each series a rule produced last time but not this time. A rule that reads a series an earlier
rule of the group has just produced has the rows so far written first (evaluator.GroupBatch),
so it sees them as in Prometheus.

Alerting rules run their state machine (rule_alerts.py). At a group's first evaluation after
start, rules with `for` read `ALERTS_FOR_STATE` back (within the outage tolerance) so pending
alerts keep their `activeAt` across a restart. After each pass of the scheduler, firing and
recently resolved alerts of the groups it evaluated go to the alert hub.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from opsmetrics.alerting.alert_state import DEFAULT_OUTAGE_TOLERANCE_MS, restored_active_at
from opsmetrics.alerting.evaluator import (
    Evaluator,
    GroupBatch,
    Selectors,
    default_evaluator,
    expr_selectors,
    vector_rows,
)
from opsmetrics.alerting.group_hash import group_offset_ms as prometheus_offset_ms
from opsmetrics.alerting.model import Alert, AlertHub, AlertState
from opsmetrics.alerting.rule_alerts import AlertingRule, RuleAlert
from opsmetrics.alerting.schedule import AlignedTicks, GroupResult, GroupScheduler
from opsmetrics.catalog.rules import Rule, RuleGroup, RuleType
from opsmetrics.clock import Clock
from opsmetrics.errors import OpsMetricsError, UserError
from opsmetrics.ingest.pipeline import Ingestor
from opsmetrics.model import METRIC_NAME, Labels
from opsmetrics.query.promql.reads import ReadCounts, SharedReads
from opsmetrics.storage.base import Storage
from opsmetrics.storage.lease import Lease
from opsmetrics.telemetry import Telemetry

log = logging.getLogger(__name__)
SOURCE = "rules"


class Health(Enum):
    UNKNOWN = "unknown"
    OK = "ok"
    ERR = "err"


@dataclass(frozen=True, slots=True)
class RuleStatus:
    rule: Rule
    health: Health = Health.UNKNOWN
    last_error: str = ""
    last_evaluation_ms: int | None = None
    evaluation_s: float = 0.0
    #: An alerting rule's pending and firing alerts after that evaluation (copies).
    alerts: tuple[RuleAlert, ...] = ()

    @property
    def state(self) -> AlertState:
        """The most severe state of the rule's alerts (Prometheus's rule `state`)."""
        states = {a.state for a in self.alerts}
        for state in (AlertState.FIRING, AlertState.PENDING):
            if state in states:
                return state
        return AlertState.INACTIVE


@dataclass(frozen=True, slots=True)
class GroupStatus:
    group: RuleGroup
    rules: tuple[RuleStatus, ...]
    last_evaluation_ms: int | None = None
    evaluation_s: float = 0.0
    #: How the last evaluation's selectors were answered: from storage or shared.
    reads: ReadCounts = field(default_factory=ReadCounts)
    #: Write requests the last evaluation made (one, unless a rule read an earlier one's rows).
    writes: int = 0


def group_offset_ms(group: RuleGroup) -> int:
    """Where in its interval the group runs: stable per (file, name), as in Prometheus."""
    return prometheus_offset_ms(group.file, group.name, group.interval_ms)


def group_ticks(group: RuleGroup) -> AlignedTicks:
    return AlignedTicks(group.interval_ms, group_offset_ms(group))


def aligned_at_or_before(group: RuleGroup, t_ms: int) -> int:
    """The group's newest evaluation timestamp that is not after t (Prometheus EvalTimestamp)."""
    return group_ticks(group).tick_at_or_before(t_ms)


class RecordingError(UserError):
    """A recording rule's result cannot be written (limit, duplicate series)."""

    reason = "rule"


@dataclass(slots=True)
class _GroupRun:
    """A group's status; per rule, the series it wrote last time and its alerts."""

    group: RuleGroup
    status: GroupStatus
    previous: list[set[Labels]] = field(default_factory=list)
    alerting: list[AlertingRule | None] = field(default_factory=list)
    restored: bool = False
    #: Per rule, the selectors it reads (when it must see what earlier rules wrote).
    selectors: list[Selectors] = field(default_factory=list)

    @classmethod
    def of(cls, group: RuleGroup) -> _GroupRun:
        status = GroupStatus(group, tuple(RuleStatus(r) for r in group.rules))
        alerting = [
            AlertingRule(r, rule_id(group, r)) if r.type is RuleType.ALERTING else None
            for r in group.rules
        ]
        selectors = [expr_selectors(r.expr) for r in group.rules]
        return cls(group, status, [set() for _ in group.rules], alerting, selectors=selectors)


def rule_id(group: RuleGroup, rule: Rule) -> str:
    return f"{group.file};{group.name};{rule.name}"


class RuleManager:
    """Evaluates every rule group on its schedule; `status()` feeds /api/v1/rules."""

    def __init__(
        self,
        groups: list[RuleGroup],
        storage: Storage,
        ingestor: Ingestor,
        clock: Clock,
        evaluator: Evaluator | None = None,
        hub: AlertHub | None = None,
        outage_tolerance_ms: int = DEFAULT_OUTAGE_TOLERANCE_MS,
        telemetry: Telemetry | None = None,
        lease: Lease | None = None,
        scheduler: GroupScheduler[Any] | None = None,
    ) -> None:
        self._storage = storage
        self._ingestor = ingestor
        self._evaluate = evaluator or default_evaluator()
        self._hub = hub
        self._outage_tolerance_ms = outage_tolerance_ms
        self._runs = [_GroupRun.of(g) for g in groups]
        # The server's scheduler is shared with the KPI alert rules (web/app.py).
        self._scheduler: GroupScheduler[Any] = scheduler or GroupScheduler(
            "opsmetrics-rules", clock, telemetry=telemetry, lease=lease
        )
        for run in self._runs:
            key = f"{run.group.file};{run.group.name}"
            ticks = group_ticks(run.group)
            self._scheduler.add(
                run, ticks, run.group.name, key, self._evaluate_group, self._after_pass
            )

    # --- running --------------------------------------------------------------------------
    async def start(self) -> None:
        await self._scheduler.start()

    async def stop(self) -> None:
        await self._scheduler.stop()

    def evaluate_due(self) -> int:
        """Evaluate every group whose next tick has come; returns how many were evaluated."""
        return len(self._scheduler.evaluate_due())

    def evaluate_at(self, at_ms: int) -> None:
        """Evaluate every group, in order, at exactly `at_ms` (rule unit tests)."""
        self._scheduler.evaluate_at(at_ms)

    def status(self) -> list[GroupStatus]:
        return [r.status for r in self._runs]

    def active_alerts(self) -> list[Alert]:
        """AlertSource: pending and firing alerts of every alerting rule."""
        with self._scheduler.lock:
            return [a for run in self._runs for s in run.alerting if s for a in s.active_alerts()]

    # --- one group ------------------------------------------------------------------------
    def _evaluate_group(self, run: _GroupRun, at_ms: int) -> GroupResult:
        started = time.perf_counter()
        reads = SharedReads(self._storage)
        group = _Evaluation(reads, GroupBatch(self._ingestor, SOURCE, reads))
        statuses = [
            self._evaluate_rule(run, i, rule_status, at_ms, group)
            for i, rule_status in enumerate(run.status.rules)
        ]
        statuses = self._flush(run, group.batch, statuses)
        run.restored = True
        seconds = time.perf_counter() - started
        writes = group.batch.requests
        run.status = GroupStatus(run.group, tuple(statuses), at_ms, seconds, reads.counts, writes)
        return GroupResult(
            run.status.evaluation_s,
            samples=sum(
                len(p) for p, r in zip(run.previous, statuses, strict=True) if r.health is Health.OK
            ),
            failures=sum(1 for r in statuses if r.last_error),
            rules=len(statuses),
        )

    def _flush(
        self, run: _GroupRun, batch: GroupBatch, statuses: list[RuleStatus]
    ) -> list[RuleStatus]:
        """Write the group's rows; if that fails, every rule with rows in it failed."""
        try:
            batch.flush()
        except OpsMetricsError as exc:
            return [
                replace(s, health=Health.ERR, last_error=exc.message) if p else s
                for s, p in zip(statuses, run.previous, strict=True)
            ]
        return statuses

    def _after_pass(self, runs: Sequence[_GroupRun], at_ms: int) -> None:
        for run in runs:
            self._send(run, run.status.last_evaluation_ms or at_ms)

    def _send(self, run: _GroupRun, at_ms: int) -> None:
        if self._hub is None:
            return
        alerts = [a for state in run.alerting if state for a in state.to_send(at_ms)]
        try:
            self._hub.send(alerts, at_ms)
        except Exception:  # a sink's failure must not stop evaluation
            log.exception("sending alerts of group %s failed", run.group.name)

    def _evaluate_rule(
        self, run: _GroupRun, i: int, status: RuleStatus, at_ms: int, group: _Evaluation
    ) -> RuleStatus:
        started = time.perf_counter()
        query_ms = at_ms - run.group.query_offset_ms
        error = ""
        try:
            group.batch.before_reading(run.selectors[i])
            run.previous[i] = self._run_rule(run, i, at_ms, query_ms, group)
        except OpsMetricsError as exc:
            error = exc.message
        except Exception as exc:  # an engine bug must not stop the other rules
            log.exception("rule %s failed", status.rule.name)
            error = str(exc)
        alerting = run.alerting[i]
        return replace(
            status,
            alerts=tuple(replace(a) for a in alerting.live()) if alerting else (),
            health=Health.ERR if error else Health.OK,
            last_error=error,
            last_evaluation_ms=at_ms,
            evaluation_s=time.perf_counter() - started,
        )

    def _run_rule(
        self, run: _GroupRun, i: int, at_ms: int, query_ms: int, group: _Evaluation
    ) -> set[Labels]:
        rule = run.group.rules[i]
        result = vector_rows(self._evaluate(group.reads, rule.expr, query_ms))
        alerting = run.alerting[i]
        if alerting is None:
            rows = recorded_rows(rule, result)
            if run.group.limit and len(rows) > run.group.limit:
                raise RecordingError(
                    f"exceeded limit of {run.group.limit} with {len(rows)} series; raise the "
                    "group's `limit` or aggregate more"
                )
            return group.batch.add(rows, query_ms, run.previous[i])
        restored = None
        if not run.restored and rule.for_ms:
            tolerance = self._outage_tolerance_ms
            restored = restored_active_at(self._storage, rule.name, at_ms, tolerance)
        alerting.evaluate(result, at_ms, run.group.limit, restored)
        return group.batch.add(alerting.series(), query_ms, run.previous[i])


@dataclass(frozen=True, slots=True)
class _Evaluation:
    """One evaluation of a group: the reads its rules share and the rows they produce."""

    reads: SharedReads
    batch: GroupBatch


def recorded_rows(rule: Rule, rows: list[tuple[Labels, float]]) -> dict[Labels, float]:
    """Name each row `rule.name` and apply the rule's labels (an empty value removes one)."""
    out: dict[Labels, float] = {}
    for labels, value in rows:
        named = {**dict(labels), **rule.labels, METRIC_NAME: rule.name}
        key = tuple(sorted((k, v) for k, v in named.items() if v != ""))
        if key in out:
            raise RecordingError(
                "vector contains metrics with the same labelset after applying rule labels; "
                "aggregate so each series is unique, or keep the label that tells them apart"
            )
        out[key] = value
    return out
