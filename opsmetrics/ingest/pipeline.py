"""The write path: validate, resolve series, deduplicate, and group-commit durably.

Requests from every source (HTTP handlers, the scrape loop, imports) queue here. One writer
thread takes whatever is queued, checks each request on its own (a bad request fails alone and
writes nothing), and writes all good ones in a single transaction. A request's future resolves
only after that transaction commits, so a 2xx answer means the data is on disk.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import numpy as np

from opsmetrics.clock import Clock
from opsmetrics.errors import (
    LimitExceededError,
    OpsMetricsError,
    StorageUnavailableError,
    UserError,
)
from opsmetrics.ingest.admission import QUEUE_FULL, IngestAdmission, IngestOverloadedError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.samples import GroupState, prepare_samples
from opsmetrics.ingest.validate import validate_event
from opsmetrics.model import Annotation, Event, MetricMetadata
from opsmetrics.settings import Limits
from opsmetrics.storage.base import RetentionPolicy, Storage, StoredEvent, WriteBatch
from opsmetrics.telemetry import Telemetry

log = logging.getLogger(__name__)

#: Stop adding requests to a group past this many samples: bounded commit latency and memory.
MAX_GROUP_SAMPLES = 200_000
#: Retry-After never says more than this: a client should look again within a minute.
MAX_RETRY_AFTER_S = 60


@dataclass(slots=True)
class WriteRequest:
    source: str
    samples: DecodedSamples | None = None
    events: list[Event] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)

    def size(self) -> int:
        n = len(self.events) + len(self.annotations)
        if self.samples is not None:
            n += len(self.samples.batch) + len(self.samples.deltas)
        return n

    def work(self) -> int:
        """What the request costs the writer: its items, and one for the request itself."""
        return self.size() + 1


@dataclass(frozen=True, slots=True)
class WriteResult:
    samples: int
    duplicates: int
    events: int


@dataclass(slots=True)
class _Pending:
    request: WriteRequest
    future: concurrent.futures.Future[WriteResult]
    work: int


class Backlog:
    """The work queued for the writer and how fast it drains: how long a client should wait.

    The drain rate is an exponentially weighted mean of each group commit's work per second,
    measured on the writer's busy time (so an idle writer does not look slow).
    """

    SMOOTHING = 0.2

    def __init__(self, max_work: int) -> None:
        self._max_work = max_work
        self._lock = threading.Lock()
        self.queued = 0
        self.rate = 0.0

    def add(self, work: int) -> bool:
        """Count `work` in, unless it would pass the bound (an empty queue takes anything)."""
        with self._lock:
            if self.queued and self.queued + work > self._max_work:
                return False
            self.queued += work
            return True

    def cancel(self, work: int) -> None:
        """Take back work that was counted but not queued."""
        with self._lock:
            self.queued -= work

    def done(self, work: int, seconds: float) -> None:
        with self._lock:
            self.queued -= work
            rate = work / max(seconds, 1e-4)
            self.rate = rate if not self.rate else self.rate + self.SMOOTHING * (rate - self.rate)

    def seconds(self) -> float:
        """How long the queued work takes to drain at the recent rate (0 before any commit)."""
        return self.queued / self.rate if self.rate else 0.0

    def retry_after_s(self) -> int:
        """The backlog in whole seconds, at least 1 and at most MAX_RETRY_AFTER_S."""
        return min(MAX_RETRY_AFTER_S, max(1, math.ceil(self.seconds())))


Maintenance = Callable[[], None]


class Ingestor:
    def __init__(
        self, storage: Storage, clock: Clock, limits: Limits, telemetry: Telemetry
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._limits = limits
        self._telemetry = telemetry
        self._queue: queue.Queue[_Pending | Maintenance | None] = queue.Queue(
            maxsize=limits.write_queue_max_requests
        )
        self.backlog = Backlog(limits.max_queued_samples)
        #: The HTTP ingest endpoints' limits; Retry-After comes from this queue's backlog.
        self.admission = IngestAdmission(limits, telemetry.registry, self.backlog.retry_after_s)
        self._thread = threading.Thread(target=self._run, name="opsmetrics-writer", daemon=True)
        self._failed: BaseException | None = None
        #: Metadata as last committed, per metric: OTLP and remote_write senders repeat it with
        #: every request, and rewriting unchanged rows was most of the writer's time for OTLP.
        self._committed_metadata: dict[str, MetricMetadata] = {}

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop the writer."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    @property
    def healthy(self) -> bool:
        return self._thread.is_alive() and self._failed is None

    # --- submitting ---------------------------------------------------------------------
    def submit(self, request: WriteRequest) -> concurrent.futures.Future[WriteResult]:
        future: concurrent.futures.Future[WriteResult] = concurrent.futures.Future()
        if self._failed is not None:
            raise StorageUnavailableError(f"the writer stopped after an error: {self._failed}")
        work = request.work()
        if not self.backlog.add(work):
            raise self._queue_full(
                f"the write queue holds {self.backlog.queued} samples and events, its limit "
                "(OPSMETRICS_MAX_QUEUED_SAMPLES)"
            )
        try:
            self._queue.put_nowait(_Pending(request, future, work))
        except queue.Full:
            self.backlog.cancel(work)
            raise self._queue_full(
                f"the write queue holds {self._queue.maxsize} requests, its limit "
                "(OPSMETRICS_WRITE_QUEUE_MAX_REQUESTS)"
            ) from None
        self._telemetry.queue_depth.set(self._queue.qsize())
        return future

    def _queue_full(self, message: str) -> IngestOverloadedError:
        self._telemetry.rejected.labels(QUEUE_FULL).inc()
        return IngestOverloadedError(
            message, reason=QUEUE_FULL, retry_after_s=self.backlog.retry_after_s()
        )

    def write(self, request: WriteRequest) -> WriteResult:
        """Submit and wait (for threads that are not on the event loop)."""
        return self.submit(request).result()

    def run_maintenance(self, task: Maintenance) -> None:
        """Run a task on the writer thread, between group commits (blocking put)."""
        self._queue.put(task)

    # --- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if not isinstance(item, _Pending):
                self._maintain(item)
                continue
            group, stop = self._drain(item)
            started = time.perf_counter()
            try:
                self._commit_group(group)
            finally:
                work = sum(p.work for p in group)
                self.backlog.done(work, time.perf_counter() - started)
            if stop:
                return

    def _drain(self, first: _Pending) -> tuple[list[_Pending], bool]:
        group, size = [first], first.request.size()
        while size < MAX_GROUP_SAMPLES:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return group, True
            if not isinstance(item, _Pending):
                self._maintain(item)
                continue
            group.append(item)
            size += item.request.size()
        self._telemetry.queue_depth.set(self._queue.qsize())
        return group, False

    def _maintain(self, task: Maintenance) -> None:
        try:
            task()
        except Exception:
            log.exception("maintenance task failed")

    def _commit_group(self, group: list[_Pending]) -> None:
        state = GroupState()
        accepted: list[tuple[_Pending, WriteBatch, int]] = []
        for pending in group:
            try:
                batch, dupes = self._prepare(pending.request, state)
            except UserError as exc:
                self._telemetry.rejected.labels(exc.reason).inc()
                pending.future.set_exception(exc)
                continue
            except Exception as exc:
                log.exception("preparing a write failed")
                pending.future.set_exception(exc)
                continue
            accepted.append((pending, batch, dupes))
        self._write_accepted(accepted)

    def _prepare(self, request: WriteRequest, state: GroupState) -> tuple[WriteBatch, int]:
        now = self._clock.now_ms()
        batch, dupes = WriteBatch(), 0
        if request.samples is not None:
            batch, dupes = prepare_samples(request.samples, self._storage, state, now, self._limits)
        batch.events = self._prepare_events(request.events, now)
        batch.annotations = request.annotations
        batch.metadata = self._changed_metadata(batch.metadata)
        return batch, dupes

    def _changed_metadata(self, metadata: list[MetricMetadata]) -> list[MetricMetadata]:
        known = self._committed_metadata
        return [m for m in metadata if known.get(m.metric) != m]

    def _prepare_events(self, events: list[Event], now: int) -> list[StoredEvent]:
        if len(events) > self._limits.max_events_per_request:
            raise LimitExceededError(
                f"{len(events)} events in one request, more than the limit of "
                f"{self._limits.max_events_per_request}; split the request",
                reason="too_many_events",
            )
        for i, event in enumerate(events):
            validate_event(event, i, now, self._limits)
        return [StoredEvent(event_key(e), e) for e in events]

    def _write_accepted(self, accepted: list[tuple[_Pending, WriteBatch, int]]) -> None:
        if not accepted:
            return
        merged = merge_batches([b for _, b, _ in accepted])
        started = time.perf_counter()
        try:
            self._storage.write(merged)
        except OpsMetricsError as exc:
            self._fail_all(accepted, exc)
            return
        except Exception as exc:
            log.exception("group commit failed")
            self._fail_all(accepted, StorageUnavailableError(f"write failed: {exc}"))
            return
        self._record(accepted, time.perf_counter() - started)
        for name, n in merged.duplicate_events.items():
            self._telemetry.duplicate_events.labels(name).inc(n)

    def _fail_all(
        self, accepted: list[tuple[_Pending, WriteBatch, int]], exc: OpsMetricsError
    ) -> None:
        self._telemetry.rejected.labels(exc.reason).inc(len(accepted))
        for pending, _, _ in accepted:
            pending.future.set_exception(exc)

    def _record(self, accepted: list[tuple[_Pending, WriteBatch, int]], seconds: float) -> None:
        self._telemetry.commits.inc()
        self._telemetry.commit_seconds.observe(seconds)
        self._telemetry.group_requests.observe(len(accepted))
        for _, batch, _ in accepted:
            self._committed_metadata.update((m.metric, m) for m in batch.metadata)
        for pending, batch, dupes in accepted:
            source = pending.request.source
            self._telemetry.ingested_samples.labels(source).inc(len(batch.ts))
            self._telemetry.ingested_events.labels(source).inc(len(batch.events))
            result = WriteResult(len(batch.ts), dupes, len(batch.events))
            pending.future.set_result(result)


def merge_batches(batches: list[WriteBatch]) -> WriteBatch:
    if len(batches) == 1:
        return batches[0]
    out = WriteBatch()
    out.new_series = [s for b in batches for s in b.new_series]
    out.series_ids = np.concatenate([b.series_ids for b in batches])
    out.ts = np.concatenate([b.ts for b in batches])
    out.values = np.concatenate([b.values for b in batches])
    out.events = [e for b in batches for e in b.events]
    out.annotations = [a for b in batches for a in b.annotations]
    out.metadata = [m for b in batches for m in b.metadata]
    return out


def event_key(event: Event) -> int:
    """The idempotency key: from `id` when given, else from the event's content."""
    if event.id is not None:
        material = b"id\x00" + event.id.encode()
    else:
        material = b"content\x00" + msgspec.json.encode(
            [event.name, event.ts, event.entity, event.value, sorted(event.props.items())]
        )
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")


def maintenance_task(storage: Storage, clock: Clock, policy: RetentionPolicy) -> Maintenance:
    def task() -> None:
        now = clock.now_ms()
        compacted = storage.compact(now)
        result = storage.apply_retention(now, policy)
        if compacted or result.partitions_dropped or result.events_deleted:
            log.info(
                "maintenance: %d partitions compacted, %d dropped, %d events expired",
                compacted,
                result.partitions_dropped,
                result.events_deleted,
            )

    return task
