"""PagerDuty Events API v2: trigger, acknowledge and resolve with a stable dedup_key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opsmetrics.alerting.notifiers.base import Batch, DeliveryResult, HttpPoster

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_SEVERITIES = {"critical", "error", "warning", "info"}


def pagerduty_event(batch: Batch, routing_key: str) -> dict[str, Any]:
    action = "resolve" if batch.status == "resolved" else "trigger"
    if batch.kind == "acknowledge":
        action = "acknowledge"
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": batch.group_hash,
    }
    if action == "trigger":
        severity = batch.common_labels().get("severity", "critical")
        event["payload"] = {
            "summary": batch.title()[:1024],
            "source": batch.external_url or "opsmetrics",
            "severity": severity if severity in _SEVERITIES else "critical",
            "group": batch.route,
            "custom_details": {
                "alerts": [
                    {
                        "labels": a.labels,
                        "annotations": a.annotations,
                        "value": a.value,
                        **({"protocol": a.protocol_json()} if a.protocol else {}),
                    }
                    for a in batch.alerts
                ]
            },
        }
        if batch.external_url:
            event["links"] = [
                {"href": batch.external_url.rstrip("/") + "/alerts", "text": "Alerts"}
            ]
    return event


@dataclass
class PagerDutyNotifier:
    routing_key: str
    poster: HttpPoster
    url: str = EVENTS_URL

    def send(self, batch: Batch) -> DeliveryResult:
        return self.poster.post(self.url, pagerduty_event(batch, self.routing_key))
