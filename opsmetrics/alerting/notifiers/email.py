"""Email over SMTP (stdlib smtplib): a text part and an HTML part per batch."""

from __future__ import annotations

import html
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

from opsmetrics.alerting.notifiers.base import Batch, DeliveryResult, rfc3339


def email_message(batch: Batch, sender: str, to: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = batch.title()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg.set_content(_text(batch))
    msg.add_alternative(_html(batch), subtype="html")
    return msg


def _text(batch: Batch) -> str:
    lines = [batch.title(), ""]
    for a in batch.alerts:
        lines.append(f"- {a.name} [{a.status}] value {a.value:g} since {rfc3339(a.starts_at_ms)}")
        for k, v in sorted(a.annotations.items()):
            lines.append(f"    {k}: {v}")
        lines.append("    labels: " + ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())))
        if a.protocol:
            lines.append(f"    protocol {a.protocol} (team {a.team}), first steps:")
            lines += [f"      {i}. {title}" for i, title in enumerate(a.steps, 1)]
    if batch.external_url:
        lines += ["", f"Alerts: {batch.external_url.rstrip('/')}/alerts"]
    return "\n".join(lines) + "\n"


def _html(batch: Batch) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(a.name)}</td><td>{a.status}</td><td>{a.value:g}</td>"
        f"<td>{html.escape(a.annotations.get('summary', ''))}</td></tr>"
        for a in batch.alerts
    )
    return (
        f"<html><body><h2>{html.escape(batch.title())}</h2><table>"
        "<tr><th>alert</th><th>status</th><th>value</th><th>summary</th></tr>"
        f"{rows}</table></body></html>"
    )


@dataclass
class EmailNotifier:
    host: str
    port: int
    sender: str
    to: list[str]
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0

    def send(self, batch: Batch) -> DeliveryResult:
        msg = email_message(batch, self.sender, self.to)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            code = int(exc.smtp_code)
            detail = f"SMTP {code}: {exc.smtp_error!r}"[:300]
            return DeliveryResult(False, retryable=code < 500, status_code=code, detail=detail)
        except (smtplib.SMTPException, OSError) as exc:
            return DeliveryResult(False, retryable=True, detail=f"SMTP error: {exc}")
        return DeliveryResult(True, detail="SMTP 250")
