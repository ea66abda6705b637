"""Admission control for ingest: requests in flight per endpoint, and body bytes in flight.

Overload must become a 429 with a useful `Retry-After`, never a growing heap. Counting requests
alone is not enough: a request whose body is still arriving already holds memory, so a request
holds its bytes from admission until its answer is ready (read, decoded, waiting for the
writer's commit). Bytes declared by `Content-Length` are reserved up front; a body without one
is counted chunk by chunk as it arrives (`received`), and refused mid-way past the budget.

Every call comes from the event loop thread, but the lock keeps the counts right even if one
day they do not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from opsmetrics.errors import OverloadedError
from opsmetrics.settings import Limits

#: Reasons for a 429, the `reason` label of opsmetrics_ingest_throttled.
CONCURRENCY = "concurrency"
INFLIGHT_BYTES = "inflight_bytes"
QUEUE_FULL = "queue_full"


class IngestOverloadedError(OverloadedError):
    """Refused for load, not for content: retry the same request after `retry_after_s`."""

    def __init__(self, message: str, *, reason: str, retry_after_s: int) -> None:
        super().__init__(f"{message}; retry after {retry_after_s} s", reason=reason)
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class Ticket:
    """One admitted request: its endpoint, the bytes it holds, the bytes it has read."""

    endpoint: str
    held: int = 0
    read: int = 0
    released: bool = False


class AdmissionMetrics:
    """The admission gauges and counter, on the server's registry."""

    def __init__(self, registry: CollectorRegistry, limits: Limits) -> None:
        self.inflight_bytes = Gauge(
            "opsmetrics_ingest_inflight_bytes",
            "Body bytes held by ingest requests being read, decoded or waiting for a commit",
            registry=registry,
        )
        self.inflight_requests = Gauge(
            "opsmetrics_ingest_inflight_requests",
            "Ingest requests being handled, by endpoint",
            ["endpoint"],
            registry=registry,
        )
        self.throttled = Counter(
            "opsmetrics_ingest_throttled",
            "Ingest requests answered 429 for load, by endpoint and reason (concurrency, "
            "inflight_bytes, queue_full)",
            ["endpoint", "reason"],
            registry=registry,
        )
        limit = Gauge(
            "opsmetrics_ingest_admission_limit",
            "The admission limits: max_inflight_bytes, max_concurrency (per endpoint)",
            ["limit"],
            registry=registry,
        )
        limit.labels("max_inflight_bytes").set(limits.max_ingest_inflight_bytes)
        limit.labels("max_concurrency").set(limits.max_ingest_concurrency)


class IngestAdmission:
    """Slots per endpoint and one byte budget; `retry_after_s` says how long the backlog is."""

    def __init__(
        self, limits: Limits, registry: CollectorRegistry, retry_after_s: Callable[[], int]
    ) -> None:
        self._max_concurrency = limits.max_ingest_concurrency
        self._max_bytes = limits.max_ingest_inflight_bytes
        self._retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._bytes = 0
        self.metrics = AdmissionMetrics(registry, limits)

    @property
    def inflight_bytes(self) -> int:
        return self._bytes

    def inflight_requests(self, endpoint: str) -> int:
        return self._requests.get(endpoint, 0)

    def retry_after_s(self) -> int:
        return self._retry_after_s()

    def enter(self, endpoint: str, declared_bytes: int) -> Ticket:
        """Admit a request that says its body has `declared_bytes` (0: unknown), or refuse it."""
        with self._lock:
            busy = self._requests.get(endpoint, 0)
            if busy >= self._max_concurrency:
                raise self._refusal(
                    CONCURRENCY,
                    f"ingest endpoint {endpoint} is already handling {busy} requests, its limit "
                    "(OPSMETRICS_MAX_INGEST_CONCURRENCY)",
                )
            ticket = Ticket(endpoint)
            self._hold(ticket, declared_bytes)
            self._requests[endpoint] = busy + 1
        self.metrics.inflight_requests.labels(endpoint).set(busy + 1)
        return ticket

    def received(self, ticket: Ticket, n: int) -> None:
        """`n` more body bytes arrived; past what the ticket holds, they must fit the budget."""
        with self._lock:
            ticket.read += n
            if ticket.read > ticket.held:
                self._hold(ticket, ticket.read - ticket.held)

    def release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.released:
                return
            ticket.released = True
            self._bytes -= ticket.held
            left = self._requests[ticket.endpoint] - 1
            self._requests[ticket.endpoint] = left
        self.metrics.inflight_bytes.set(self._bytes)
        self.metrics.inflight_requests.labels(ticket.endpoint).set(left)

    def count_throttled(self, endpoint: str, reason: str) -> None:
        self.metrics.throttled.labels(endpoint, reason).inc()

    def _hold(self, ticket: Ticket, n: int) -> None:
        """Add `n` bytes to the ticket (lock held). A request alone in flight always fits, so
        one body as large as OPSMETRICS_MAX_BODY_BYTES can pass even above the budget."""
        others = self._bytes - ticket.held
        if n > 0 and others > 0 and self._bytes + n > self._max_bytes:
            raise self._refusal(
                INFLIGHT_BYTES,
                f"ingest requests in flight hold {self._bytes} body bytes; {n} more would pass "
                f"the limit of {self._max_bytes} (OPSMETRICS_MAX_INGEST_INFLIGHT_BYTES)",
            )
        ticket.held += n
        self._bytes += n
        self.metrics.inflight_bytes.set(self._bytes)

    def _refusal(self, reason: str, message: str) -> IngestOverloadedError:
        return IngestOverloadedError(message, reason=reason, retry_after_s=self._retry_after_s())
