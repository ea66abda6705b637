"""Notifiers: one per channel type; `build_notifier` makes one from a notify.yaml channel."""

from __future__ import annotations

import os

from opsmetrics.alerting.notifiers.apprise_ import AppriseNotifier
from opsmetrics.alerting.notifiers.base import Batch, DeliveryResult, HttpPoster, Notifier
from opsmetrics.alerting.notifiers.email import EmailNotifier
from opsmetrics.alerting.notifiers.pagerduty import EVENTS_URL, PagerDutyNotifier
from opsmetrics.alerting.notifiers.slack import SlackNotifier
from opsmetrics.alerting.notifiers.webhook import AlertmanagerNotifier, WebhookNotifier
from opsmetrics.catalog.notify import ChannelModel
from opsmetrics.durations import parse_duration_ms

__all__ = ["Batch", "DeliveryResult", "Notifier", "build_notifier"]


class ChannelUnconfigured(Exception):
    """The channel's secret or URL comes from an environment variable that is not set."""


def _env(name: str | None) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ChannelUnconfigured(f"environment variable {name} is not set")
    return value


def build_notifier(channel: ChannelModel) -> Notifier:
    """A notifier for the channel; ChannelUnconfigured if an env var it needs is unset."""
    timeout_s = parse_duration_ms(channel.timeout) / 1000
    headers = {**channel.headers, **{h: _env(v) or "" for h, v in channel.headers_env.items()}}
    poster = HttpPoster(timeout_s, headers)
    url = channel.url or _env(channel.url_env) or ""
    match channel.type:
        case "webhook":
            return WebhookNotifier(url, poster)
        case "slack":
            return SlackNotifier(url, poster)
        case "alertmanager":
            return AlertmanagerNotifier(url, poster)
        case "pagerduty":
            key = _env(channel.routing_key_env) or ""
            return PagerDutyNotifier(key, poster, url or EVENTS_URL)
        case "email":
            password = _env(channel.password_env)
            return EmailNotifier(
                channel.smtp_host or "", channel.smtp_port, channel.sender or "",
                list(channel.to), channel.starttls, channel.username, password, timeout_s,
            )  # fmt: skip
        case _:
            extra = (_env(channel.urls_env) or "").split() if channel.urls_env else []
            return AppriseNotifier([*channel.urls, *extra])
