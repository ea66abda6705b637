"""`Client`: track events, push samples and annotate from any Python program.

Calls only enqueue; a background thread sends batches, retrying what can be retried. Every event
and annotation gets an id when queued, so a retried request never stores anything twice.
"""

from __future__ import annotations

import enum
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from opsmetrics.client.prometheus import registry_exposition
from opsmetrics.client.records import (
    JsonObject,
    SampleLike,
    Scalar,
    Timestamp,
    annotation_json,
    event_json,
    sample_json,
)
from opsmetrics.client.transport import RejectedError, RetryPolicy, Transport
from opsmetrics.errors import OpsMetricsError

log = logging.getLogger(__name__)


class Kind(enum.Enum):
    EVENTS = "/api/v1/events"
    SAMPLES = "/api/v1/samples"
    ANNOTATIONS = "/api/v1/annotations"


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """A batch the server did not accept; `status` is the HTTP status when there was one."""

    kind: Kind
    count: int
    message: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class _Item:
    kind: Kind
    payload: JsonObject


ErrorCallback = Callable[[DeliveryFailure], None]


class Client:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_retries: int = 8,
        timeout: float = 10.0,
        backoff: float = 0.2,
        max_backoff: float = 30.0,
        max_queue: int = 100_000,
        on_error: ErrorCallback | None = None,
    ) -> None:
        policy = RetryPolicy(max_retries, backoff, max_backoff)
        self.transport = Transport(url, token, timeout=timeout, policy=policy)
        self.errors: list[DeliveryFailure] = []
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._on_error = on_error
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued = 0  # items ever queued
        self._taken = 0  # items taken by the sender
        self._settled = 0  # items acknowledged or failed
        self._flush_to = 0
        self._closing = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="opsmetrics-client", daemon=True)
        self._thread.start()

    # --- the public API ------------------------------------------------------------------
    def track(
        self,
        event: str,
        entity: str = "",
        value: float | None = None,
        props: Mapping[str, Scalar] | None = None,
        ts: Timestamp | None = None,
        id: str | None = None,
    ) -> str:
        """Queue a business event; returns its id (generated when not given)."""
        event_id = id or uuid.uuid4().hex
        self._put([_Item(Kind.EVENTS, event_json(event, entity, value, props, ts, event_id))])
        return event_id

    def push(self, samples: Iterable[SampleLike]) -> None:
        """Queue samples: `Sample` records or (name, labels, value[, ts]) tuples."""
        self._put([_Item(Kind.SAMPLES, sample_json(s)) for s in samples])

    def annotate(
        self,
        title: str,
        *,
        tags: tuple[str, ...] | list[str] = (),
        text: str = "",
        ts: Timestamp | None = None,
        end: Timestamp | None = None,
    ) -> str:
        """Queue an annotation (a deploy, an incident…); returns its id."""
        annotation_id = uuid.uuid4().hex
        payload = annotation_json(title, tags, text, ts, end, annotation_id)
        self._put([_Item(Kind.ANNOTATIONS, payload)])
        return annotation_id

    def push_registry(
        self,
        registry: CollectorRegistry,
        *,
        job: str,
        instance: str = "",
        grouping: Mapping[str, str] | None = None,
    ) -> int:
        """Send a prometheus_client registry now (not queued), labelled like the Pushgateway
        does: `job`, `instance` and `grouping` labels replace the metrics' own.
        Returns the number of samples the server stored."""
        labels = {"job": job, **({"instance": instance} if instance else {}), **(grouping or {})}
        body = registry_exposition(registry, labels)
        if not body.strip():
            return 0
        data = self.transport.post("/api/v1/import/prometheus", body, CONTENT_TYPE_LATEST)
        return int(data.get("data", {}).get("samples", 0))

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is acknowledged (or has failed: see `errors`).
        Returns False if `timeout` seconds passed first."""
        with self._cond:
            target = self._queued
            self._flush_to = max(self._flush_to, target)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._settled >= target, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the sender. Pending retries are abandoned after `timeout`."""
        if self._closed:
            return
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.transport.stop.set()
        self._thread.join(timeout)
        self.transport.close()
        self._closed = True

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- queueing ------------------------------------------------------------------------
    def _put(self, items: list[_Item]) -> None:
        if not items:
            return
        with self._cond:
            if self._closing or self._closed:
                raise RuntimeError("the client is closed")
            room = max(self._max_queue - len(self._queue), 0)
            accepted = items[:room]
            self._queue.extend(accepted)
            self._queued += len(accepted)
            if len(self._queue) >= self._batch_size:
                self._cond.notify_all()
        if len(accepted) < len(items):
            dropped = len(items) - len(accepted)
            self._fail(DeliveryFailure(items[0].kind, dropped, "queue full: items dropped"))

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._deliver(batch)

    def _wanted(self) -> bool:
        return (
            len(self._queue) >= self._batch_size
            or (self._flush_to > self._taken and bool(self._queue))
            or self._closing
        )

    def _next_batch(self) -> list[_Item] | None:
        """The next run of same-kind items; [] when there is nothing yet; None to stop."""
        with self._cond:
            self._cond.wait_for(self._wanted, self._flush_interval)
            if not self._queue:
                return None if self._closing else []
            kind = self._queue[0].kind
            batch: list[_Item] = []
            while self._queue and self._queue[0].kind is kind and len(batch) < self._batch_size:
                batch.append(self._queue.popleft())
            self._taken += len(batch)
            return batch

    def _deliver(self, batch: list[_Item]) -> None:
        kind = batch[0].kind
        body = msgspec.json.encode([item.payload for item in batch])
        try:
            self.transport.post(kind.value, body, "application/json")
        except RejectedError as exc:
            self._fail(DeliveryFailure(kind, len(batch), exc.message, exc.status))
        except OpsMetricsError as exc:
            self._fail(DeliveryFailure(kind, len(batch), exc.message))
        finally:
            with self._cond:
                self._settled += len(batch)
                self._cond.notify_all()

    def _fail(self, failure: DeliveryFailure) -> None:
        log.error(
            "opsmetrics: %d %s not stored: %s",
            failure.count,
            failure.kind.name.lower(),
            failure.message,
        )
        self.errors.append(failure)
        if self._on_error is not None:
            self._on_error(failure)
