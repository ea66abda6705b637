"""Incident timelines: the rows of every alert instance's history, the claims that keep protocol
actions from running twice, and the store protocol that holds them (docs/alerting.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

#: Every kind of entry, in the order they happen to an instance.
KINDS = ("fired", "notified", "escalated", "acknowledged", "step", "action", "resolved")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One thing that happened to one alert instance (fingerprint + firing start)."""

    #: Derived from what happened (alerting/timeline.py), so recording it again is a no-op.
    id: str
    fingerprint: str
    started_ms: int
    at_ms: int
    kind: str  # one of KINDS
    actor: str  # who: a person, a channel, or "opsmetrics"
    detail: str  # a JSON object


@dataclass(frozen=True, slots=True)
class ActionClaim:
    """A protocol action about to be sent, recorded first so that a restart does not send it
    again; `key` is the Idempotency-Key the receiver gets."""

    key: str
    fingerprint: str
    started_ms: int
    action: str
    claimed_ms: int


class TimelineStore(Protocol):
    """Part of the StateStore (storage/base.py): both state backends hold the timeline."""

    def record_timeline(self, entries: Sequence[TimelineEntry]) -> int:
        """Store the entries whose id is not stored yet, in one transaction; how many."""
        ...

    def timeline(self, fingerprint: str) -> list[TimelineEntry]:
        """Every entry of the alert's instances, oldest first (by at_ms, then id)."""
        ...

    def timeline_entries(self, kinds: Sequence[str], since_ms: int) -> list[TimelineEntry]:
        """Entries of these kinds at or after since_ms, oldest first (response times)."""
        ...

    def claim_action(self, claim: ActionClaim) -> bool:
        """Claim the key: True if it was free or its last run failed, False if it is
        claimed or succeeded (then the action must not be sent)."""
        ...

    def finish_action(self, key: str, status: str, at_ms: int) -> None:
        """Mark a claimed action `succeeded` or `failed` (a failed one may be claimed again)."""
        ...
