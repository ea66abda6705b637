"""Rows of the alert notification tables: the notification log, silences, acknowledgements."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One notification to one channel: written as an intent before sending, then finished."""

    id: str
    group_key: str
    group_hash: str
    route: str
    channel: str
    kind: str  # notify | escalation | acknowledge
    status: str  # pending | delivered | failed
    content_hash: str
    fingerprints: tuple[str, ...]
    alertnames: tuple[str, ...]
    batch: str  # the JSON the notifier was given, to resend an unfinished intent
    created_ms: int
    attempts: int = 0
    http_status: int | None = None
    detail: str = ""
    finished_ms: int | None = None


@dataclass(frozen=True, slots=True)
class NotificationOutcome:
    id: str
    status: str  # delivered | failed
    attempts: int
    http_status: int | None
    detail: str
    finished_ms: int


@dataclass(frozen=True, slots=True)
class NotificationFilter:
    alert: str | None = None  # a fingerprint or an alertname
    channel: str | None = None
    status: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class SilenceRow:
    id: str
    matchers: str  # JSON array in Alertmanager v2 shape
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    updated_ms: int


@dataclass(frozen=True, slots=True)
class AckRow:
    fingerprint: str
    by: str
    comment: str
    at_ms: int
