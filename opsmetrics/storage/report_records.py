"""The delivery log of scheduled reports (reports/runs.py), and the store protocol that holds it.

A run is one report for one slot: `(report, slot_ms, trigger)` is its key, and claiming it is
one insert that fails if the key is taken, so two nodes, or a process restarted after a crash,
never both run the same slot. Each run has one delivery row per channel; a channel marked
`sent` is never sent again.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Trigger(enum.Enum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


class DeliveryStatus(enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    #: Not sent: the channel's URL or secret comes from an environment variable that is unset
    #: (as alert notifications skip such a channel).
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        return self in (DeliveryStatus.SENT, DeliveryStatus.SKIPPED)


class RunStatus(enum.Enum):
    #: Claimed; rendering or channels not finished yet.
    RUNNING = "running"
    #: Every channel sent (or the report has none).
    SENT = "sent"
    #: Rendering or a channel failed for good.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ReportRun:
    run_id: str
    report: str
    slot_ms: int
    trigger: Trigger
    claimed_ms: int
    claimed_by: str
    delayed: bool = False
    status: RunStatus = RunStatus.RUNNING
    finished_ms: int | None = None
    sha256: str = ""
    #: What failed last ("render: …", "email: …"); empty when nothing did.
    error: str = ""
    render_attempts: int = 0
    #: When rendering is tried again after it failed; None when it need not be.
    next_attempt_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ReportDelivery:
    run_id: str
    channel: str
    #: Email addresses (email channels); empty for Slack and webhooks.
    recipients: tuple[str, ...] = ()
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    error: str = ""
    #: The email Message-ID or the webhook Idempotency-Key sent, the same on every attempt.
    message_id: str = ""
    #: When the channel is (re)tried; None once it is sent or has given up.
    next_attempt_ms: int | None = None
    sent_ms: int | None = None


class ReportStore(Protocol):
    """Part of the StateStore (storage/base.py): both state backends hold the report log."""

    def claim_report_run(self, run: ReportRun, deliveries: Sequence[ReportDelivery]) -> bool:
        """Insert the run and its deliveries in one transaction; False (nothing written) if a
        run with the same (report, slot_ms, trigger) or run id exists."""
        ...

    def update_report_run(self, run: ReportRun) -> None:
        """Store the run's status, hash, error, attempts and finish time."""
        ...

    def update_report_delivery(self, delivery: ReportDelivery) -> None:
        """Store one channel's status, attempts, error, message id and next attempt."""
        ...

    def report_run(self, run_id: str) -> ReportRun | None: ...

    def report_deliveries(self, run_ids: Sequence[str]) -> list[ReportDelivery]:
        """The deliveries of these runs, by run id and channel."""
        ...

    def report_runs(self, report: str, limit: int) -> list[ReportRun]:
        """The report's newest runs first (by slot, then claim time)."""
        ...

    def latest_report_runs(
        self, reports: Sequence[str], trigger: Trigger | None = None
    ) -> dict[str, ReportRun]:
        """The newest run (by slot) of each report that has one (of that trigger if given)."""
        ...

    def unfinished_report_runs(self, now_ms: int) -> list[ReportRun]:
        """Runs still RUNNING with a render retry or a channel due at or before `now_ms`."""
        ...

    def report_schedule_since(self, report: str, now_ms: int) -> int:
        """When the report was first scheduled; records `now_ms` the first time it is asked."""
        ...


# --- rows: the column order both backends store and read ---------------------------------
RUN_COLUMNS = (
    "run_id, report, slot_ms, trigger, claimed_ms, claimed_by, delayed, status, finished_ms, "
    "sha256, error, render_attempts, next_attempt_ms"
)
DELIVERY_COLUMNS = (
    "run_id, channel, recipients, status, attempts, error, message_id, next_attempt_ms, sent_ms"
)
Row = Sequence[object]


def run_row(r: ReportRun) -> list[object]:
    return [
        r.run_id, r.report, r.slot_ms, r.trigger.value, r.claimed_ms, r.claimed_by, r.delayed,
        r.status.value, r.finished_ms, r.sha256, r.error, r.render_attempts, r.next_attempt_ms,
    ]  # fmt: skip


def run_from_row(row: Row) -> ReportRun:
    run_id, report, slot, trigger, claimed, by, delayed, status, finished, sha, err, n, nxt = row
    return ReportRun(
        str(run_id), str(report), _int(slot), Trigger(trigger), _int(claimed), str(by),
        bool(delayed), RunStatus(status), _opt_int(finished), str(sha), str(err), _int(n),
        _opt_int(nxt),
    )  # fmt: skip


def delivery_row(d: ReportDelivery) -> list[object]:
    return [
        d.run_id, d.channel, "\n".join(d.recipients), d.status.value, d.attempts, d.error,
        d.message_id, d.next_attempt_ms, d.sent_ms,
    ]  # fmt: skip


def delivery_from_row(row: Row) -> ReportDelivery:
    run_id, channel, recipients, status, attempts, error, message_id, nxt, sent = row
    to = tuple(str(recipients).split("\n")) if recipients else ()
    return ReportDelivery(
        str(run_id), str(channel), to, DeliveryStatus(status), _int(attempts), str(error),
        str(message_id), _opt_int(nxt), _opt_int(sent),
    )  # fmt: skip


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _opt_int(value: object) -> int | None:
    return None if value is None else _int(value)
