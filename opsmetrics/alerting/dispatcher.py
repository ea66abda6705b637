"""The notification dispatcher: an AlertSink that routes, groups, quiets and notifies.

`send` only records what producers report; `tick(now_ms)` does every timed thing (group
waits and intervals, repeats, escalation, resolve timeouts), so a FakeClock drives it in
tests and an asyncio task in the app calls it every second. See docs/alerting.md.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

from opsmetrics.alerting.aggregation import Group, content_hash, make_batch
from opsmetrics.alerting.delivery import RetryPolicy
from opsmetrics.alerting.model import Alert, AlertSource, AlertState
from opsmetrics.alerting.notifiers import ChannelUnconfigured, Notifier, build_notifier
from opsmetrics.alerting.notifiers.base import Batch
from opsmetrics.alerting.outbox import Outbox
from opsmetrics.alerting.protocols import Responder
from opsmetrics.alerting.quieting import Quieting
from opsmetrics.alerting.routing import GroupKey, group_channels, group_key, routes_for
from opsmetrics.alerting.silences import Inhibitions
from opsmetrics.catalog.mute_windows import interval_contains
from opsmetrics.catalog.notify import NotifyConfig, RouteSpec
from opsmetrics.catalog.protocols import ProtocolSet
from opsmetrics.clock import Clock
from opsmetrics.storage.alert_records import NotificationRecord
from opsmetrics.storage.base import Storage
from opsmetrics.telemetry import Telemetry

log = logging.getLogger(__name__)
#: A firing alert its producer stopped re-sending for this long is taken as resolved.
RESOLVE_TIMEOUT_MS = 5 * 60_000
#: How far back the log is read at start (at least; longer for longer repeat intervals).
HISTORY_MS = 86_400_000
#: How long finished notifications and ended silences are kept; pruned hourly.
LOG_RETENTION_MS = 30 * 86_400_000
PRUNE_EVERY_MS = 3_600_000


class Dispatcher:
    def __init__(
        self,
        config: NotifyConfig,
        storage: Storage,
        clock: Clock,
        *,
        external_url: str = "",
        notifiers: dict[str, Notifier] | None = None,
        retry: RetryPolicy | None = None,
        source: AlertSource | None = None,
        telemetry: Telemetry | None = None,
        responder: Responder | None = None,
    ) -> None:
        self.config = config
        #: Response protocols and incident timelines (alerting/protocols.py), if kept.
        self.responder = responder
        self._storage = storage
        self._clock = clock
        self._external_url = external_url
        self._source = source
        self._notifiers = notifiers if notifiers is not None else _build_notifiers(config)
        policies = {
            name: dataclasses.replace(retry or RetryPolicy(), max_retries=ch.max_retries)
            for name, ch in config.channels.items()
        }
        on_outcome = responder.notified if responder is not None else None
        self._outbox = Outbox(
            storage, clock, self._notifiers, policies, telemetry=telemetry, on_outcome=on_outcome
        )
        self.quieting = Quieting(storage, config.inhibit_rules)
        self._alerts: dict[str, Alert] = {}
        self._seen_ms: dict[str, int] = {}
        self._groups: dict[GroupKey, Group] = {}
        self._lock = threading.RLock()
        self._history: dict[str, NotificationRecord] = {}
        self._pruned_ms = 0
        self._escalated: dict[str, set[str]] = {}
        self._load_history(clock.now_ms())

    def _load_history(self, now_ms: int) -> None:
        """What was notified before a restart, for groups that form again."""
        longest = max((r.timings.repeat_interval_ms for r in self.config.routes), default=0)
        for rec in self._storage.recent_notifications(now_ms - max(longest, HISTORY_MS)):
            if rec.kind == "escalation":
                self._escalated.setdefault(rec.group_hash, set()).update(rec.fingerprints)
            else:
                self._history[rec.group_hash] = rec  # oldest first: the newest wins

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> int:
        """Resend notifications a previous run left unfinished; returns how many."""
        return self._outbox.resend_pending()

    def take_over(self, now_ms: int) -> int:
        """This node now notifies for the nodes sharing the state store: read what they
        notified, and send what they recorded but did not finish."""
        with self._lock:
            self._history.clear()
            self._escalated.clear()
            self._load_history(now_ms)
        return self._outbox.resend_pending()

    def close(self) -> None:
        self._outbox.close()
        if self.responder is not None:
            self.responder.close()

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Wait for deliveries under way (tests, benchmarks)."""
        self._outbox.wait_idle(timeout_s)

    # --- AlertSink ----------------------------------------------------------------------
    def send(self, alerts: Sequence[Alert], at_ms: int) -> None:
        with self._lock:
            for alert in alerts:
                if alert.state is not AlertState.PENDING:
                    self._receive(alert, at_ms)

    def _receive(self, alert: Alert, at_ms: int) -> None:
        fp = alert.fingerprint
        before = self._alerts.get(fp)
        self._alerts[fp] = alert
        self._seen_ms[fp] = at_ms
        if alert.state is AlertState.INACTIVE:
            self.quieting.drop_ack(fp)
        if self.responder is not None:
            self._tell_responder(self.responder, alert, before)
        for route in routes_for(self.config, alert):
            key = group_key(route, alert)
            group = self._groups.get(key)
            if group is None:
                if alert.state is AlertState.INACTIVE:
                    continue
                group = self._new_group(key, route, at_ms)
            group.fps.add(fp)

    @staticmethod
    def _tell_responder(responder: Responder, alert: Alert, before: Alert | None) -> None:
        if alert.state is AlertState.FIRING:
            responder.fired(alert)
        elif before is None or before.state is not AlertState.INACTIVE:
            responder.resolved(alert)  # once per resolution (re-sent ones are repeats)

    def _new_group(self, key: GroupKey, route: RouteSpec, at_ms: int) -> Group:
        group = Group(key, route, at_ms + route.timings.group_wait_ms)
        last = self._history.pop(key.digest, None)
        if last is not None and at_ms - last.created_ms < route.timings.repeat_interval_ms:
            group.last_sent_ms = last.created_ms  # notified before a restart: no repeat yet
            group.last_hash = last.content_hash
            group.notified_firing = set(last.fingerprints)
        group.escalated = self._escalated.pop(key.digest, set())
        self._groups[key] = group
        return group

    # --- timed work ---------------------------------------------------------------------
    def tick(self, now_ms: int) -> int:
        """Flush due groups and escalate; returns the notifications submitted."""
        with self._lock:
            self._expire_stale(now_ms)
            work: list[tuple[Batch, str]] = []
            inhib = self.quieting.inhibitions(self._firing())  # once per tick
            for key, group in list(self._groups.items()):
                if now_ms >= group.next_flush_ms:
                    work += self._flush(group, now_ms, inhib)
                work += self._escalate(group, now_ms, inhib)
                if not group.fps:
                    del self._groups[key]
            self._forget_unused()
        if work:
            self._outbox.submit(work)
        if now_ms - self._pruned_ms >= PRUNE_EVERY_MS:
            self._prune(now_ms)
        return len(work)

    def _prune(self, now_ms: int) -> None:
        """Keep the log and the silences for LOG_RETENTION_MS."""
        self._pruned_ms = now_ms
        self._storage.prune_alert_log(now_ms - LOG_RETENTION_MS)
        self.quieting.forget_ended(now_ms - LOG_RETENTION_MS)

    def _expire_stale(self, now_ms: int) -> None:
        """Firing alerts not re-sent for RESOLVE_TIMEOUT_MS (and, when the dispatcher knows
        the producers, no longer active there) are taken as resolved."""
        stale = [
            fp
            for fp, alert in self._alerts.items()
            if alert.state is AlertState.FIRING
            and now_ms - self._seen_ms.get(fp, now_ms) > RESOLVE_TIMEOUT_MS
        ]
        if stale and self._source is not None:
            active = {a.fingerprint for a in self._source.active_alerts()}
            for fp in [fp for fp in stale if fp in active]:
                self._seen_ms[fp] = now_ms  # a slow rule group: still firing
            stale = [fp for fp in stale if fp not in active]
        for fp in stale:
            seen = self._seen_ms[fp]
            self._alerts[fp] = dataclasses.replace(
                self._alerts[fp],
                state=AlertState.INACTIVE,
                resolved_at_ms=seen + RESOLVE_TIMEOUT_MS,
            )
            self.quieting.drop_ack(fp)
            if self.responder is not None:
                self.responder.resolved(self._alerts[fp])

    def _split(
        self, group: Group, now_ms: int, inhib: Inhibitions
    ) -> tuple[list[Alert], list[Alert]]:
        """The group's firing alerts not silenced or inhibited, and its resolved alerts."""
        firing, resolved = [], []
        for fp in sorted(group.fps):
            alert = self._alerts[fp]
            if alert.state is AlertState.INACTIVE:
                resolved.append(alert)
            elif not self.quieting.is_quiet(alert, inhib, now_ms):
                firing.append(alert)
        return firing, resolved

    def _flush(self, group: Group, now_ms: int, inhib: Inhibitions) -> list[tuple[Batch, str]]:
        route = group.route
        group.next_flush_ms = now_ms + route.timings.group_interval_ms
        if self._muted(route, now_ms):
            return []
        firing, resolved = self._split(group, now_ms, inhib)
        told = [a for a in resolved if a.fingerprint in group.notified_firing]
        group.fps -= {a.fingerprint for a in resolved} - group.notified_firing
        to_tell = told if route.send_resolved else []
        digest = content_hash([a.fingerprint for a in firing], [a.fingerprint for a in to_tell])
        changed = digest != group.last_hash and bool(firing or to_tell)
        unacked = any(not self.quieting.is_acked(a.fingerprint) for a in firing)
        if not changed and not (unacked and group.repeat_due(now_ms)):
            group.fps -= {a.fingerprint for a in told if not route.send_resolved}
            return []
        group.last_hash, group.last_sent_ms = digest, now_ms
        group.notified_firing = {a.fingerprint for a in firing}
        group.fps -= {a.fingerprint for a in resolved}
        channels = group_channels(self.config, route, group.key)
        return self._batches(group, channels, [*firing, *to_tell], "notify", digest)

    def _escalate(self, group: Group, now_ms: int, inhib: Inhibitions) -> list[tuple[Batch, str]]:
        if not group.route.escalate_to or self._muted(group.route, now_ms):
            return []
        firing, _ = self._split(group, now_ms, inhib)
        due = [
            a
            for a in firing
            if a.fingerprint not in group.escalated
            and not self.quieting.is_acked(a.fingerprint)
            and self._escalation_due(group.route, a, now_ms)
        ]
        if not due:
            return []
        group.escalated |= {a.fingerprint for a in due}
        digest = content_hash([a.fingerprint for a in due], [])
        return self._batches(group, group.route.escalate_to, due, "escalation", digest)

    def _escalation_due(self, route: RouteSpec, alert: Alert, now_ms: int) -> bool:
        """Unacknowledged for the protocol's response time (its severity's), else for the
        route's escalate_after."""
        after = route.timings.escalate_after_ms
        if self.responder is not None:
            after = self.responder.response_time_ms(alert) or after
        return after is not None and (alert.fired_at_ms or alert.active_at_ms) + after <= now_ms

    def _batches(
        self, group: Group, channels: Sequence[str], alerts: list[Alert], kind: str, digest: str
    ) -> list[tuple[Batch, str]]:
        return [
            (make_batch(group, channel, alerts, kind, self._external_url, self._protocols), digest)
            for channel in channels
            if channel in self._notifiers
        ]

    @property
    def _protocols(self) -> ProtocolSet | None:
        return self.responder.incidents.protocols if self.responder is not None else None

    def _muted(self, route: RouteSpec, now_ms: int) -> bool:
        intervals = self.config.time_intervals
        return any(interval_contains(intervals[n], now_ms) for n in route.mute_time_intervals)

    def _firing(self) -> list[Alert]:
        return [a for a in self._alerts.values() if a.state is AlertState.FIRING]

    def _forget_unused(self) -> None:
        held = set().union(*(g.fps for g in self._groups.values())) if self._groups else set()
        for fp, alert in list(self._alerts.items()):
            if alert.state is AlertState.INACTIVE and fp not in held:
                del self._alerts[fp]
                self._seen_ms.pop(fp, None)

    # --- acknowledgement ----------------------------------------------------------------
    def ack(self, fingerprint: str, by: str, comment: str) -> None:
        """Acknowledge: no more repeats or escalation; PagerDuty channels get `acknowledge`."""
        now = self._clock.now_ms()
        self.quieting.ack(fingerprint, by, comment, now)
        with self._lock:
            alert = self._alerts.get(fingerprint)
            if alert is not None and self.responder is not None:
                self.responder.acknowledged(alert, by, comment, now)
            work = []
            for group in self._groups.values():
                if fingerprint not in group.notified_firing:
                    continue
                firing, _ = self._split(group, now, self.quieting.inhibitions(self._firing()))
                if all(self.quieting.is_acked(a.fingerprint) for a in firing):
                    channels = group_channels(self.config, group.route, group.key)
                    pd = [c for c in channels if self._is_pagerduty(c)]
                    work += self._batches(group, pd, firing, "acknowledge", group.last_hash)
        if work:
            self._outbox.submit(work)

    def _is_pagerduty(self, channel: str) -> bool:
        spec = self.config.channels.get(channel)
        return spec is not None and spec.type == "pagerduty"

    # --- status -------------------------------------------------------------------------
    def alert_status(self, alert: Alert) -> dict[str, Any]:
        return self.alert_statuses([alert])[0]

    def alert_statuses(self, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
        """Acknowledged, silenced by, inhibited by: for `/api/v1/alerts`."""
        with self._lock:
            inhib = self.quieting.inhibitions(self._firing())
        now = self._clock.now_ms()
        return [self.quieting.status(a, inhib, now) for a in alerts]

    def status(self) -> dict[str, Any]:
        """For the UI: groups, alerts, deliveries under way, channels and their readiness."""
        now = self._clock.now_ms()
        with self._lock:
            groups = len(self._groups)
            alerts = len(self._alerts)
        return {
            "groups": groups,
            "alerts": alerts,
            "deliveriesInFlight": self._outbox.pending_count(),
            "activeSilences": sum(s.state(now) == "active" for s in self.quieting.silences()),
            "channels": {n: n in self._notifiers for n in self.config.channels},
            "routes": [r.name for r in self.config.routes],
        }


def _build_notifiers(config: NotifyConfig) -> dict[str, Notifier]:
    out: dict[str, Notifier] = {}
    for name, channel in config.channels.items():
        try:
            out[name] = build_notifier(channel)
        except ChannelUnconfigured as exc:
            log.info("notification channel %s is skipped: %s", name, exc)
    return out
