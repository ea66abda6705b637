"""Scheduled reports end to end: a real server on the fixed instant, a real SMTP sink (aiosmtpd)
and a real webhook receiver. The slot fires by the server's own clock; the email's MIME tree,
CIDs, subject and Message-ID are checked; the webhook answers 500 then 200 and gets one report
with one Idempotency-Key; preview sends nothing; a manual send shows in the runs. A server is
killed with SIGKILL twice in one slot and restarted each time: once after claiming the slot but
before anything reached the SMTP server (the sink holds MAIL FROM), which the restart sends
exactly once, and once in the middle of the SMTP send (the sink has the message but never
answered its DATA), which the restart sends again with the same Message-ID, so each recipient
ends up with one message for the slot."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from opsmetrics.cli.main import app
from tests.receivers import Receiver, receiver
from tests.server import ServerProcess, free_port, wait_until

# Tuesday 2026-12-08 08:59:55 Berlin (07:59:55 UTC): the 09:00 report is five seconds away.
NOW = int(datetime(2026, 12, 8, 7, 59, 55, tzinfo=UTC).timestamp() * 1000)
SLOT = NOW + 5_000
RECIPIENTS = ["ceo@shop.example", "cfo@shop.example"]


@dataclass
class Sink:
    """Keeps every message. `hold("MAIL")` or `hold("DATA")` makes the next such command wait
    until `release` is set: MAIL before the message is sent, DATA with the message kept but
    before its 250."""

    messages: list[tuple[list[str], bytes]] = field(default_factory=list)
    holding: str | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def hold(self, command: str) -> None:
        self.release.set()  # a command still held from before goes on
        self.holding, self.held, self.release = command, threading.Event(), threading.Event()

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await self._wait("MAIL")
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        await self._wait("DATA")
        return "250 OK"

    async def _wait(self, command: str) -> None:
        if self.holding != command:
            return
        self.holding, release = None, self.release
        self.held.set()
        while not release.is_set():
            await asyncio.sleep(0.05)

    def parsed(self) -> list[EmailMessage]:
        return [message_from_bytes(raw, policy=policy.default) for _, raw in self.messages]


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    box, port = Sink(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield box, port
    finally:
        box.release.set()
        smtp.stop()


def config(tmp: Path, smtp_port: int, hook_url: str) -> Path:
    cfg = tmp / "config"
    (cfg / "reports").mkdir(parents=True)
    (cfg / "kpis").mkdir()
    (cfg / "kpis" / "k.yaml").write_text(
        "- {name: queue_depth, title: Queue depth, owner: ops, level: strategic, unit: count,\n"
        "   direction: lower_is_better, promql: sum(queue_depth), target: 10}\n"
    )
    (cfg / "notify.yaml").write_text(
        "channels:\n"
        f"  - {{name: mail, type: email, smtp_host: 127.0.0.1, smtp_port: {smtp_port},\n"
        "     from: reports@shop.example, to: [ops@shop.example], timeout: 30s}\n"
        f"  - {{name: hook, type: webhook, url: '{hook_url}', max_retries: 3}}\n"
    )
    (cfg / "reports" / "board.yaml").write_text(
        "reports:\n"
        "  - name: board\n"
        "    title: Board summary\n"
        "    audience: executive\n"
        '    schedule: "0 9 * * *"\n'
        "    timezone: Europe/Berlin\n"
        "    window: day\n"
        "    formats: [html, pdf]\n"
        "    sources: {kpis: [queue_depth]}\n"
        f"    deliver: [{{channel: mail, to: {RECIPIENTS}}}, {{channel: hook}}]\n"
    )
    return cfg


def server(tmp: Path, cfg: Path, now_ms: int) -> ServerProcess:
    env = {"OPSMETRICS_REPORT_RETRY_BACKOFF": "1s"}
    return ServerProcess(tmp / "data", cfg, env=env, now_ms=now_ms).start()


def runs(srv: ServerProcess) -> list[dict[str, Any]]:
    got = httpx.get(f"{srv.url}/api/v1/reports/board/runs", timeout=30)
    assert got.status_code == 200, got.text
    data: list[dict[str, Any]] = got.json()["data"]
    return data


def channel(run: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in run["deliveries"] if d["channel"] == name)
    return found


def test_the_slot_is_delivered_once_per_channel_and_the_api_shows_it(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    box, port = sink
    script: list[tuple[int, dict[str, str], bytes]] = [(500, {}, b"busy")]
    with receiver(script) as hook:
        srv = server(tmp_path, config(tmp_path, port, hook.url), NOW)
        try:
            listed = httpx.get(f"{srv.url}/api/v1/reports", timeout=30).json()["data"]
            assert [r["name"] for r in listed] == ["board"] and listed[0]["status"] == "never run"
            assert [n["local"] for n in listed[0]["next"]] == [
                "2026-12-08T09:00+01:00",
                "2026-12-09T09:00+01:00",
                "2026-12-10T09:00+01:00",
            ]
            assert listed[0]["next"][0]["utc"] == "2026-12-08T08:00+00:00"
            wait_until(lambda: len(box.messages) == 1 and len(hook.requests) == 2,
                       "the email and the webhook's retry", timeout_s=60)  # fmt: skip
            wait_until(lambda: runs(srv)[0]["status"] == "sent", "the run marked sent")
            _check_email(box.parsed()[0], box.messages[0][0])
            _check_webhook(hook)
            _check_preview_and_send(srv, box, hook)
            _check_cli(srv, tmp_path)
        finally:
            srv.stop()


def _check_email(msg: EmailMessage, rcpt: list[str]) -> None:
    assert sorted(rcpt) == RECIPIENTS and msg["To"] == ", ".join(RECIPIENTS)
    assert msg["Message-ID"] == f"<report.board.{SLOT}.mail@shop.example>"
    assert "Board summary" in msg["Subject"]
    assert msg.get_content_type() == "multipart/mixed"
    body, *attachments = msg.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    text, related = body.iter_parts()
    assert text.get_content_type() == "text/plain"
    html, *images = related.iter_parts()
    assert related.get_content_type() == "multipart/related"
    assert html.get_content_type() == "text/html"
    cids = {p["Content-ID"].strip("<>") for p in images}
    assert all(p.get_content_type() == "image/png" for p in images)
    markup = html.get_content()
    referenced = set(re.findall(r'cid:([^"\')\s]+)', markup))
    assert referenced and referenced <= cids
    # the stylesheet is on the elements (mail clients drop <style>): the h1's font size
    assert "<style" not in markup and re.search(r'<h1 style="[^"]*font-size: 18pt', markup)
    assert [a.get_content_type() for a in attachments] == ["application/pdf"]
    assert attachments[0].get_content().startswith(b"%PDF")
    assert attachments[0].get_filename() == "board-2026-12-08-0900.pdf"


def _check_webhook(hook: Receiver) -> None:
    first, second = hook.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert second.headers["idempotency-key"] == f"board.{SLOT}:hook"
    body = second.json()
    assert body["run_id"] == f"board.{SLOT}" and body["delayed"] is False
    assert body["pdf_base64"] and "kpis" in body["summary"]


def _check_preview_and_send(srv: ServerProcess, box: Sink, hook: Receiver) -> None:
    pdf = httpx.get(f"{srv.url}/api/v1/reports/board/preview",
                    params={"format": "pdf", "at": "2026-12-01T08:00:00Z"}, timeout=60)  # fmt: skip
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    page = httpx.get(f"{srv.url}/api/v1/reports/board/preview", timeout=60)
    assert page.headers["content-type"].startswith("text/html") and "Board summary" in page.text
    bad = httpx.get(f"{srv.url}/api/v1/reports/board/preview?format=docx", timeout=30)
    assert bad.status_code == 400 and "format" in bad.text
    assert len(box.messages) == 1 and len(hook.requests) == 2  # previews send nothing
    sent = httpx.post(f"{srv.url}/api/v1/reports/board/send?to=me@shop.example", timeout=60)
    assert sent.status_code == 200, sent.text
    run = sent.json()["data"]
    assert run["trigger"] == "manual" and run["status"] == "sent"
    assert [d["channel"] for d in run["deliveries"]] == ["mail"]
    assert box.messages[-1][0] == ["me@shop.example"] and len(hook.requests) == 2
    assert [r["run_id"] for r in runs(srv)] == [run["run_id"], f"board.{SLOT}"]
    refused = httpx.post(f"{srv.url}/api/v1/reports/board/send?to=nobody", timeout=30)
    assert refused.status_code == 400 and "to" in refused.text


def _check_cli(srv: ServerProcess, tmp: Path) -> None:
    cli = CliRunner()
    listed = cli.invoke(app, ["reports", "list", "--url", srv.url])
    assert listed.exit_code == 0 and "board" in listed.output and "Europe/Berlin" in listed.output
    raw = cli.invoke(app, ["reports", "list", "--url", srv.url, "--json"])
    nexts = json.loads(raw.output)["data"][0]["next"]
    assert (nexts[0]["local"], nexts[0]["utc"]) == (
        "2026-12-09T09:00+01:00", "2026-12-09T08:00+00:00")  # fmt: skip
    out = tmp / "board.csv"
    got = cli.invoke(app, ["reports", "preview", "board", "--format", "csv", "--out", str(out),
                           "--at", "2026-12-08T08:00:00Z", "--url", srv.url])  # fmt: skip
    assert got.exit_code == 0, got.output
    assert out.read_bytes().splitlines()[1].startswith(b"queue_depth,Queue depth")
    shown = cli.invoke(app, ["reports", "runs", "board", "--url", srv.url, "--json"])
    assert [r["trigger"] for r in json.loads(shown.output)["data"]] == ["manual", "schedule"]


@pytest.mark.clock  # SIGKILL and restarts
def test_a_server_killed_after_the_claim_and_during_the_smtp_send_sends_each_recipient_one_copy(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    box, port = sink
    mid = f"<report.board.{SLOT}.mail@shop.example>"
    with receiver() as hook:
        cfg = config(tmp_path, port, hook.url)
        box.hold("MAIL")
        srv = server(tmp_path, cfg, NOW)
        try:
            wait_until(box.held.is_set, "the SMTP sink holding the report's MAIL FROM",
                       timeout_s=60)  # fmt: skip
            [claimed] = runs(srv)  # the slot is claimed and the email on its way, nothing sent
            mail = channel(claimed, "mail")
            assert claimed["status"] == "running"
            assert (mail["status"], mail["attempts"]) == ("pending", 1)
            srv.kill()
            assert box.messages == []
            box.hold("DATA")  # the MAIL held above goes on, to a closed connection
            srv = server(tmp_path, cfg, NOW + 60_000)
            wait_until(box.held.is_set, "the SMTP sink holding the resent report's DATA",
                       timeout_s=60)  # fmt: skip
            assert len(box.messages) == 1  # the claimed run's one copy, sent after the restart
            srv.kill()  # the sink has the message; the server never heard its 250
            box.release.set()
            srv = server(tmp_path, cfg, NOW + 120_000)
            wait_until(lambda: runs(srv)[0]["status"] == "sent", "the resumed run sent")
            copies = box.parsed()
            assert len(copies) == 2  # one before the second kill, one after: the same message
            assert {m["Message-ID"] for m in copies} == {mid}
            per_recipient = {
                (r, m["Message-ID"])
                for (rcpt, _), m in zip(box.messages, copies, strict=True)
                for r in rcpt
            }
            assert sorted(per_recipient) == [(r, mid) for r in RECIPIENTS]
            [run] = runs(srv)
            assert channel(run, "mail")["attempts"] == 3
            assert channel(run, "hook")["status"] == "sent" and len(hook.requests) == 1
        finally:
            srv.stop()
