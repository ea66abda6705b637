"""The one rule-group scheduler: Prometheus rule groups and KPI alert rules run on it.

Each group has its own interval and its own ticks. `AlignedTicks` are Prometheus's: evaluation
timestamps on a grid of the interval shifted by an offset (a hash of the group), so groups
spread over the interval and a restart keeps the same grid; the first evaluation is at the
first tick after start. `ImmediateTicks` evaluate at the moment a group is due, first at once.
When evaluations fall behind, missed ticks are skipped and counted
(`prometheus_rule_group_iterations_missed_total`). A pass evaluates the groups that are due
concurrently, at most `concurrency` at a time on worker threads (DuckDB and numpy release the
GIL while they read and compute); each group runs its rules in order. `evaluate_at` (rule unit
tests) evaluates every group in order, one after another.

The background loop looks at the injectable clock at least once a second, so a clock that jumps
(a fake clock in tests, a suspended machine) is noticed promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from opsmetrics.clock import Clock
from opsmetrics.storage.lease import Lease
from opsmetrics.telemetry import Telemetry

log = logging.getLogger(__name__)
#: The loop looks at the clock at least this often (seconds).
MAX_SLEEP_S = 1.0
#: Groups evaluated at the same time, by default.
DEFAULT_CONCURRENCY = 4
G = TypeVar("G")


class Ticks(Protocol):
    """When a group runs."""

    @property
    def interval_ms(self) -> int: ...

    def first_ms(self, now_ms: int) -> int:
        """When the group is first due, for a scheduler started at `now_ms`."""
        ...

    def tick_at_or_before(self, now_ms: int) -> int:
        """The evaluation timestamp of a group that is due at `now_ms`."""
        ...


@dataclass(frozen=True, slots=True)
class AlignedTicks:
    """Prometheus's schedule: multiples of the interval shifted by `offset_ms`."""

    interval_ms: int
    offset_ms: int

    def first_ms(self, now_ms: int) -> int:
        return self.tick_at_or_before(now_ms) + self.interval_ms

    def tick_at_or_before(self, now_ms: int) -> int:
        """The newest tick that is not after now (Prometheus's EvalTimestamp)."""
        shifted = now_ms - self.offset_ms
        return shifted // self.interval_ms * self.interval_ms + self.offset_ms


@dataclass(frozen=True, slots=True)
class ImmediateTicks:
    """Due at once, then `interval_ms` after each evaluation, evaluated when noticed."""

    interval_ms: int

    def first_ms(self, now_ms: int) -> int:
        return now_ms

    def tick_at_or_before(self, now_ms: int) -> int:
        return now_ms


@dataclass(frozen=True, slots=True)
class GroupResult:
    """How one evaluation of a group went."""

    seconds: float
    #: Samples its rules produced (Prometheus's last_evaluation_samples).
    samples: int = 0
    #: Rules that failed.
    failures: int = 0
    #: Rules evaluated.
    rules: int = 0


@dataclass(frozen=True, slots=True)
class _Owner(Generic[G]):
    """Who evaluates a group, and who hears about the pass (a rule manager)."""

    evaluate: Callable[[G, int], GroupResult]
    after_pass: Callable[[Sequence[G], int], None] | None


@dataclass(slots=True)
class _Slot(Generic[G]):
    group: G
    ticks: Ticks
    name: str
    key: str
    next_ms: int
    owner: _Owner[G]


class GroupScheduler(Generic[G]):
    """Evaluates groups on their ticks with `evaluate(group, at_ms)`; after each pass that
    evaluated something, `after_pass(groups, now_ms)`. `lock` is held throughout a pass.

    Several rule managers can share one scheduler (the server's Prometheus rule groups and KPI
    alert rules do): each `add`s its groups with its own `evaluate` and `after_pass`, every
    pass evaluates the due groups of all of them on the same workers, and each manager's
    `after_pass` hears about its own groups only.
    """

    def __init__(
        self,
        name: str,
        clock: Clock,
        evaluate: Callable[[G, int], GroupResult] | None = None,
        after_pass: Callable[[Sequence[G], int], None] | None = None,
        telemetry: Telemetry | None = None,
        lease: Lease | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._name = name
        self._concurrency = max(1, concurrency)
        self._clock = clock
        self._lease = lease
        self._default = _Owner(evaluate, after_pass) if evaluate is not None else None
        self._telemetry = telemetry
        self._slots: list[_Slot[G]] = []
        self.lock = threading.RLock()  # a sink may ask for active alerts while we send
        self._loop = DueLoop(name, clock, self.evaluate_due, self.next_due_ms)

    def add(
        self,
        group: G,
        ticks: Ticks,
        name: str,
        key: str,
        evaluate: Callable[[G, int], GroupResult] | None = None,
        after_pass: Callable[[Sequence[G], int], None] | None = None,
    ) -> None:
        """Schedule `group`; `name` labels opsmetrics' metrics, `key` Prometheus's. Without
        `evaluate`, the scheduler's own `evaluate` and `after_pass` run it."""
        owner = _Owner(evaluate, after_pass) if evaluate is not None else self._default
        if owner is None:
            raise ValueError(f"{self._name}: group {name!r} added without an evaluate function")
        first = ticks.first_ms(self._clock.now_ms())
        self._slots.append(_Slot(group, ticks, name, key, first, owner))

    def next_due_ms(self) -> int:
        return min((s.next_ms for s in self._slots), default=self._clock.now_ms() + 1000)

    async def start(self) -> None:
        if self._slots:
            await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def evaluate_due(self) -> list[G]:
        """Evaluate every group whose next tick has come; returns them."""
        with self.lock:
            now = self._clock.now_ms()
            due = [s for s in self._slots if s.next_ms <= now]
            if due and self._lease is not None and not self._lease.held():
                for slot in due:  # another node evaluates: keep the schedule, skip the work
                    slot.next_ms = slot.ticks.tick_at_or_before(now) + slot.ticks.interval_ms
                return []
            return self._pass(due, now)

    def evaluate_all(self) -> list[G]:
        """Evaluate every group now as if it were due (benchmarks, tests)."""
        with self.lock:
            return self._pass(self._slots, self._clock.now_ms())

    def evaluate_at(self, at_ms: int) -> list[G]:
        """Evaluate every group at exactly `at_ms`, leaving the schedule alone (rule tests)."""
        with self.lock:
            for slot in self._slots:
                self._run(slot, at_ms, missed=0)
            return self._finish(self._slots, at_ms)

    def _pass(self, due: list[_Slot[G]], now_ms: int) -> list[G]:
        runs = []
        for slot in due:
            at = slot.ticks.tick_at_or_before(now_ms)
            missed = max(0, (at - slot.next_ms) // slot.ticks.interval_ms)
            slot.next_ms = at + slot.ticks.interval_ms
            runs.append((slot, at, missed))
        workers = min(self._concurrency, len(runs))
        if workers <= 1:
            for run in runs:
                self._run(*run)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix=self._name) as pool:
                for done in [pool.submit(self._run, *run) for run in runs]:
                    done.result()
        return self._finish(due, now_ms)

    def _run(self, slot: _Slot[G], at_ms: int, missed: int) -> None:
        result = slot.owner.evaluate(slot.group, at_ms)
        if self._telemetry is not None:
            self._telemetry.rule_group_evaluated(
                slot.name,
                slot.key,
                seconds=result.seconds,
                samples=result.samples,
                failures=result.failures,
                missed=missed,
                rules=result.rules,
                interval_s=slot.ticks.interval_ms / 1000,
            )

    def _finish(self, slots: list[_Slot[G]], at_ms: int) -> list[G]:
        # Bound methods are equal when they are the same manager's: one call per manager.
        by_manager: dict[Callable[[Sequence[G], int], None], list[G]] = {}
        for s in slots:
            if s.owner.after_pass is not None:
                by_manager.setdefault(s.owner.after_pass, []).append(s.group)
        for after_pass, groups in by_manager.items():
            after_pass(groups, at_ms)
        return [s.group for s in slots]


class DueLoop:
    """Runs `evaluate_due` in a worker thread whenever `next_due_ms` has come."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        evaluate_due: Callable[[], object],
        next_due_ms: Callable[[], int],
    ) -> None:
        self._name = name
        self._clock = clock
        self._evaluate_due = evaluate_due
        self._next_due_ms = next_due_ms
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._evaluate_due)
            except Exception:  # one bad pass must not stop the loop
                log.exception("%s: evaluation failed", self._name)
            await asyncio.sleep(self.sleep_s())

    def sleep_s(self) -> float:
        wait_ms = self._next_due_ms() - self._clock.now_ms()
        return min(max(wait_ms / 1000, 0.01), MAX_SLEEP_S)
