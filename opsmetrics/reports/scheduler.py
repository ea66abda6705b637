"""The report scheduler: claims each report's cron slots on the node holding the alerting lease.

Each pass (at least once a second, on the injected clock) looks at the reports whose next slot
has come. A slot at most GRACE_MS old runs as scheduled; older ones were missed (the server was
down, or another node held the lease and died) and run by the report's `catch_up` policy,
marked delayed: `latest` (the default) runs only the newest missed slot, and none when a slot
is on time; `all` runs each (at most MAX_CATCH_UP); `none` skips them. Slots older than
`catch_up.max_age`, or from before the report was first scheduled, are never run. Then the
pass retries the runs whose channels (or rendering) are due again.

When this node takes the lease (at start, or from another node) it first resends every run
left unfinished, whatever its next attempt says: the process that was sending it is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from opsmetrics.alerting.model import Alert, AlertHub, AlertState
from opsmetrics.alerting.schedule import DueLoop
from opsmetrics.catalog.reports import ReportSpec, next_slots
from opsmetrics.clock import Clock
from opsmetrics.reports.runs import ReportRunner
from opsmetrics.storage.base import StateStore
from opsmetrics.storage.lease import Lease
from opsmetrics.storage.report_records import ReportRun, RunStatus, Trigger

log = logging.getLogger(__name__)
GRACE_MS = 5 * 60_000
MAX_CATCH_UP = 50
#: Slots looked at in one pass of one report (an every-minute report over a day's max_age).
MAX_SLOTS = 5_000
#: Slots read from the schedule at a time: most passes need one or two, not MAX_SLOTS.
SLOT_BATCH = 64
#: Reports processed at once when several are due: their PDFs are made in worker processes
#: (reports/pdf_workers.py) while the others read, draw and send.
RUN_THREADS = 4
FAILING_ALERT = "OpsmetricsReportFailing"
FAR_FUTURE_MS = 2**62


def due_slots(spec: ReportSpec, after_ms: int, now_ms: int) -> list[tuple[int, bool]]:
    """(slot, delayed) to run for slots in (after_ms, now_ms], by the catch-up policy."""
    start = max(after_ms, now_ms - spec.catch_up.max_age_ms - 1)
    slots = slots_until(spec, start, now_ms)
    on_time = [(s, False) for s in slots if now_ms - s <= GRACE_MS]
    late = [(s, True) for s in slots if now_ms - s > GRACE_MS]
    policy = spec.catch_up.policy
    if policy == "none" or (policy == "latest" and on_time):
        return on_time
    if policy == "latest":
        return late[-1:]
    return late[-MAX_CATCH_UP:] + on_time


def slots_until(spec: ReportSpec, after_ms: int, now_ms: int) -> list[int]:
    """The first MAX_SLOTS slots in (after_ms, now_ms], read SLOT_BATCH at a time until one
    passes `now_ms` (croniter costs per slot read: a daily report's MAX_SLOTS is 13 years)."""
    out: list[int] = []
    while len(out) < MAX_SLOTS:
        batch = next_slots(spec, after_ms, SLOT_BATCH)
        out += [s for s in batch if s <= now_ms]
        if len(batch) < SLOT_BATCH or batch[-1] > now_ms:
            break
        after_ms = batch[-1]
    return out[:MAX_SLOTS]


class ReportScheduler:
    def __init__(
        self,
        runner: ReportRunner,
        store: StateStore,
        clock: Clock,
        lease: Lease,
        alerts: ReportFailureAlerts,
    ) -> None:
        self._runner = runner
        self._store = store
        self._clock = clock
        self._lease = lease
        self.alerts = alerts
        self._after: dict[str, int] = {}  # slots up to this are handled
        self._next: dict[str, int] = {}
        self._gained: int | None = None
        self._loop = DueLoop("report scheduler", clock, self.tick, self.next_due_ms)

    @property
    def runner(self) -> ReportRunner:
        return self._runner

    @property
    def reports(self) -> list[ReportSpec]:
        return [s for s in self._runner.reports if s.enabled]

    async def start(self) -> None:
        if self.reports:
            await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def next_due_ms(self) -> int:
        return min(self._next.values(), default=self._clock.now_ms() + 1000)

    def tick(self) -> None:
        """One pass: run what is due; retry what failed."""
        now = self._clock.now_ms()
        if not self._lease.held():
            self._gained = None  # another node schedules; look again when we get the lease
            self._after = {s.name: now for s in self.reports}
            self._next = {s.name: now + 1000 for s in self.reports}
            return
        if self._gained != self._lease.gained:
            self._gained = self._lease.gained
            self._resume(now)
        due = [s for s in self.reports if self._next.get(s.name, 0) <= now]
        finished = self._run_all(due, now)
        for run in self._store.unfinished_report_runs(now):
            finished.append(self._runner.process(run))
        self.alerts.update([r.report for r in finished if r.status is not RunStatus.RUNNING])

    def _resume(self, now: int) -> None:
        names = [s.name for s in self.reports]
        last = self._store.latest_report_runs(names, Trigger.SCHEDULE)
        for spec in self.reports:
            since = self._store.report_schedule_since(spec.name, now)
            ran = last[spec.name].slot_ms if spec.name in last else since
            self._after[spec.name] = max(since, ran)
            self._next[spec.name] = 0
        for run in self._store.unfinished_report_runs(FAR_FUTURE_MS):
            self._runner.process(run, force=True)
        self.alerts.update(names)

    def _run_all(self, due: list[ReportSpec], now: int) -> list[ReportRun]:
        """Each due report's slots, RUN_THREADS reports at a time (one report's in order)."""
        slots = {s.name: due_slots(s, self._after.get(s.name, now), now) for s in due}
        if len(due) > 1:
            threads = min(RUN_THREADS, len(due))
            with ThreadPoolExecutor(threads, thread_name_prefix="report-run") as pool:
                done = list(pool.map(lambda s: self._run_due(s, slots[s.name]), due))
        else:
            done = [self._run_due(s, slots[s.name]) for s in due]
        for spec in due:
            self._after[spec.name] = now
            self._next[spec.name] = next(iter(next_slots(spec, now, 1)), FAR_FUTURE_MS)
        return [run for runs in done for run in runs]

    def _run_due(self, spec: ReportSpec, slots: list[tuple[int, bool]]) -> list[ReportRun]:
        out = []
        for slot, delayed in slots:
            run = self._runner.claim(spec, slot, Trigger.SCHEDULE, delayed=delayed)
            if run is not None:
                log.info("report %s: slot %s claimed%s", spec.name, slot,
                         " (delayed)" if delayed else "")  # fmt: skip
                out.append(self._runner.process(run))
        return out


class ReportFailureAlerts:
    """`OpsmetricsReportFailing{report=…}` while a report's last `after` runs all failed;
    an alert source of the hub, so the alert routing of notify.yaml delivers it."""

    def __init__(self, store: StateStore, clock: Clock, hub: AlertHub, after: int) -> None:
        self._store = store
        self._clock = clock
        self._hub = hub
        self._after = max(after, 1)
        self._firing: dict[str, Alert] = {}

    def active_alerts(self) -> list[Alert]:
        return list(self._firing.values())

    def update(self, reports: Sequence[str]) -> None:
        now = self._clock.now_ms()
        changed = [a for name in dict.fromkeys(reports) if (a := self._check(name, now))]
        if changed:
            self._hub.send(changed, now)

    def _check(self, name: str, now: int) -> Alert | None:
        runs = [r for r in self._store.report_runs(name, self._after + 5)
                if r.status is not RunStatus.RUNNING][: self._after]  # fmt: skip
        failing = len(runs) == self._after and all(r.status is RunStatus.FAILED for r in runs)
        if failing and name not in self._firing:
            self._firing[name] = self._alert(name, runs, now)
            return self._firing[name]
        if not failing and name in self._firing:
            old = self._firing.pop(name)
            return Alert(old.labels, old.annotations, AlertState.INACTIVE, 0.0,
                         old.active_at_ms, old.fired_at_ms, now, old.source, old.rule_id,
                         old.generator_url)  # fmt: skip
        return None

    def _alert(self, name: str, runs: Sequence[ReportRun], now: int) -> Alert:
        labels = (("alertname", FAILING_ALERT), ("report", name), ("severity", "warning"))
        annotations = (
            ("description", runs[0].error or "see the report's runs"),
            ("summary", f"Report {name} failed its last {len(runs)} runs"),
        )
        return Alert(labels, annotations, AlertState.FIRING, float(len(runs)),
                     runs[-1].claimed_ms, now, None, "report", f"report:{name}",
                     f"/reports?report={name}")  # fmt: skip
