"""Dispatcher logic on a FakeClock: grouping, timing, silences, inhibition, ack, escalation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsmetrics.alerting.delivery import RetryPolicy
from opsmetrics.alerting.dispatcher import Dispatcher
from opsmetrics.alerting.model import Alert, AlertState
from opsmetrics.alerting.notifiers.base import Batch, DeliveryResult, Notifier
from opsmetrics.alerting.silences import SilenceMatcher
from opsmetrics.catalog.notify import parse_notify
from opsmetrics.clock import FakeClock
from opsmetrics.storage.alert_records import NotificationFilter
from tests.stores import open_store

T0 = 1_700_000_000_000
S, M = 1000, 60_000

CONFIG = """
channels:
  - {name: ops, type: webhook, url: "http://127.0.0.1:9/x"}
  - {name: boss, type: webhook, url: "http://127.0.0.1:9/y"}
routes:
  - match: {severity: critical}
    channels: [ops]
    group_by: [alertname]
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 1h
    escalate_after: 15m
    escalate_to: [boss]
  - match: {severity: warning}
    channels: [ops]
    group_by: [alertname]
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 4h
    send_resolved: false
inhibit_rules:
  - source_match: {severity: critical}
    target_match: {severity: warning}
    equal: [instance]
"""


class Recorder:
    """The outside world's receiver, in process: records what reaches it."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self._lock = threading.Lock()

    def send(self, batch: Batch) -> DeliveryResult:
        with self._lock:
            self.batches.append(batch)
        return DeliveryResult(True, status_code=200)


class Rig:
    def __init__(self, data: Path, config: str = CONFIG) -> None:
        self.data = data
        self.clock = FakeClock(T0)
        self.config = parse_notify(config, "notify.yaml")
        self.out = Recorder()
        self.storage = open_store(data, T0)
        self.d = self._dispatcher()

    def _dispatcher(self) -> Dispatcher:
        notifiers: dict[str, Notifier] = {n: self.out for n in self.config.channels}
        return Dispatcher(
            self.config, self.storage, self.clock, notifiers=notifiers, retry=RetryPolicy()
        )

    def restart(self) -> None:
        self.d.close()
        self.storage.close()
        self.storage = open_store(self.data, self.clock.now_ms())
        self.d = self._dispatcher()

    def at(self, offset_ms: int, *alerts: Alert) -> list[Batch]:
        """Move to T0 + offset, deliver alerts, tick; the batches sent by this tick."""
        self.clock.set(T0 + offset_ms)
        before = len(self.out.batches)
        if alerts:
            self.d.send(alerts, T0 + offset_ms)
        self.d.tick(T0 + offset_ms)
        self.d.wait_idle()
        return self.out.batches[before:]


def alert(
    name: str, severity: str = "critical", instance: str = "a", state: str = "firing"
) -> Alert:
    labels = tuple(sorted({"alertname": name, "severity": severity, "instance": instance}.items()))
    resolved = state == "resolved"
    return Alert(
        labels=labels,
        annotations=(("summary", f"{name} on {instance}"),),
        state=AlertState.INACTIVE if resolved else AlertState.FIRING,
        value=1.0,
        active_at_ms=T0,
        fired_at_ms=T0,
        resolved_at_ms=T0 + 20 * M if resolved else None,
    )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path / "data")
    yield r
    r.d.close()
    r.storage.close()


def fps(batch: Batch) -> set[str]:
    return {a.labels["instance"] for a in batch.alerts}


def test_alerts_wait_group_wait_then_go_out_together(rig: Rig) -> None:
    assert rig.at(0, alert("Down", instance="a")) == []
    assert rig.at(10 * S, alert("Down", instance="b")) == []
    [batch] = rig.at(30 * S, alert("Down", instance="a"), alert("Down", instance="b"))
    assert batch.receiver == "ops" and batch.status == "firing"
    assert fps(batch) == {"a", "b"} and batch.group_labels == {"alertname": "Down"}


def test_group_by_splits_groups(rig: Rig) -> None:
    batches = rig.at(0, alert("Down"), alert("Slow"))
    batches += rig.at(30 * S)
    assert sorted(b.group_labels["alertname"] for b in batches) == ["Down", "Slow"]


def test_new_alert_waits_for_group_interval_and_repeats_after_repeat_interval(rig: Rig) -> None:
    a, b = alert("Down", instance="a"), alert("Down", instance="b")
    rig.at(0, a)
    assert len(rig.at(30 * S)) == 1
    assert rig.at(60 * S, a, b) == []  # inside group_interval
    [update] = rig.at(30 * S + 5 * M, a, b)
    assert fps(update) == {"a", "b"}
    for minute in range(10, 65, 5):  # unchanged: no notification until repeat_interval
        sent = rig.at(30 * S + minute * M, a, b)
        assert [x for x in sent if x.kind == "notify"] == []
    [repeat] = [x for x in rig.at(30 * S + 65 * M, a, b) if x.kind == "notify"]
    assert fps(repeat) == {"a", "b"}


def test_alert_no_longer_reported_resolves_after_timeout(rig: Rig) -> None:
    rig.at(0, alert("Down"))
    rig.at(30 * S)
    [resolved] = rig.at(5 * M + 31 * S)
    assert resolved.status == "resolved"


def test_send_resolved_notifies_the_resolution(rig: Rig) -> None:
    rig.at(0, alert("Down"))
    rig.at(30 * S)
    [resolved] = rig.at(6 * M, alert("Down", state="resolved"))
    assert resolved.status == "resolved" and resolved.alerts[0].status == "resolved"
    assert resolved.alerts[0].ends_at_ms == T0 + 20 * M
    assert rig.at(20 * M) == []  # the group is gone


def test_send_resolved_false_stays_quiet(rig: Rig) -> None:
    rig.at(0, alert("Disk", severity="warning"))
    assert len(rig.at(30 * S)) == 1
    assert rig.at(6 * M, alert("Disk", severity="warning", state="resolved")) == []


def test_silence_holds_back_until_it_expires(rig: Rig) -> None:
    matchers = (SilenceMatcher("alertname", "Do.*", is_regex=True),)
    sid = rig.d.quieting.put_silence(matchers, T0, T0 + 10 * M, "me", "maintenance", T0)
    rig.at(0, alert("Down"))
    assert rig.at(30 * S) == []
    status = rig.d.alert_status(alert("Down"))
    assert status["silencedBy"] == [sid]
    [batch] = rig.at(10 * M + 30 * S, alert("Down"))  # expired by time
    assert batch.alerts[0].labels["alertname"] == "Down"
    assert rig.d.alert_status(alert("Down"))["silencedBy"] == []


def test_expiring_a_silence_by_hand_releases_alerts(rig: Rig) -> None:
    matchers = (SilenceMatcher("instance", "a"),)
    sid = rig.d.quieting.put_silence(matchers, T0, T0 + 60 * M, "me", "", T0)
    rig.at(0, alert("Down"))
    assert rig.at(30 * S) == []
    rig.d.quieting.expire_silence(sid, T0 + M)
    assert len(rig.at(5 * M + 30 * S, alert("Down"))) == 1
    assert rig.d.quieting.silences()[0].state(T0 + 2 * M) == "expired"


def test_critical_inhibits_warning_on_the_same_instance(rig: Rig) -> None:
    crit, warn = alert("Down", instance="a"), alert("Slow", severity="warning", instance="a")
    other = alert("Slow2", severity="warning", instance="b")
    batches = rig.at(0, crit, warn, other) + rig.at(30 * S)
    names = sorted(b.group_labels["alertname"] for b in batches)
    assert names == ["Down", "Slow2"]
    assert rig.d.alert_status(warn)["inhibitedBy"] == [crit.fingerprint]


def test_escalation_once_after_escalate_after(rig: Rig) -> None:
    rig.at(0, alert("Down"))
    rig.at(30 * S)
    assert [b for b in rig.at(14 * M, alert("Down")) if b.kind == "escalation"] == []
    [esc] = [b for b in rig.at(15 * M, alert("Down")) if b.kind == "escalation"]
    assert esc.receiver == "boss" and esc.title().startswith("ESCALATED")
    assert [b for b in rig.at(25 * M, alert("Down")) if b.kind == "escalation"] == []


def test_ack_stops_repeats_and_escalation(rig: Rig) -> None:
    rig.at(0, alert("Down"))
    rig.at(30 * S)
    rig.d.ack(alert("Down").fingerprint, "alice", "on it")
    later: list[Batch] = []
    for minute in range(5, 125, 5):
        later += rig.at(minute * M + 30 * S, alert("Down"))
    assert later == []
    status = rig.d.alert_status(alert("Down"))
    assert status["acknowledged"] and status["acknowledgedBy"] == "alice"


def test_info_alerts_are_dashboard_only(rig: Rig) -> None:
    cfg = CONFIG.replace("match: {severity: warning}", "match: {}")
    rig2 = Rig(rig.data.parent / "other", cfg)
    try:
        assert rig2.at(0, alert("Note", severity="info")) + rig2.at(30 * S) == []
        assert len(rig2.at(0, alert("Disk", severity="warning")) + rig2.at(31 * S)) == 1
    finally:
        rig2.d.close()
        rig2.storage.close()


def test_mute_time_interval_holds_notifications(tmp_path: Path) -> None:
    # T0 is Tuesday 2023-11-14 22:13 UTC
    cfg = CONFIG.replace(
        "    send_resolved: false\n",
        "    send_resolved: false\n    mute_time_intervals: [nights]\n",
    ) + (
        "time_intervals:\n  - name: nights\n    time_intervals:\n"
        "      - times: [{start_time: '22:00', end_time: '24:00'}]\n        weekdays: [tuesday]\n"
    )
    r = Rig(tmp_path / "d", cfg)
    try:
        assert r.at(0, alert("Disk", severity="warning")) + r.at(30 * S) == []
        assert len(r.at(2 * 60 * M, alert("Disk", severity="warning"))) == 1
    finally:
        r.d.close()
        r.storage.close()


def test_restart_does_not_repeat_inside_repeat_interval(rig: Rig) -> None:
    rig.at(0, alert("Down"))
    assert len(rig.at(30 * S)) == 1
    rig.d.ack(alert("Down").fingerprint, "bob", "")
    rig.restart()
    assert rig.d.quieting.is_acked(alert("Down").fingerprint)
    assert rig.at(10 * M, alert("Down")) + rig.at(11 * M) == []
    log = rig.storage.notifications(NotificationFilter(alert="Down"))
    assert [r.status for r in log] == ["delivered"]


def test_restart_keeps_silences(rig: Rig) -> None:
    sid = rig.d.quieting.put_silence(
        (SilenceMatcher("alertname", "Down"),), T0, T0 + M, "a", "", T0
    )
    rig.restart()
    assert [s.id for s in rig.d.quieting.silences()] == [sid]


class _Producer:
    """A producer whose rule group evaluates rarely: its alert stays active between sends."""

    def __init__(self, alerts: list[Alert]) -> None:
        self.alerts = alerts

    def active_alerts(self) -> list[Alert]:
        return list(self.alerts)


def test_slow_producer_alert_is_not_resolved_by_timeout(tmp_path: Path) -> None:
    r = Rig(tmp_path / "d")
    producer = _Producer([alert("Down")])
    r.d.close()
    notifiers: dict[str, Notifier] = {n: r.out for n in r.config.channels}
    r.d = Dispatcher(r.config, r.storage, r.clock, notifiers=notifiers, source=producer)
    try:
        r.at(0, alert("Down"))
        r.at(30 * S)
        sent = r.at(10 * M + 31 * S)
        assert [b.status for b in sent if b.kind == "notify"] == []
        producer.alerts = []
        [resolved] = [b for b in r.at(16 * M + 31 * S) if b.kind == "notify"]
        assert resolved.status == "resolved"
    finally:
        r.d.close()
        r.storage.close()


def test_channels_label_picks_channels_per_alert(rig: Rig) -> None:
    labels = dict(alert("OrdersDrop").labels) | {"channels": "boss,unknown"}
    kpi_alert = Alert(
        labels=tuple(sorted(labels.items())),
        annotations=(),
        state=AlertState.FIRING,
        value=0.5,
        active_at_ms=T0,
        fired_at_ms=T0,
        source="kpi",
    )
    [batch] = rig.at(0, kpi_alert) + rig.at(30 * S)
    assert batch.receiver == "boss" and batch.group_labels["channels"] == "boss,unknown"


def test_log_and_ended_silences_are_pruned_after_retention(rig: Rig) -> None:
    from opsmetrics.alerting.dispatcher import LOG_RETENTION_MS

    sid = rig.d.quieting.put_silence((SilenceMatcher("instance", "zz"),), T0, T0 + M, "a", "", T0)
    rig.at(0, alert("Down"))
    rig.at(30 * S)
    [first] = rig.storage.notifications(NotificationFilter())
    rig.at(LOG_RETENTION_MS + 2 * M)  # also resolves the alert by timeout: a new notification
    [left] = rig.storage.notifications(NotificationFilter())
    assert left.id != first.id and left.created_ms == T0 + LOG_RETENTION_MS + 2 * M
    assert [s.id for s in rig.storage.silences()] == [] and rig.d.quieting.silences() == []
    assert sid
