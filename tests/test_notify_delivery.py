"""Notifiers against real loopback receivers: payloads, retries, the notification log."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from opsmetrics.alerting.delivery import RetryPolicy
from opsmetrics.alerting.dispatcher import Dispatcher
from opsmetrics.alerting.notifiers import build_notifier
from opsmetrics.alerting.notifiers.base import Batch, NotifiedAlert
from opsmetrics.catalog.notify import parse_notify
from opsmetrics.clock import FakeClock
from opsmetrics.storage.alert_records import NotificationFilter, NotificationRecord
from tests.receivers import receiver
from tests.server import free_port
from tests.stores import open_store
from tests.test_notify_dispatch import T0, S, alert

FAST = RetryPolicy(base_s=0.01, cap_s=0.05)


def config(channel: str) -> str:
    return f"""
channels:
  - {channel}
routes:
  - match: {{severity: critical}}
    channels: [out]
    group_wait: 0s
"""


class Rig:
    def __init__(self, data: Path, channel: str) -> None:
        self.clock = FakeClock(T0)
        self.storage = open_store(data, T0)
        self.d = Dispatcher(
            parse_notify(config(channel), "n.yaml"), self.storage, self.clock,
            external_url="http://ops.example", retry=FAST,
        )  # fmt: skip

    def fire(self, *, resolved: bool = False) -> None:
        state = "resolved" if resolved else "firing"
        self.d.send([alert("Down", state=state)], self.clock.now_ms())
        self.d.tick(self.clock.now_ms())
        self.d.wait_idle()

    def log(self) -> list[NotificationRecord]:
        return self.storage.notifications(NotificationFilter())

    def close(self) -> None:
        self.d.close()
        self.storage.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[type]:
    made: list[Rig] = []

    def factory(channel: str) -> Rig:
        rig = Rig(tmp_path / f"d{len(made)}", channel)
        made.append(rig)
        return rig

    yield factory  # type: ignore[misc]
    for rig in made:
        rig.close()


def test_webhook_v4_payload_and_500_then_200_delivers_once_more(make, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOOK_AUTH_T", "Bearer s3cret")
    with receiver([(500, {}, b"busy")]) as rec:
        rig = make(
            f"{{name: out, type: webhook, url: '{rec.url}/hook', headers: {{X-T: a}}, "
            "headers_env: {Authorization: HOOK_AUTH_T}}"
        )
        rig.fire()
        first, second = rec.wait_for(2)
    assert first.body == second.body and second.headers["x-t"] == "a"
    assert second.headers["authorization"] == "Bearer s3cret"
    body = second.json()
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "out"
    assert body["groupLabels"] == {"alertname": "Down"}
    assert body["commonLabels"]["severity"] == "critical"
    [a] = body["alerts"]
    assert a["fingerprint"] == alert("Down").fingerprint and a["endsAt"].startswith("0001")
    assert a["startsAt"] == "2023-11-14T22:13:20.000Z"
    [row] = rig.log()
    assert (row.status, row.attempts, row.http_status) == ("delivered", 2, 200)


def test_400_is_not_retried_and_logged_failed(make) -> None:  # type: ignore[no-untyped-def]
    with receiver(default=(400, {}, b"bad payload: missing text")) as rec:
        rig = make(f"{{name: out, type: slack, url: '{rec.url}/slack'}}")
        rig.fire()
        assert len(rec.wait_for(1)) == 1
    [row] = rig.log()
    assert row.status == "failed" and row.attempts == 1 and row.http_status == 400
    assert "bad payload: missing text" in row.detail


def test_429_honours_retry_after(make) -> None:  # type: ignore[no-untyped-def]
    with receiver([(429, {"Retry-After": "0"}, b"slow down")]) as rec:
        rig = make(f"{{name: out, type: webhook, url: '{rec.url}'}}")
        rig.fire()
        assert len(rec.wait_for(2)) == 2
    assert rig.log()[0].status == "delivered"


def test_connection_refused_retries_then_fails(make) -> None:  # type: ignore[no-untyped-def]
    with receiver() as rec:
        url = rec.url
    rig = make(f"{{name: out, type: webhook, url: '{url}', max_retries: 2}}")
    rig.fire()
    [row] = rig.log()
    assert row.status == "failed" and row.attempts == 3 and "connection" in row.detail


def test_slack_blocks(make) -> None:  # type: ignore[no-untyped-def]
    with receiver() as rec:
        rig = make(f"{{name: out, type: slack, url: '{rec.url}'}}")
        rig.fire()
        [req] = rec.wait_for(1)
    body = req.json()
    assert body["blocks"][0]["type"] == "header" and "Down" in body["text"]
    assert "value `1`" in body["blocks"][1]["text"]["text"]
    assert "Down on a" in body["blocks"][1]["text"]["text"]


def test_pagerduty_trigger_ack_resolve_share_dedup_key(make, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PD_TEST_KEY", "r0ut1ng")
    with receiver(default=(202, {}, b'{"status":"success"}')) as rec:
        rig = make(
            f"{{name: out, type: pagerduty, url: '{rec.url}/v2/enqueue', "
            "routing_key_env: PD_TEST_KEY}"
        )
        rig.fire()
        rig.d.ack(alert("Down").fingerprint, "ann", "")
        rig.d.wait_idle()
        rig.clock.advance(5 * 60 * S)
        rig.fire(resolved=True)
        reqs = rec.wait_for(3)
    events = [r.json() for r in reqs]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert len({e["dedup_key"] for e in events}) == 1
    assert events[0]["routing_key"] == "r0ut1ng"
    assert events[0]["payload"]["severity"] == "critical"


def test_alertmanager_forwarding(make) -> None:  # type: ignore[no-untyped-def]
    with receiver() as rec:
        rig = make(f"{{name: out, type: alertmanager, url: '{rec.url}'}}")
        rig.fire()
        [req] = rec.wait_for(1)
    assert req.path == "/api/v2/alerts"
    [a] = req.json()
    assert a["labels"]["alertname"] == "Down" and "endsAt" not in a


def test_unset_env_channel_is_skipped(make, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NO_SUCH_HOOK_URL", raising=False)
    rig = make("{name: out, type: webhook, url_env: NO_SUCH_HOOK_URL}")
    rig.fire()
    assert rig.log() == [] and rig.d.status()["channels"] == {"out": False}


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.done = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(envelope.original_content)
        self.done.set()
        return "250 OK"


def test_email_has_text_and_html_parts(make) -> None:  # type: ignore[no-untyped-def]
    box = _Mailbox()
    port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        rig = make(
            f"{{name: out, type: email, smtp_host: 127.0.0.1, smtp_port: {port}, "
            "from: alerts@example.com, to: [ops@example.com]}"
        )
        rig.fire()
        assert box.done.wait(10)
    finally:
        smtp.stop()
    msg = message_from_bytes(box.messages[0])
    assert "Down" in msg["Subject"] and msg["To"] == "ops@example.com"
    types = [p.get_content_type() for p in msg.walk()]
    assert "text/plain" in types and "text/html" in types
    assert rig.log()[0].status == "delivered"


def test_apprise_json_url(make) -> None:  # type: ignore[no-untyped-def]
    with receiver() as rec:
        target = rec.url.replace("http://", "json://") + "/notify"
        rig = make(f"{{name: out, type: apprise, urls: ['{target}']}}")
        rig.fire()
        [req] = rec.wait_for(1)
    body = req.json()
    assert req.path == "/notify" and "Down" in body["title"] and "Down" in body["message"]


def test_pending_intent_is_resent_on_start(tmp_path: Path) -> None:
    batch = Batch(
        "{}/{route=0}:{}", "abc", "out", "route-0", "firing", {},
        (NotifiedAlert("f1", "firing", {"alertname": "Down"}, {}, T0, None, 1.0),),
    )  # fmt: skip
    storage = open_store(tmp_path / "d", T0)
    rec_row = NotificationRecord(
        "id1", batch.group_key, "abc", "route-0", "out", "notify", "pending", "h", ("f1",),
        ("Down",), batch.to_json(), T0,
    )  # fmt: skip
    storage.record_notifications([rec_row])  # as if the server died right after this
    with receiver() as rec:
        cfg = parse_notify(config(f"{{name: out, type: webhook, url: '{rec.url}'}}"), "n.yaml")
        d = Dispatcher(cfg, storage, FakeClock(T0 + S), retry=FAST)
        try:
            assert d.start() == 1
            d.wait_idle()
            [req] = rec.wait_for(1)
        finally:
            d.close()
    assert req.json()["alerts"][0]["fingerprint"] == "f1"
    [row] = storage.notifications(NotificationFilter())
    assert row.status == "delivered" and row.id == "id1"
    storage.close()


def test_build_notifier_reads_secret_from_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOOK_URL_T", "http://127.0.0.1:1/x")
    cfg = parse_notify(config("{name: out, type: webhook, url_env: HOOK_URL_T}"), "n.yaml")
    notifier = build_notifier(cfg.channels["out"])
    assert json.loads(json.dumps({"url": notifier.url}))["url"] == "http://127.0.0.1:1/x"  # type: ignore[attr-defined]
