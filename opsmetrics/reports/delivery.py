"""Sending a rendered report through a notify.yaml channel: email, Slack or webhook.

Every channel sends the same artefact with an identity derived from the slot, the same on every
attempt, so receivers can drop a repeat: email a `Message-ID` (`<report.{run}.{channel}@{domain
of the sender}>`), webhooks an `Idempotency-Key` header (`{run}:{channel}`). Email is the MIME
tree mail clients show best: mixed → alternative(text/plain, related(html, image/png parts
with Content-ID)) + the PDF (and CSV) attached. The HTML's CSS is written onto its elements
(`style="…"`; css-inline), since many mail clients drop a `<style>` block.
"""

from __future__ import annotations

import base64
import functools
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol

import css_inline
import httpx

from opsmetrics.alerting.notifiers.base import DeliveryResult, classify
from opsmetrics.catalog.notify import ChannelModel
from opsmetrics.catalog.reports import ReportSpec
from opsmetrics.durations import parse_duration_ms
from opsmetrics.reports.rendered import RenderedReport
from opsmetrics.storage.report_records import ReportRun

#: The template's stylesheet inlined, the block dropped (its @page rules are the PDF's); never
#: fetches anything.
_EMAIL_CSS = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One report run for one channel: what a sender needs besides the artefact."""

    spec: ReportSpec
    run: ReportRun
    channel: str
    recipients: tuple[str, ...]
    message_id: str
    #: Where the report can be opened (the server's /reports page).
    link: str
    sent_ms: int


class ReportSender(Protocol):
    def send(self, report: RenderedReport, out: Outgoing) -> DeliveryResult:
        """One attempt; retries are the caller's (reports/runs.py)."""
        ...


class ChannelUnconfiguredError(Exception):
    """The channel's URL or secret comes from an environment variable that is not set."""


def message_id(run_id: str, channel: ChannelModel) -> str:
    """The channel's message identity for a run: a Message-ID for email, else a key."""
    if channel.type != "email":
        return f"{run_id}:{channel.name}"
    domain = (channel.sender or "").rpartition("@")[2] or "opsmetrics.invalid"
    return f"<report.{run_id}.{channel.name}@{domain}>"


def build_sender(channel: ChannelModel, env: Mapping[str, str]) -> ReportSender:
    """A sender for an email, Slack or webhook channel; ChannelUnconfiguredError if an
    environment variable it names is unset."""
    timeout_s = parse_duration_ms(channel.timeout) / 1000
    if channel.type == "email":
        password = _env(env, channel.password_env) if channel.password_env else None
        return EmailSender(channel, password, timeout_s)
    url = channel.url or _env(env, channel.url_env)
    headers = {**channel.headers, **{h: _env(env, v) for h, v in channel.headers_env.items()}}
    if channel.type == "slack":
        return SlackSender(url, headers, timeout_s)
    return WebhookSender(url, headers, timeout_s)


def _env(env: Mapping[str, str], name: str | None) -> str:
    value = env.get(name or "", "")
    if not value:
        raise ChannelUnconfiguredError(f"environment variable {name} is not set")
    return value


# --- email -------------------------------------------------------------------------------
def email_message(report: RenderedReport, out: Outgoing, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = report.subject
    msg["From"] = sender
    msg["To"] = ", ".join(out.recipients)
    msg["Date"] = format_datetime(datetime.fromtimestamp(out.sent_ms / 1000, UTC))
    msg["Message-ID"] = out.message_id
    msg["X-Opsmetrics-Report"] = f"{out.spec.name}; run={out.run.run_id}"
    msg.set_content(report.text)
    msg.add_alternative(_EMAIL_CSS.inline(report.html_email), subtype="html")
    html_part = msg.get_body(("html",))
    assert html_part is not None
    for cid, png in report.images.items():
        html_part.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>")
    stem = attachment_stem(out.spec, out.run)
    if report.pdf is not None and "pdf" in out.spec.formats:
        msg.add_attachment(report.pdf, maintype="application", subtype="pdf",
                           filename=f"{stem}.pdf")  # fmt: skip
    if report.csv is not None and "csv" in out.spec.formats:
        msg.add_attachment(report.csv, maintype="text", subtype="csv", filename=f"{stem}.csv")
    return msg


def attachment_stem(spec: ReportSpec, run: ReportRun) -> str:
    """`executive-daily-2027-03-28-0800`: the report and its slot in its own time zone."""
    local = datetime.fromtimestamp(run.slot_ms / 1000, UTC).astimezone(spec.tz)
    return f"{spec.name}-{local:%Y-%m-%d-%H%M}"


@dataclass
class EmailSender:
    channel: ChannelModel
    password: str | None
    timeout_s: float

    def send(self, report: RenderedReport, out: Outgoing) -> DeliveryResult:
        c = self.channel
        msg = email_message(report, out, c.sender or "")
        try:
            with smtplib.SMTP(c.smtp_host or "", c.smtp_port, timeout=self.timeout_s) as smtp:
                if c.starttls:
                    smtp.starttls()
                if c.username:
                    smtp.login(c.username, self.password or "")
                smtp.send_message(msg, to_addrs=list(out.recipients))
        except smtplib.SMTPResponseException as exc:
            code = int(exc.smtp_code)
            detail = f"SMTP {code}: {exc.smtp_error!r}"[:300]
            return DeliveryResult(False, retryable=code < 500, status_code=code, detail=detail)
        except (smtplib.SMTPException, OSError) as exc:
            return DeliveryResult(False, retryable=True, detail=f"SMTP error: {exc}"[:300])
        return DeliveryResult(True, detail="SMTP 250")


# --- webhook and Slack -------------------------------------------------------------------
def webhook_payload(report: RenderedReport, out: Outgoing) -> dict[str, Any]:
    """The JSON a webhook receives: the numbers and explanations, the run, the PDF."""
    run = out.run
    return {
        "version": "1",
        "report": out.spec.name,
        "title": out.spec.title,
        "audience": out.spec.audience,
        "run_id": run.run_id,
        "slot": _rfc3339(run.slot_ms),
        "trigger": run.trigger.value,
        "delayed": run.delayed,
        "subject": report.subject,
        "link": out.link,
        "sha256": report.sha256,
        "summary": report.summary,
        "text": report.text,
        **_encoded("pdf", report.pdf if "pdf" in out.spec.formats else None),
        **_encoded("csv", report.csv if "csv" in out.spec.formats else None),
    }


def _encoded(name: str, data: bytes | None) -> dict[str, str]:
    return {} if data is None else {f"{name}_base64": base64.b64encode(data).decode()}


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")[:-6] + "Z"


def post_json(
    url: str, payload: Any, headers: Mapping[str, str], timeout_s: float
) -> DeliveryResult:
    """One POST; a 2xx is delivered, 429/5xx and connection errors are worth retrying."""
    try:
        with httpx.Client(timeout=timeout_s, verify=_tls()) as client:
            response = client.post(url, json=payload, headers=dict(headers))
    except httpx.HTTPError as exc:
        return DeliveryResult(False, retryable=True, detail=f"{type(exc).__name__}: {exc}"[:300])
    return classify(response)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every POST: loading the CA bundle costs ~20 ms each time."""
    return ssl.create_default_context()


@dataclass
class WebhookSender:
    url: str
    headers: dict[str, str]
    timeout_s: float

    def send(self, report: RenderedReport, out: Outgoing) -> DeliveryResult:
        headers = {**self.headers, "Idempotency-Key": out.message_id}
        return post_json(self.url, webhook_payload(report, out), headers, self.timeout_s)


def slack_payload(report: RenderedReport, out: Outgoing) -> dict[str, Any]:
    """A header, one line per KPI (value, attainment, change) and a link to the report."""
    lines = [kpi_line(k) for k in report.summary.get("kpis", [])[:30] if isinstance(k, dict)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": report.subject[:150]}}
    ]
    body = "\n".join(lines) or report.text[:2900]
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}})
    if out.link:
        link = f"<{out.link}|Open the report>"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    return {"text": report.subject, "blocks": blocks}


def kpi_line(kpi: Mapping[str, Any]) -> str:
    """`• *Revenue*: EUR 12,400 · 96% of target · on track · up 4% (better)`; a KPI without
    data shows its warning, never a 0."""
    title = kpi.get("title") or kpi.get("name") or "?"
    if kpi.get("warning"):
        return f"• *{title}*: {kpi['warning']}"
    attainment = kpi.get("attainment")
    parts = [
        kpi.get("formatted") or "no data",
        f"{attainment:.0%} of target" if isinstance(attainment, int | float) else "",
        kpi.get("status_text") or "",
        kpi.get("change_text") or "",
    ]
    return f"• *{title}*: {' · '.join(str(p) for p in parts if p)}"


@dataclass
class SlackSender:
    url: str
    headers: dict[str, str]
    timeout_s: float

    def send(self, report: RenderedReport, out: Outgoing) -> DeliveryResult:
        return post_json(self.url, slack_payload(report, out), self.headers, self.timeout_s)
