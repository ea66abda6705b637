"""Apprise: one notifier for the many services apprise URLs reach (json://, mailto://, …)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import apprise

with warnings.catch_warnings():  # apprise's PGP helper imports the deprecated imghdr
    warnings.simplefilter("ignore", DeprecationWarning)
    import apprise.utils.pgp

from opsmetrics.alerting.notifiers.base import Batch, DeliveryResult
from opsmetrics.alerting.notifiers.email import _text


@dataclass
class AppriseNotifier:
    urls: list[str]

    def send(self, batch: Batch) -> DeliveryResult:
        target = apprise.Apprise()
        for url in self.urls:
            if not target.add(url):
                return DeliveryResult(False, detail=f"apprise cannot use URL scheme of {url[:12]}…")
        ok = target.notify(body=_text(batch), title=batch.title())
        if ok:
            return DeliveryResult(True, detail="apprise: sent")
        return DeliveryResult(False, retryable=True, detail="apprise: a service refused or failed")
