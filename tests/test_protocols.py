"""Response protocols in process on a FakeClock: the file format and its errors, which alerts a
protocol takes, the timeline the dispatcher keeps, escalation at the protocol's response time,
MTTA/MTTR and their events, and actions against a real local HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsmetrics.alerting.delivery import RetryPolicy
from opsmetrics.alerting.dispatcher import Dispatcher
from opsmetrics.alerting.model import Alert, AlertState
from opsmetrics.alerting.notifiers.base import Batch
from opsmetrics.alerting.notifiers.email import email_message
from opsmetrics.alerting.notifiers.pagerduty import pagerduty_event
from opsmetrics.alerting.notifiers.slack import slack_payload
from opsmetrics.alerting.notifiers.webhook import webhook_payload
from opsmetrics.alerting.protocols import ActionRunner, Responder
from opsmetrics.alerting.response_times import response_times
from opsmetrics.alerting.timeline import IncidentLog
from opsmetrics.catalog.notify import parse_notify
from opsmetrics.catalog.protocols import ProtocolSet, parse_protocols
from opsmetrics.catalog.validate import validate_config_dir
from opsmetrics.clock import FakeClock
from opsmetrics.errors import BadDataError, ConfigError
from opsmetrics.model import Event
from opsmetrics.storage.base import Storage
from tests.receivers import Receiver, receiver
from tests.stores import open_store
from tests.test_notify_dispatch import Recorder

T0 = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
S, M = 1000, 60_000

PROTOCOLS = """
protocols:
  - name: checkout-errors
    title: Checkout is failing
    match: {alertname: CheckoutErrors}
    severity: critical
    team: payments
    role: on-call engineer
    response_time: {critical: 2m}
    steps:
      - title: Look at the 5xx ratio by route
        query: sum by (route) (rate(http_requests_total{code=~"5.."}[5m]))
      - {title: Open the engineering dashboard, link: /dashboards/engineering}
      - title: Roll back the last deploy
      - title: Write the incident note
    actions:
      - name: scale-out
        run: auto
        url: "%(url)s/scale"
        headers_env: {Authorization: TEST_SCALER_TOKEN}
        body: '{"service": "{{ $labels.service }}", "errors": {{ $value }}}'
      - {name: flag-off, url: "%(url)s/flag", body: '{"flag": "new_checkout"}'}
  - name: conversion
    kpi: checkout_conversion
    team: growth
    steps: [{title: Check the funnel}]
"""

NOTIFY = """
channels:
  - {name: ops, type: webhook, url: "http://127.0.0.1:9/x"}
  - {name: boss, type: webhook, url: "http://127.0.0.1:9/y"}
routes:
  - match: {severity: critical}
    channels: [ops]
    group_wait: 0s
    escalate_after: 1h
    escalate_to: [boss]
"""


def protocols(url: str = "http://127.0.0.1:9") -> ProtocolSet:
    return ProtocolSet(tuple(parse_protocols(PROTOCOLS % {"url": url}, "protocols/p.yaml")))


def alert(name: str = "CheckoutErrors", state: str = "firing", **labels: str) -> Alert:
    pairs = {"alertname": name, "severity": "critical", "service": "checkout", **labels}
    resolved = state == "resolved"
    return Alert(
        labels=tuple(sorted(pairs.items())),
        annotations=(("summary", "checkout fails"),),
        state=AlertState.INACTIVE if resolved else AlertState.FIRING,
        value=7.0,
        active_at_ms=T0,
        fired_at_ms=T0 + 30 * S,
        resolved_at_ms=T0 + 50 * M if resolved else None,
        rule_id="http.yaml;checkout;CheckoutErrors",
    )


# --- the file ---------------------------------------------------------------------------------
def test_problems_name_the_file_line_and_field() -> None:
    text = """protocols:
  - name: p1
    match: {alertname: X}
    team: sre
    response_time: {critical: soon}
    steps:
      - title: look
        query: 'sum(rate(x[5m])'
    actions:
      - {name: a, run: sometimes, url: "http://x"}
      - {name: b, url: "http://x", body: "{{ if }}"}
"""
    with pytest.raises(ConfigError) as exc:
        parse_protocols(text, "protocols/p.yaml")
    lines = exc.value.message.splitlines()
    assert lines[0].startswith("protocols/p.yaml:5: protocols[0].response_time: critical: 'soon'")
    assert lines[1].startswith("protocols/p.yaml:8: protocols[0].steps[0].query: invalid PromQL")
    assert lines[2].startswith("protocols/p.yaml:10: protocols[0].actions[0].run: ")
    assert lines[3].startswith("protocols/p.yaml:11: protocols[0].actions[1].body: template:")
    assert len(lines) == 4


def test_a_protocol_must_be_attached_and_an_action_needs_one_url() -> None:
    text = "protocols:\n  - {name: p, team: t, steps: [{title: s}], actions: [{name: a}]}\n"
    with pytest.raises(ConfigError, match=r"p.yaml:2: protocols\[0\].actions\[0\]: .*url"):
        parse_protocols(text, "p.yaml")
    loose = "protocols:\n  - {name: p, team: t, steps: [{title: s}]}\n"
    with pytest.raises(ConfigError, match=r"p.yaml:2: protocols\[0\]: .*give match .* or kpi"):
        parse_protocols(loose, "p.yaml")
    secret = (
        "protocols:\n  - {name: p, team: t, match: {a: b}, steps: [{title: s}], actions:\n"
        "     [{name: a, url: 'http://x', headers: {Authorization: 'Bearer x'}}]}\n"
    )
    with pytest.raises(ConfigError, match="headers_env"):
        parse_protocols(secret, "p.yaml")


def test_validate_reports_protocol_problems_and_unknown_kpis(tmp_path: Path) -> None:
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "a.yaml").write_text(PROTOCOLS % {"url": "http://x"})
    [problem] = validate_config_dir(tmp_path)
    assert problem.endswith(
        "protocols/a.yaml:24: protocols[1].kpi: unknown KPI 'checkout_conversion'; "
        "see `opsmetrics kpi list`"
    )
    one = "protocols:\n  - {name: same, match: {a: b}, team: t, steps: [{title: s}]}\n"
    (tmp_path / "protocols" / "a.yaml").write_text(one)
    (tmp_path / "protocols" / "b.yaml").write_text("\n" + one)
    [problem] = validate_config_dir(tmp_path)
    assert problem.endswith(
        "b.yaml:3: name: protocol 'same' is defined at "
        + str(tmp_path / "protocols" / "a.yaml")
        + ":2"
    )


def test_an_alert_takes_the_first_protocol_that_matches() -> None:
    ps = protocols()
    assert ps.for_labels(dict(alert().labels)).name == "checkout-errors"  # type: ignore[union-attr]
    assert ps.for_labels(dict(alert(severity="warning").labels)) is None  # severity: critical
    assert ps.for_labels(dict(alert("Other").labels)) is None
    kpi = {"alertname": "ConversionLow", "kpi": "checkout_conversion", "severity": "warning"}
    assert ps.for_labels(kpi).name == "conversion"  # type: ignore[union-attr]


# --- the dispatcher keeps the timeline ------------------------------------------------------
class Rig:
    def __init__(self, data: Path, url: str = "http://127.0.0.1:9") -> None:
        self.clock = FakeClock(T0)
        self.storage: Storage = open_store(data, T0)
        self.events: list[Event] = []
        self.out = Recorder()
        self.incidents = IncidentLog(self.storage, self.clock, protocols(url), self.events.extend)
        env = {"TEST_SCALER_TOKEN": "Bearer s3cret"}
        self.runner = ActionRunner(self.storage, self.clock, self.incidents, env)
        config = parse_notify(NOTIFY, "notify.yaml")
        self.d = Dispatcher(
            config, self.storage, self.clock, notifiers={"ops": self.out, "boss": self.out},
            retry=RetryPolicy(), responder=Responder(self.incidents, self.runner),
        )  # fmt: skip

    def at(self, offset_ms: int, *alerts: Alert) -> list[Batch]:
        self.clock.set(T0 + offset_ms)
        before = len(self.out.batches)
        if alerts:
            self.d.send(alerts, T0 + offset_ms)
        self.d.tick(T0 + offset_ms)
        self.d.wait_idle()
        return self.out.batches[before:]

    def kinds(self, fp: str) -> list[str]:
        """The timeline's kinds but actions (here they go to a closed port, in the background)."""
        return [e.kind for e in self.incidents.entries(fp) if e.kind != "action"]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path / "data")
    yield r
    r.d.close()
    r.storage.close()


def test_notifications_carry_the_protocol_and_its_first_three_steps(rig: Rig) -> None:
    [batch] = rig.at(30 * S, alert())
    [sent] = webhook_payload(batch)["alerts"]
    assert sent["protocol"] == {
        "name": "checkout-errors", "team": "payments",
        "steps": ["Look at the 5xx ratio by route", "Open the engineering dashboard",
                  "Roll back the last deploy"],
    }  # fmt: skip
    assert "Protocol checkout-errors* (team payments)" in json.dumps(slack_payload(batch))
    text = email_message(batch, "a@example.com", ["b@example.com"]).as_string()
    assert "3. Roll back the last deploy" in text and "Write the incident note" not in text
    [details] = pagerduty_event(batch, "key")["payload"]["custom_details"]["alerts"]
    assert details["protocol"] == webhook_payload(batch)["alerts"][0]["protocol"]
    again = Batch.from_json(batch.to_json())  # a resent intent keeps them
    assert again == batch and again.alerts[0].steps == batch.alerts[0].steps


def test_escalation_follows_the_protocols_response_time(rig: Rig) -> None:
    a = alert()
    rig.at(30 * S, a)  # fired at T0 + 30 s; the protocol says 2 minutes, the route 1 hour
    assert rig.at(2 * M + 29 * S, a) == []
    [escalated] = rig.at(2 * M + 30 * S, a)
    assert escalated.kind == "escalation" and escalated.receiver == "boss"
    assert rig.kinds(a.fingerprint) == ["fired", "notified", "escalated"]
    [entry] = [e for e in rig.storage.timeline(a.fingerprint) if e.kind == "escalated"]
    assert entry.actor == "boss" and json.loads(entry.detail)["status"] == "delivered"


def test_an_acknowledged_alert_is_not_escalated(rig: Rig) -> None:
    a = alert()
    rig.at(30 * S, a)
    rig.clock.set(T0 + 90 * S)
    rig.d.ack(a.fingerprint, "ann", "on it")
    assert rig.at(5 * M, a) == []
    assert rig.kinds(a.fingerprint) == ["fired", "notified", "acknowledged"]


def test_mtta_and_mttr_events_and_response_times_equal_a_hand_computation(rig: Rig) -> None:
    a = alert()
    rig.at(30 * S, a)
    rig.clock.set(T0 + 4 * M + 30 * S)  # acknowledged 4 min after firing (at T0 + 30 s)
    rig.d.ack(a.fingerprint, "ann", "")
    rig.d.ack(a.fingerprint, "bob", "")  # a second ack: MTTA counts the first
    rig.at(50 * M, alert(state="resolved"))  # resolved at T0 + 50 min: 49.5 min after firing
    rig.at(51 * M, alert(state="resolved"))  # re-sent resolved: once
    ack, resolved = rig.events
    assert (ack.name, ack.value, ack.ts) == ("incident_acknowledged", 240.0, T0 + 270 * S)
    assert (resolved.name, resolved.value) == ("incident_resolved", 49.5 * 60)
    assert ack.props == {"rule": "CheckoutErrors", "team": "payments", "severity": "critical",
                         "protocol": "checkout-errors", "source": "timeline"}  # fmt: skip
    assert ack.id == f"timeline-incident_acknowledged-{a.fingerprint}-{T0}"
    entries = rig.storage.timeline_entries(["fired", "acknowledged", "resolved"], T0)
    [by_team] = response_times(entries, "team")
    assert by_team.to_json() == {
        "key": "payments", "incidents": 1, "acknowledged": 1, "resolved": 1,
        "mttaSeconds": 240.0, "mttrSeconds": 2970.0,
    }  # fmt: skip
    with pytest.raises(BadDataError, match="by: use one of rule, team, severity"):
        response_times(entries, "service")


def test_steps_are_recorded_once_with_who_and_note(rig: Rig) -> None:
    a = alert()
    rig.at(30 * S, a)
    rig.clock.set(T0 + M)
    done = rig.incidents.complete_step(a.fingerprint, 2, "ann", "dashboard is red")
    assert json.loads(done.detail)["title"] == "Open the engineering dashboard"
    with pytest.raises(BadDataError, match="step 2 is done already \\(by ann\\)"):
        rig.incidents.complete_step(a.fingerprint, 2, "bob", "")
    with pytest.raises(BadDataError, match="use 1 to 4"):
        rig.incidents.complete_step(a.fingerprint, 5, "bob", "")
    steps = [e for e in rig.storage.timeline(a.fingerprint) if e.kind == "step"]
    assert [(e.actor, e.at_ms) for e in steps] == [("ann", T0 + M)]


# --- actions against a real receiver ----------------------------------------------------------
@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


def test_an_auto_action_runs_once_per_firing_even_after_a_restart(
    tmp_path: Path, hook: Receiver
) -> None:
    r = Rig(tmp_path / "data", hook.url)
    a = alert()
    r.at(30 * S, a)
    [req] = hook.wait_for(1)
    assert req.path == "/scale" and json.loads(req.body) == {"service": "checkout", "errors": 7}
    assert req.headers["authorization"] == "Bearer s3cret"
    key = req.headers["idempotency-key"]
    r.runner.close()
    r.d.close()
    r.storage.close()

    again = Rig(tmp_path / "data", hook.url)  # a restarted process, the same alert instance
    try:
        again.at(2 * M, a)
        again.runner.wait_idle()  # whatever it would send is sent now
        assert len(hook.requests) == 1
        actions = [json.loads(e.detail) for e in again.storage.timeline(a.fingerprint)
                   if e.kind == "action"]  # fmt: skip
        done = [d for d in actions if d["status"] != "claimed"]
        assert sorted(d["status"] for d in actions) == ["claimed", "succeeded"]  # one run
        assert done[0]["key"] == key and done[0]["response"] == {"status": 200, "body": "ok"}
        assert "s3cret" not in json.dumps(actions)  # header values are not logged
    finally:
        again.d.close()
        again.storage.close()


def test_a_failed_action_may_be_run_again_a_succeeded_one_not(tmp_path: Path) -> None:
    with receiver(script=[(503, {}, b"busy")]) as hook:
        r = Rig(tmp_path / "data", hook.url)
        try:
            a = alert()
            r.at(30 * S, a)
            r.runner.wait_idle()  # the auto scale-out got the 503
            again = json.loads(r.runner.run_manual(a, "scale-out", "ann").detail)
            assert again["status"] == "succeeded" and again["response"]["status"] == 200
            with pytest.raises(BadDataError, match="'scale-out' ran already"):
                r.runner.run_manual(a, "scale-out", "bob")
            flag = json.loads(r.runner.run_manual(a, "flag-off", "ann").detail)
            assert flag["request"]["body"] == '{"flag": "new_checkout"}'
            assert [q.path for q in hook.requests] == ["/scale", "/scale", "/flag"]
            got = sorted(
                (e.actor, json.loads(e.detail)["action"], json.loads(e.detail)["status"])
                for e in r.storage.timeline(a.fingerprint)
                if e.kind == "action"
            )
            assert got == [  # the runs of one FakeClock ms: their order is not the point
                ("ann", "flag-off", "claimed"), ("ann", "flag-off", "succeeded"),
                ("ann", "scale-out", "claimed"), ("ann", "scale-out", "succeeded"),
                ("opsmetrics", "scale-out", "claimed"), ("opsmetrics", "scale-out", "failed"),
            ]  # fmt: skip
        finally:
            r.d.close()
            r.storage.close()


def test_an_action_whose_env_var_is_unset_fails_with_a_clear_detail(tmp_path: Path) -> None:
    r = Rig(tmp_path / "data")
    r.runner.env = {}
    try:
        a = alert()
        r.at(30 * S, a)
        r.runner.wait_idle()
        [done] = [
            json.loads(e.detail)
            for e in r.storage.timeline(a.fingerprint)
            if e.kind == "action" and json.loads(e.detail)["status"] != "claimed"
        ]
        assert done["status"] == "failed" and done["request"] is None
        assert "TEST_SCALER_TOKEN is not set" in done["response"]["body"]
    finally:
        r.d.close()
        r.storage.close()


def test_the_demo_protocols_cover_its_checkout_alert_and_conversion_kpi() -> None:
    from opsmetrics.catalog.kpis import load_catalog
    from opsmetrics.catalog.protocols import load_protocols
    from opsmetrics.catalog.validate import EXAMPLE_CONFIG

    ps = load_protocols(EXAMPLE_CONFIG, load_catalog(EXAMPLE_CONFIG).names())
    checkout = {"alertname": "CheckoutErrorRateHigh", "severity": "critical", "team": "payments"}
    assert ps.for_labels(checkout).name == "checkout-errors"  # type: ignore[union-attr]
    kpi = {"alertname": "CheckoutConversionLow", "kpi": "checkout_conversion_rate",
           "severity": "warning"}  # fmt: skip
    assert ps.for_labels(kpi).response_time_ms("warning") == 2 * 3_600_000  # type: ignore[union-attr]


def test_storage_migrate_copies_timelines_once(tmp_path: Path) -> None:
    from opsmetrics.ingest.migrate import migrate_state
    from opsmetrics.storage.duckdb import DuckDBStorage

    src = DuckDBStorage(tmp_path / "src", now_ms=T0)
    dst = DuckDBStorage(tmp_path / "dst", now_ms=T0)
    try:
        clock = FakeClock(T0)
        log = IncidentLog(src, clock, protocols())
        log.fired(alert())
        log.acknowledged(alert(), "ann", "on it", T0 + M)
        assert migrate_state(src, dst, lambda *_: None)["timeline_entries"] == 2
        assert migrate_state(src, dst, lambda *_: None)["timeline_entries"] == 0
        assert dst.timeline(alert().fingerprint) == src.timeline(alert().fingerprint)
    finally:
        src.close()
        dst.close()
