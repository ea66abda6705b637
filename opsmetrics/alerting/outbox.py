"""The persisted outbox: log the intent, deliver off the caller's thread, log the outcome.

A notification is recorded `pending` before it is sent and finished after; on start the
pending ones are sent again, so a crash between sending and logging may duplicate a
notification but never loses one.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from opsmetrics.alerting.delivery import Outcome, RetryPolicy, deliver
from opsmetrics.alerting.notifiers.base import Batch, Notifier
from opsmetrics.clock import Clock
from opsmetrics.storage.alert_records import NotificationOutcome, NotificationRecord
from opsmetrics.storage.base import Storage
from opsmetrics.telemetry import Telemetry

log = logging.getLogger(__name__)


class Outbox:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        notifiers: dict[str, Notifier],
        policies: dict[str, RetryPolicy],
        workers: int = 8,
        telemetry: Telemetry | None = None,
        on_outcome: Callable[[Batch, NotificationOutcome], None] | None = None,
    ) -> None:
        self._storage = storage
        #: Told of every delivery's outcome (the incident timeline), off the caller's thread.
        self._on_outcome = on_outcome
        self._telemetry = telemetry
        self._clock = clock
        self._notifiers = notifiers
        self._policies = policies
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._outcomes: list[NotificationOutcome] = []
        self._writing = False
        self._closing = False
        self._writer: threading.Thread | None = None  # started with the first delivery

    def submit(self, work: Sequence[tuple[Batch, str]]) -> list[str]:
        """Record the intents durably (one transaction), then deliver them in the background.

        `work` holds (batch, content hash) pairs; returns the log ids.
        """
        now = self._clock.now_ms()
        recs = [_intent(batch, digest, now) for batch, digest in work]
        self._storage.record_notifications(recs)
        for rec, (batch, _) in zip(recs, work, strict=True):
            self._start(rec.id, batch)
        return [rec.id for rec in recs]

    def resend_pending(self) -> int:
        """Deliver again every intent a previous run left unfinished."""
        pending = self._storage.pending_notifications()
        for rec in pending:
            if rec.channel in self._notifiers:
                self._start(rec.id, Batch.from_json(rec.batch))
            else:
                detail = f"channel {rec.channel!r} is not configured any more"
                now = self._clock.now_ms()
                self._record(NotificationOutcome(rec.id, "failed", 0, None, detail, now))
        return len(pending)

    def pending_count(self) -> int:
        with self._lock:
            return sum(not f.done() for f in self._futures)

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Wait until deliveries under way are done and their outcomes are logged."""
        with self._lock:
            futures = set(self._futures)
        wait(futures, timeout=timeout_s)
        with self._cond:
            self._cond.wait_for(lambda: not self._outcomes and not self._writing, timeout_s)

    def close(self) -> None:
        """Stop: deliveries not finished stay `pending` in the log and are resent at start."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join(10)

    def _start(self, id: str, batch: Batch) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_outcomes, name="notify-log", daemon=True
                )
                self._writer.start()
        future = self._pool.submit(self._run, id, batch)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._discard)

    def _discard(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _run(self, id: str, batch: Batch) -> None:
        policy = self._policies.get(batch.receiver, RetryPolicy())
        started = time.perf_counter()
        delivered: Outcome = deliver(self._notifiers[batch.receiver], batch, policy)
        result, status, attempts = delivered.result, delivered.status, delivered.attempts
        if self._telemetry is not None:
            took = time.perf_counter() - started
            self._telemetry.notified(batch.receiver, result.ok, attempts, took)
        if not result.ok:
            log.warning("notification to %s failed: %s", batch.receiver, result.detail)
        outcome = NotificationOutcome(
            id, status, attempts, result.status_code, result.detail, self._clock.now_ms()
        )
        self._record(outcome)
        if self._on_outcome is not None:
            try:
                self._on_outcome(batch, outcome)
            except Exception:  # the log has the outcome; the timeline misses one entry
                log.exception("could not add notification %s to the incident timeline", id)

    def _record(self, outcome: NotificationOutcome) -> None:
        with self._cond:
            self._outcomes.append(outcome)
            self._cond.notify_all()

    def _write_outcomes(self) -> None:
        """The log writer: appends every outcome queued so far in one transaction."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._outcomes) or self._closing)
                if not self._outcomes:
                    return
                rows, self._outcomes = self._outcomes, []
                self._writing = True
            try:
                self._storage.finish_notifications(rows)
            except Exception:  # storage gone: those intents stay pending and are resent
                log.exception("could not log %d notification outcomes", len(rows))
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def _intent(batch: Batch, content_hash: str, now_ms: int) -> NotificationRecord:
    return NotificationRecord(
        id=uuid.uuid4().hex,
        group_key=batch.group_key,
        group_hash=batch.group_hash,
        route=batch.route,
        channel=batch.receiver,
        kind=batch.kind,
        status="pending",
        content_hash=content_hash,
        fingerprints=tuple(a.fingerprint for a in batch.alerts),
        alertnames=tuple(sorted({a.name for a in batch.alerts})),
        batch=batch.to_json(),
        created_ms=now_ms,
    )
