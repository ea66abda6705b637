"""Generic webhook and external Alertmanager notifiers: Alertmanager's JSON shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opsmetrics.alerting.notifiers.base import (
    Batch,
    DeliveryResult,
    HttpPoster,
    NotifiedAlert,
    rfc3339,
)


def webhook_payload(batch: Batch) -> dict[str, Any]:
    """The Alertmanager webhook payload, version 4."""
    return {
        "version": "4",
        "groupKey": batch.group_key,
        "truncatedAlerts": 0,
        "status": batch.status,
        "receiver": batch.receiver,
        "groupLabels": batch.group_labels,
        "commonLabels": batch.common_labels(),
        "commonAnnotations": batch.common_annotations(),
        "externalURL": batch.external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_ms),
                "endsAt": rfc3339(a.ends_at_ms),
                "generatorURL": _absolute(batch.external_url, a.generator_url),
                "fingerprint": a.fingerprint,
                **_protocol(a),
            }
            for a in batch.alerts
        ],
    }


def _protocol(alert: NotifiedAlert) -> dict[str, Any]:
    """`protocol: {name, team, steps}` when a response protocol covers the alert."""
    shown = alert.protocol_json()
    return {"protocol": shown} if shown else {}


def _absolute(base: str, url: str) -> str:
    return base.rstrip("/") + url if url.startswith("/") else url


@dataclass
class WebhookNotifier:
    url: str
    poster: HttpPoster

    def send(self, batch: Batch) -> DeliveryResult:
        return self.poster.post(self.url, webhook_payload(batch))


@dataclass
class AlertmanagerNotifier:
    """Forwards the alerts to an external Alertmanager's `POST /api/v2/alerts`."""

    url: str
    poster: HttpPoster

    def send(self, batch: Batch) -> DeliveryResult:
        body = [
            {
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_ms),
                **({"endsAt": rfc3339(a.ends_at_ms)} if a.ends_at_ms is not None else {}),
                "generatorURL": _absolute(batch.external_url, a.generator_url),
            }
            for a in batch.alerts
        ]
        return self.poster.post(self.url.rstrip("/") + "/api/v2/alerts", body)
