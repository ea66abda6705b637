"""A named lease in the state store: which node runs the work only one node may do.

Nodes that share a state store (PostgreSQL) each hold a `Lease` per job: rule evaluation and
notification ("alerting"), compaction and retention ("maintenance"). `held()` answers from the
last renewal and renews every `renew_ms`; the holder keeps the lease by renewing before
`ttl_ms` runs out, so when it dies (or loses the database) another node takes over within
`ttl_ms`. A node whose renewal fails counts itself as not holding the lease: it stops work
rather than risk a second holder.

A state store only one process opens (DuckDB) needs no lease: `Lease.solo()` is always held.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from opsmetrics.clock import Clock
from opsmetrics.errors import StorageUnavailableError
from opsmetrics.storage.base import StateStore

log = logging.getLogger(__name__)
TTL_MS = 15_000
RENEW_MS = 5_000


class Lease:
    def __init__(
        self,
        state: StateStore | None,
        clock: Clock,
        name: str,
        holder: str,
        *,
        ttl_ms: int = TTL_MS,
        renew_ms: int = RENEW_MS,
    ) -> None:
        self._state = state
        self._clock = clock
        self.name = name
        self.holder = holder
        self._ttl_ms = ttl_ms
        self._renew_ms = renew_ms
        self._lock = threading.Lock()
        self._held = state is None
        self._checked_ms: int | None = None
        self._gained = 0

    @staticmethod
    def solo(clock: Clock, name: str) -> Lease:
        return Lease(None, clock, name, "this process")

    @property
    def shared(self) -> bool:
        return self._state is not None

    @property
    def gained(self) -> int:
        """How many times this node has taken the lease (it was not holding it before)."""
        return self._gained

    def held(self) -> bool:
        """Whether this node holds the lease now (renewing it when due)."""
        if self._state is None:
            return True
        with self._lock:
            now = self._clock.now_ms()
            if self._checked_ms is not None and now - self._checked_ms < self._renew_ms:
                return self._held
            self._checked_ms = now
            try:
                got = self._state.hold_lease(self.name, self.holder, now, self._ttl_ms)
            except StorageUnavailableError as exc:
                if self._held:
                    log.warning("lease %s: cannot renew (%s); standing down", self.name, exc)
                got = False
            if got and not self._held:
                self._gained += 1
                log.info("lease %s: %s holds it now", self.name, self.holder)
            elif self._held and not got:
                log.warning("lease %s: %s lost it", self.name, self.holder)
            self._held = got
            return got

    def release(self) -> None:
        if self._state is None:
            return
        with self._lock:
            if self._held:
                with contextlib.suppress(StorageUnavailableError):  # it expires on its own
                    self._state.release_lease(self.name, self.holder)
            self._held = False
            self._checked_ms = None
