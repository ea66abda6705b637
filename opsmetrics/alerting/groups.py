"""The rule-group scheduler: each group on its interval, its rules in order, as Prometheus does.

A group is evaluated at aligned timestamps: multiples of its interval shifted by a hash of the
group (file and name), so groups spread over the interval and restarts keep the same grid.
When evaluations fall behind, missed ticks are skipped. Each recording rule's result is written
through the write pipeline before the next rule runs, so later rules can read it. A series a
rule produced last time but not this time gets a stale marker.

Alerting rules are kept for the API; their evaluation belongs to the alerting state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from enum import Enum

from opsmetrics.alerting.evaluator import Evaluator, default_evaluator, vector_rows
from opsmetrics.catalog.rules import Rule, RuleGroup, RuleType
from opsmetrics.clock import Clock
from opsmetrics.errors import OpsMetricsError, UserError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import Ingestor, WriteRequest
from opsmetrics.model import METRIC_NAME, STALE_NAN, Labels, SampleBatchBuilder
from opsmetrics.storage.base import Storage

log = logging.getLogger(__name__)
SOURCE = "rules"
#: The scheduler looks at the clock at least this often (seconds), so a moved clock is seen.
MAX_SLEEP_S = 1.0


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
    """A group's schedule and, per recording rule, the series it wrote last time."""

    group: RuleGroup
    next_ms: int
    status: GroupStatus
    previous: list[set[Labels]] = field(default_factory=list)


class RuleManager:
    """Evaluates every rule group on its schedule; `status()` feeds /api/v1/rules."""

    def __init__(
        self,
        groups: list[RuleGroup],
        storage: Storage,
        ingestor: Ingestor,
        clock: Clock,
        evaluator: Evaluator | None = None,
    ) -> None:
        self._storage = storage
        self._ingestor = ingestor
        self._clock = clock
        self._evaluate = evaluator or default_evaluator()
        now = clock.now_ms()
        self._runs = [self._new_run(g, now) for g in groups]
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _new_run(group: RuleGroup, now_ms: int) -> _GroupRun:
        # As Prometheus: the first evaluation is at the first aligned tick after start.
        first = aligned_at_or_before(group, now_ms) + group.interval_ms
        status = GroupStatus(group, tuple(RuleStatus(r) for r in group.rules))
        return _GroupRun(group, first, status, [set() for _ in group.rules])

    # --- running --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._runs and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="opsmetrics-rules")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.evaluate_due)
            except Exception:
                log.exception("rule evaluation failed")
            await asyncio.sleep(self._sleep_s())

    def _sleep_s(self) -> float:
        wait_ms = min(r.next_ms for r in self._runs) - self._clock.now_ms()
        return min(max(wait_ms / 1000, 0.01), MAX_SLEEP_S)

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

    def status(self) -> list[GroupStatus]:
        return [r.status for r in self._runs]

    # --- one group ------------------------------------------------------------------------
    def _evaluate_group(self, run: _GroupRun, at_ms: int) -> None:
        started = time.perf_counter()
        statuses = []
        for i, rule_status in enumerate(run.status.rules):
            statuses.append(self._evaluate_rule(run, i, rule_status, at_ms))
        run.status = GroupStatus(run.group, tuple(statuses), at_ms, time.perf_counter() - started)

    def _evaluate_rule(self, run: _GroupRun, i: int, status: RuleStatus, at_ms: int) -> RuleStatus:
        if status.rule.type is not RuleType.RECORDING:
            return status
        started = time.perf_counter()
        query_ms = at_ms - run.group.query_offset_ms
        try:
            written = self._record(run, status.rule, query_ms, run.previous[i])
        except OpsMetricsError as exc:
            return self._failed(status, exc.message, at_ms, started)
        except Exception as exc:  # an engine bug must not stop the other rules
            log.exception("rule %s failed", status.rule.name)
            return self._failed(status, str(exc), at_ms, started)
        run.previous[i] = written
        return replace(
            status,
            health=Health.OK,
            last_error="",
            last_evaluation_ms=at_ms,
            evaluation_s=time.perf_counter() - started,
        )

    @staticmethod
    def _failed(status: RuleStatus, message: str, at_ms: int, started: float) -> RuleStatus:
        return replace(
            status,
            health=Health.ERR,
            last_error=message,
            last_evaluation_ms=at_ms,
            evaluation_s=time.perf_counter() - started,
        )

    def _record(self, run: _GroupRun, rule: Rule, at_ms: int, previous: set[Labels]) -> set[Labels]:
        """Evaluate, name and write the rule's series; stale-mark the ones that went away."""
        rows = recorded_rows(rule, vector_rows(self._evaluate(self._storage, rule.expr, at_ms)))
        if run.group.limit and len(rows) > run.group.limit:
            raise RecordingError(
                f"exceeded limit of {run.group.limit} with {len(rows)} series; raise the "
                "group's `limit` or aggregate more"
            )
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
