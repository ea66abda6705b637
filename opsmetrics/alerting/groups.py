"""The rule-group scheduler: each group on its interval, its rules in order, as Prometheus does.

A group is evaluated at aligned timestamps: multiples of its interval shifted by a hash of the
group (file and name), so groups spread over the interval and restarts keep the same grid.
When evaluations fall behind, missed ticks are skipped. Each recording rule's result is written
through the write pipeline before the next rule runs, so later rules can read it. A series a
rule produced last time but not this time gets a stale marker.

Alerting rules run their state machine (rule_alerts.py) and write `ALERTS` and
`ALERTS_FOR_STATE` the same way. At a group's first evaluation after start, rules with `for`
read `ALERTS_FOR_STATE` back (within the outage tolerance) so pending alerts keep their
`activeAt` across a restart. After each group evaluation, firing and recently resolved alerts
go to the alert hub.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from opsmetrics.alerting.evaluator import Evaluator, default_evaluator, vector_rows
from opsmetrics.alerting.model import ALERT_NAME, Alert, AlertHub, AlertState
from opsmetrics.alerting.rule_alerts import FOR_STATE_METRIC, AlertingRule, RuleAlert
from opsmetrics.alerting.schedule import DueLoop
from opsmetrics.catalog.rules import Rule, RuleGroup, RuleType
from opsmetrics.clock import Clock
from opsmetrics.errors import OpsMetricsError, UserError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import Ingestor, WriteRequest
from opsmetrics.model import (
    METRIC_NAME,
    STALE_NAN,
    Labels,
    Matcher,
    MatchOp,
    SampleBatchBuilder,
    is_stale,
)
from opsmetrics.storage.base import Storage
from opsmetrics.telemetry import Telemetry

log = logging.getLogger(__name__)
SOURCE = "rules"
#: How far back a restart looks for ALERTS_FOR_STATE (Settings.alert_outage_tolerance_ms).
DEFAULT_OUTAGE_TOLERANCE_MS = 3_600_000


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


def group_offset_ms(group: RuleGroup) -> int:
    """Where in its interval the group runs: stable per (file, name)."""
    digest = hashlib.blake2b(f"{group.file};{group.name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % group.interval_ms


def aligned_at_or_before(group: RuleGroup, t_ms: int) -> int:
    """The group's newest evaluation timestamp that is not after t (Prometheus EvalTimestamp)."""
    offset = group_offset_ms(group)
    return (t_ms - offset) // group.interval_ms * group.interval_ms + offset


class RecordingError(UserError):
    """A recording rule's result cannot be written (limit, duplicate series)."""

    reason = "rule"


@dataclass(slots=True)
class _GroupRun:
    """A group's schedule; per rule, the series it wrote last time and its alerts."""

    group: RuleGroup
    next_ms: int
    status: GroupStatus
    previous: list[set[Labels]] = field(default_factory=list)
    alerting: list[AlertingRule | None] = field(default_factory=list)
    restored: bool = False


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
    ) -> None:
        self._storage = storage
        self._telemetry = telemetry
        self._ingestor = ingestor
        self._clock = clock
        self._evaluate = evaluator or default_evaluator()
        self._hub = hub
        self._outage_tolerance_ms = outage_tolerance_ms
        now = clock.now_ms()
        self._runs = [self._new_run(g, now) for g in groups]
        self._lock = threading.RLock()  # a sink may ask for active alerts while we send
        self._loop = DueLoop("opsmetrics-rules", clock, self.evaluate_due, self._next_due_ms)

    @staticmethod
    def _new_run(group: RuleGroup, now_ms: int) -> _GroupRun:
        # As Prometheus: the first evaluation is at the first aligned tick after start.
        first = aligned_at_or_before(group, now_ms) + group.interval_ms
        status = GroupStatus(group, tuple(RuleStatus(r) for r in group.rules))
        alerting = [
            AlertingRule(r, rule_id(group, r)) if r.type is RuleType.ALERTING else None
            for r in group.rules
        ]
        return _GroupRun(group, first, status, [set() for _ in group.rules], alerting)

    # --- running --------------------------------------------------------------------------
    def _next_due_ms(self) -> int:
        return min(r.next_ms for r in self._runs)

    async def start(self) -> None:
        if self._runs:
            await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def evaluate_due(self) -> int:
        """Evaluate every group whose next tick has come; returns how many were evaluated."""
        with self._lock:
            now = self._clock.now_ms()
            due = [r for r in self._runs if r.next_ms <= now]
            for run in due:
                at = aligned_at_or_before(run.group, now)  # skips missed ticks
                run.next_ms = at + run.group.interval_ms
                self._evaluate_group(run, at)
            return len(due)

    def evaluate_at(self, at_ms: int) -> None:
        """Evaluate every group, in order, at exactly `at_ms` (rule unit tests)."""
        with self._lock:
            for run in self._runs:
                self._evaluate_group(run, at_ms)

    def status(self) -> list[GroupStatus]:
        return [r.status for r in self._runs]

    def active_alerts(self) -> list[Alert]:
        """AlertSource: pending and firing alerts of every alerting rule."""
        with self._lock:
            return [a for run in self._runs for s in run.alerting if s for a in s.active_alerts()]

    # --- one group ------------------------------------------------------------------------
    def _evaluate_group(self, run: _GroupRun, at_ms: int) -> None:
        started = time.perf_counter()
        statuses = []
        for i, rule_status in enumerate(run.status.rules):
            statuses.append(self._evaluate_rule(run, i, rule_status, at_ms))
        run.restored = True
        run.status = GroupStatus(run.group, tuple(statuses), at_ms, time.perf_counter() - started)
        self._count(run.status)
        self._send(run, at_ms)

    def _count(self, status: GroupStatus) -> None:
        if self._telemetry is None:
            return
        name = status.group.name
        self._telemetry.rule_evaluation_seconds.labels(name).observe(status.evaluation_s)
        failed = sum(1 for r in status.rules if r.last_error)
        if failed:
            self._telemetry.rule_evaluation_failures.labels(name).inc(failed)

    def _send(self, run: _GroupRun, at_ms: int) -> None:
        if self._hub is None:
            return
        alerts = [a for state in run.alerting if state for a in state.to_send(at_ms)]
        try:
            self._hub.send(alerts, at_ms)
        except Exception:  # a sink's failure must not stop evaluation
            log.exception("sending alerts of group %s failed", run.group.name)

    def _evaluate_rule(self, run: _GroupRun, i: int, status: RuleStatus, at_ms: int) -> RuleStatus:
        started = time.perf_counter()
        query_ms = at_ms - run.group.query_offset_ms
        error = ""
        try:
            run.previous[i] = self._run_rule(run, i, at_ms, query_ms)
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

    def _run_rule(self, run: _GroupRun, i: int, at_ms: int, query_ms: int) -> set[Labels]:
        rule = run.group.rules[i]
        result = vector_rows(self._evaluate(self._storage, rule.expr, query_ms))
        alerting = run.alerting[i]
        if alerting is None:
            return self._record(run, rule, query_ms, result, run.previous[i])
        restored = None
        if not run.restored and rule.for_ms:
            restored = self._for_state(rule, at_ms)
        alerting.evaluate(result, at_ms, run.group.limit, restored)
        return self._write(alerting.series(), query_ms, run.previous[i])

    def _for_state(self, rule: Rule, at_ms: int) -> dict[Labels, int]:
        """activeAt (ms) per alert label set from the newest ALERTS_FOR_STATE samples."""
        matchers = [
            Matcher.of(METRIC_NAME, MatchOp.EQ, FOR_STATE_METRIC),
            Matcher.of(ALERT_NAME, MatchOp.EQ, rule.name),
        ]
        series = self._storage.select_series(matchers)
        if not series:
            return {}
        rows = self._storage.read_samples(
            [s.id for s in series], at_ms - self._outage_tolerance_ms, at_ms
        )
        # Rows are sorted by (series, ts): a series' newest sample is its last row.
        last = np.flatnonzero(np.diff(rows.series_ids, append=np.int64(-1)) != 0)
        live = last[~is_stale(rows.values[last])]
        newest = dict(zip(rows.series_ids[live].tolist(), rows.values[live].tolist(), strict=True))
        labels_of = {s.id: tuple(p for p in s.labels if p[0] != METRIC_NAME) for s in series}
        return {labels_of[sid]: int(value) * 1000 for sid, value in newest.items()}

    def _record(
        self,
        run: _GroupRun,
        rule: Rule,
        at_ms: int,
        result: list[tuple[Labels, float]],
        previous: set[Labels],
    ) -> set[Labels]:
        """Name and write the rule's series; stale-mark the ones that went away."""
        rows = recorded_rows(rule, result)
        if run.group.limit and len(rows) > run.group.limit:
            raise RecordingError(
                f"exceeded limit of {run.group.limit} with {len(rows)} series; raise the "
                "group's `limit` or aggregate more"
            )
        return self._write(rows, at_ms, previous)

    def _write(self, rows: dict[Labels, float], at_ms: int, previous: set[Labels]) -> set[Labels]:
        builder = SampleBatchBuilder()
        for labels, value in rows.items():
            builder.add(labels, at_ms, value)
        for labels in previous - rows.keys():
            builder.add(labels, at_ms, STALE_NAN)
        if len(builder):
            request = WriteRequest(SOURCE, samples=DecodedSamples(builder.build()))
            self._ingestor.submit(request).result()
        return set(rows)


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
