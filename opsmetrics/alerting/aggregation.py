"""Aggregation groups: the alerts of one route with equal `group_by` labels, notified together."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from opsmetrics.alerting.model import Alert, AlertState
from opsmetrics.alerting.notifiers.base import Batch, NotifiedAlert
from opsmetrics.alerting.routing import GroupKey
from opsmetrics.catalog.notify import RouteSpec
from opsmetrics.catalog.protocols import ProtocolSet

#: How many of a protocol's steps a notification carries.
FIRST_STEPS = 3


@dataclass
class Group:
    key: GroupKey
    route: RouteSpec
    next_flush_ms: int
    fps: set[str] = field(default_factory=set)
    last_sent_ms: int | None = None
    last_hash: str = ""
    notified_firing: set[str] = field(default_factory=set)
    escalated: set[str] = field(default_factory=set)

    def repeat_due(self, now_ms: int) -> bool:
        if self.last_sent_ms is None:
            return False
        return now_ms - self.last_sent_ms >= self.route.timings.repeat_interval_ms


def content_hash(firing: Sequence[str], resolved: Sequence[str]) -> str:
    text = ",".join(sorted(firing)) + "|" + ",".join(sorted(resolved))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def notified(alert: Alert, protocols: ProtocolSet | None = None) -> NotifiedAlert:
    resolved = alert.state is AlertState.INACTIVE
    protocol = protocols.for_labels(dict(alert.labels)) if protocols is not None else None
    return NotifiedAlert(
        fingerprint=alert.fingerprint,
        status="resolved" if resolved else "firing",
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        starts_at_ms=alert.fired_at_ms or alert.active_at_ms,
        ends_at_ms=alert.resolved_at_ms if resolved else None,
        value=alert.value,
        generator_url=alert.generator_url,
        active_at_ms=alert.active_at_ms,
        protocol=protocol.name if protocol else "",
        team=protocol.team if protocol else "",
        steps=tuple(s.title for s in protocol.steps[:FIRST_STEPS]) if protocol else (),
    )


def make_batch(
    group: Group,
    channel: str,
    alerts: Sequence[Alert],
    kind: str,
    external_url: str,
    protocols: ProtocolSet | None = None,
) -> Batch:
    items = tuple(notified(a, protocols) for a in sorted(alerts, key=lambda a: a.labels))
    firing = any(a.status == "firing" for a in items)
    return Batch(
        group_key=group.key.text,
        group_hash=group.key.digest,
        receiver=channel,
        route=group.route.name,
        status="firing" if firing else "resolved",
        group_labels=dict(group.key.labels),
        alerts=items,
        kind=kind,
        external_url=external_url,
    )
