"""Slack incoming webhook: one message per batch, in blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opsmetrics.alerting.notifiers.base import Batch, DeliveryResult, HttpPoster, NotifiedAlert


def slack_payload(batch: Batch) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": batch.title()[:150]}}
    ]
    for alert in batch.alerts[:20]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _line(alert)}})
        if alert.protocol:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _steps(alert)}})
        link = _link(batch, alert)
        if link:
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open>"}]}
            )
    return {"text": batch.title(), "blocks": blocks}


def _line(alert: NotifiedAlert) -> str:
    summary = alert.annotations.get("summary") or alert.annotations.get("description", "")
    threshold = alert.annotations.get("threshold", "")
    parts = [f"*{alert.name}* ({alert.status}) value `{alert.value:g}`"]
    if threshold:
        parts.append(f"threshold `{threshold}`")
    if summary:
        parts.append(summary)
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname")
    return " — ".join(parts) + (f"\n_{labels}_" if labels else "")


def _steps(alert: NotifiedAlert) -> str:
    steps = "\n".join(f"{i}. {title}" for i, title in enumerate(alert.steps, 1))
    return f"*Protocol {alert.protocol}* (team {alert.team}):\n{steps}"


def _link(batch: Batch, alert: NotifiedAlert) -> str:
    url = alert.generator_url
    return batch.external_url.rstrip("/") + url if url.startswith("/") else url


@dataclass
class SlackNotifier:
    url: str
    poster: HttpPoster

    def send(self, batch: Batch) -> DeliveryResult:
        return self.poster.post(self.url, slack_payload(batch))
