"""A response protocol through the real server: a rule fires, the webhook gets the protocol's
first steps, it escalates at the protocol's response time, steps are completed through the
API in order, the automatic action reaches a local receiver exactly once across a kill -9 and
restart, a manual action runs once, and the timeline, the response times and the mtta / mttr
KPIs all agree with a hand computation."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmetrics.clock import pause
from tests.conftest import FIXED_NOW
from tests.receivers import Receiver, receiver
from tests.server import ServerProcess, run_bounded, wait_until

RULES = """
groups:
  - name: checkout
    interval: 1s
    rules:
      - alert: CheckoutErrors
        expr: checkout_errors > 1
        for: 1s
        labels: {severity: critical}
        annotations: {summary: "checkout fails"}
"""
NOTIFY = """
channels:
  - {name: hook, type: webhook, url: "%(url)s/hook"}
  - {name: pager, type: webhook, url: "%(url)s/pager"}
routes:
  - match: {severity: critical}
    channels: [hook]
    group_wait: 0s
    group_interval: 1s
    escalate_after: 1h
    escalate_to: [pager]
"""
PROTOCOLS = """
protocols:
  - name: checkout-errors
    match: {alertname: CheckoutErrors}
    team: payments
    response_time: {critical: 3s}
    steps:
      - {title: Look at the errors, query: 'checkout_errors'}
      - {title: Open the dashboard, link: /dashboards/engineering}
      - title: Roll back
      - title: Write the note
    actions:
      - name: scale-out
        run: auto
        url: "%(url)s/scale"
        body: '{"service": "{{ $labels.service }}", "errors": {{ $value }}}'
      - {name: flag-off, url: "%(url)s/flag"}
"""
KPIS = """
- {name: mtta, title: MTTA, owner: sre, unit: seconds, grain: week, use: mtta,
   direction: lower_is_better}
- {name: mttr, title: MTTR, owner: sre, unit: seconds, grain: week, use: mttr,
   direction: lower_is_better}
"""


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


def _config(root: Path, url: str) -> Path:
    config = root / "config"
    for sub in ("rules", "protocols", "kpis"):
        (config / sub).mkdir(parents=True)
    (config / "rules" / "checkout.yaml").write_text(RULES)
    (config / "notify.yaml").write_text(NOTIFY % {"url": url})
    (config / "protocols" / "checkout.yaml").write_text(PROTOCOLS % {"url": url})
    (config / "kpis" / "ops.yaml").write_text(KPIS)
    return config


def _push(srv: ServerProcess, value: float) -> None:
    body = [{"name": "checkout_errors", "labels": {"service": "checkout"},
             "ts": srv.clock_ms(), "value": value}]  # fmt: skip
    assert httpx.post(srv.url + "/api/v1/samples", json=body).status_code == 200


def _firing(srv: ServerProcess) -> list[dict[str, Any]]:
    alerts = httpx.get(srv.url + "/api/v1/alerts").json()["data"]["alerts"]
    return [a for a in alerts if a["state"] == "firing"]


def _paths(hooks: Receiver, path: str) -> list[Any]:
    return [r for r in list(hooks.requests) if r.path == path]


def _timeline(srv: ServerProcess, fp: str) -> list[dict[str, Any]]:
    got = httpx.get(srv.url + f"/api/v1/alerts/{fp}/timeline")
    assert got.status_code == 200, got.text
    [instance] = got.json()["data"]["instances"]
    return list(instance["entries"])


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.e2e
def test_a_protocol_from_firing_to_resolved(tmp_path: Path, hooks: Receiver) -> None:
    config = _config(tmp_path, hooks.url)
    srv = ServerProcess(tmp_path / "data", config_dir=config, now_ms=FIXED_NOW).start()
    try:
        fp = _first_run(srv, hooks)
    except AssertionError:
        print(srv.log())
        raise
    finally:
        srv.kill()  # SIGKILL: the scale-out was claimed and sent before
    later = srv.clock_ms() + 60_000
    srv = ServerProcess(tmp_path / "data", config_dir=config, now_ms=later, port=srv.port)
    srv.start()
    try:
        _after_restart(srv, hooks, fp)
    except AssertionError:
        print(srv.log())
        raise
    finally:
        srv.kill()


def _first_run(srv: ServerProcess, hooks: Receiver) -> str:
    _push(srv, 7)
    [alert] = wait_until(lambda: _firing(srv), "the alert firing")
    fp = alert["fingerprint"]
    [note] = wait_until(lambda: _paths(hooks, "/hook"), "the webhook notification")[:1]
    assert note.json()["alerts"][0]["protocol"] == {
        "name": "checkout-errors", "team": "payments",
        "steps": ["Look at the errors", "Open the dashboard", "Roll back"],
    }  # fmt: skip
    [scale] = wait_until(lambda: _paths(hooks, "/scale"), "the automatic action")
    assert scale.json() == {"service": "checkout", "errors": 7}
    assert len(scale.headers["idempotency-key"]) == 32
    wait_until(lambda: _paths(hooks, "/pager"), "the escalation after the 3 s response time")

    for n in (1, 2, 3):  # in order, each by someone, with a note
        done = httpx.post(srv.url + f"/api/v1/alerts/{fp}/steps/{n}",
                          json={"by": "ann", "note": f"step {n} done"})  # fmt: skip
        assert done.status_code == 200, done.text
    again = httpx.post(srv.url + f"/api/v1/alerts/{fp}/steps/1", json={"by": "bob"})
    assert again.status_code == 400 and "step 1 is done already (by ann)" in again.text
    nobody = httpx.post(srv.url + f"/api/v1/alerts/{fp}/steps/4", json={"note": "x"})
    assert nobody.status_code == 400 and nobody.json()["error"].startswith("by: ")
    assert httpx.post(srv.url + f"/api/v1/alerts/{fp}/ack", json={"by": "ann"}).status_code == 200

    ran = httpx.post(srv.url + f"/api/v1/alerts/{fp}/actions/flag-off", json={"by": "ann"})
    assert ran.status_code == 200 and ran.json()["data"]["detail"]["status"] == "succeeded"
    twice = httpx.post(srv.url + f"/api/v1/alerts/{fp}/actions/flag-off", json={"by": "ann"})
    assert twice.status_code == 400 and "ran already" in twice.text
    unknown = httpx.post(srv.url + f"/api/v1/alerts/{fp}/actions/reboot", json={"by": "ann"})
    assert unknown.status_code == 404 and "scale-out, flag-off" in unknown.text

    def scale_done() -> bool:
        done = [e["detail"] for e in _timeline(srv, fp) if e["kind"] == "action"]
        return any(d["status"] == "succeeded" and d["action"] == "scale-out" for d in done)

    wait_until(scale_done, "the automatic action logged")
    return str(fp)


def _after_restart(srv: ServerProcess, hooks: Receiver, fp: str) -> None:
    wait_until(lambda: _firing(srv), "the alert firing again after the restart")
    pause(3)  # the point: in these seconds the restarted server must not send scale-out again
    assert len(_paths(hooks, "/scale")) == 1 and len(_paths(hooks, "/flag")) == 1
    _push(srv, 0)
    wait_until(lambda: any(e["kind"] == "resolved" for e in _timeline(srv, fp)), "resolved")

    entries = _timeline(srv, fp)
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "fired" and kinds[-1] == "resolved" and kinds.count("fired") == 1
    assert {"notified", "escalated", "acknowledged"} <= set(kinds)
    steps = [e for e in entries if e["kind"] == "step"]
    assert [(s["detail"]["step"], s["by"], s["detail"]["note"]) for s in steps] == [
        (1, "ann", "step 1 done"), (2, "ann", "step 2 done"), (3, "ann", "step 3 done")
    ]  # fmt: skip
    runs = [(e["detail"]["action"], e["by"]) for e in entries
            if e["kind"] == "action" and e["detail"]["status"] == "succeeded"]  # fmt: skip
    assert sorted(runs) == [("flag-off", "ann"), ("scale-out", "opsmetrics")]
    [notified] = [e for e in entries if e["kind"] == "notified"][:1]
    assert notified["by"] == "hook" and notified["detail"]["status"] == "delivered"

    at = {e["kind"]: _ms(e["at"]) for e in reversed(entries)}  # the first of each kind
    mtta, mttr = (at["acknowledged"] - at["fired"]) / 1000, (at["resolved"] - at["fired"]) / 1000
    got = httpx.get(srv.url + "/api/v1/alerts/response-times", params={"by": "team"})
    [row] = got.json()["data"]["groups"]
    assert row["key"] == "payments" and row["incidents"] == 1
    assert row["mttaSeconds"] == pytest.approx(mtta) and row["mttrSeconds"] == pytest.approx(mttr)
    bad = httpx.get(srv.url + "/api/v1/alerts/response-times", params={"by": "service"})
    assert bad.status_code == 400 and "by: use one of rule, team, severity" in bad.text

    def kpi(name: str) -> float | None:
        """The KPI's value for this week (FIXED_NOW is a Monday just after midnight UTC)."""
        params = {"grain": "week", "from": "2027-01-04T00:00:00Z"}
        got = httpx.get(srv.url + f"/api/v1/kpis/{name}/series", params=params)
        points = got.json()["data"]["points"]
        return points[-1]["value"] if points else None

    assert wait_until(lambda: kpi("mtta") == pytest.approx(mtta), "the mtta KPI")
    assert wait_until(lambda: kpi("mttr") == pytest.approx(mttr), "the mttr KPI")

    shown = run_bounded(
        [sys.executable, "-m", "opsmetrics", "alerts", "timeline", fp, "--url", srv.url],
        60,
        env={**os.environ, "COLUMNS": "200"},  # rich wraps a table to the terminal's width
    )
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "protocol checkout-errors (team payments)" in text
    assert "scale-out succeeded (HTTP 200)" in text and "2. Open the dashboard" in text
