"""Alerting telemetry on /metrics through the real server: notifications by channel and
outcome (a webhook that fails once, one that refuses), their latency, the active alerts by
state and source, and rule group evaluations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opsmetrics.telemetry import Telemetry
from tests.receivers import receiver
from tests.server import ServerProcess, wait_until

RULES = """
groups:
  - name: fast
    interval: 1s
    rules:
      - alert: AlwaysOn
        expr: vector(1) > 0
        labels: {severity: critical}
      - alert: SlowToFire
        expr: vector(1) > 0
        for: 1h
        labels: {severity: critical}
"""

NOTIFY = """
channels:
  - {name: hook, type: webhook, url: "%s/hook", max_retries: 3}
  - {name: refused, type: webhook, url: "%s/refused"}
routes:
  - match: {severity: critical}
    channels: [hook, refused]
    group_wait: 0s
    group_interval: 1h
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url + "/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.mark.e2e
def test_notifications_alerts_and_rule_evaluations_show_on_metrics(tmp_path: Path) -> None:
    once_down = [(503, {}, b"busy")]
    with receiver(once_down) as hook, receiver(default=(400, {}, b"bad")) as refused:
        config = tmp_path / "config"
        (config / "rules").mkdir(parents=True)
        (config / "rules" / "fast.yaml").write_text(RULES)
        (config / "notify.yaml").write_text(NOTIFY % (hook.url, refused.url))
        srv = ServerProcess(tmp_path / "data", config_dir=config).start()
        try:
            _check(srv.url, hook.wait_for)
            assert len(refused.requests) == 1  # a 4xx is not retried
        except AssertionError:
            print(srv.log())
            raise
        finally:
            srv.kill()


def _check(url: str, hook_wait: Callable[[int], Any]) -> None:
    hook_wait(2)  # the 503, then the retry that is delivered

    def settled() -> Samples | None:
        got = scrape(url)
        done = value(got, "opsmetrics_notifications_total", channel="hook", outcome="delivered")
        failed = value(got, "opsmetrics_notifications_total", channel="refused", outcome="failed")
        return got if done and failed else None

    got = wait_until(settled, "delivered and failed notifications on /metrics")
    total = "opsmetrics_notifications_total"
    assert value(got, total, channel="hook", outcome="delivered") == 1
    assert value(got, total, channel="hook", outcome="retried") == 1
    assert value(got, total, channel="hook", outcome="failed") is None
    assert value(got, total, channel="refused", outcome="failed") == 1
    assert value(got, total, channel="refused", outcome="retried") is None
    assert value(got, "opsmetrics_notification_seconds_count", channel="hook") == 1
    assert value(got, "opsmetrics_alerts", state="firing", source="rule") == 1
    assert value(got, "opsmetrics_alerts", state="pending", source="rule") == 1
    assert value(got, "opsmetrics_alerts", state="firing", source="kpi") == 0
    evaluations = value(got, "opsmetrics_rule_evaluation_seconds_count", group="fast")
    assert evaluations is not None and evaluations >= 1
    assert value(got, "opsmetrics_rule_evaluation_failures_total", group="fast") is None


def test_alert_counts_follow_the_sources_at_scrape_time() -> None:
    class Stated:
        def __init__(self, state: str) -> None:
            self.state = state

    active: list[Stated] = [Stated("pending")]
    telemetry = Telemetry()
    telemetry.watch_alerts(kpi=lambda: active)
    registry = telemetry.registry
    assert (
        registry.get_sample_value("opsmetrics_alerts", {"state": "pending", "source": "kpi"}) == 1
    )
    active[:] = [Stated("firing"), Stated("firing")]
    assert (
        registry.get_sample_value("opsmetrics_alerts", {"state": "pending", "source": "kpi"}) == 0
    )
    assert registry.get_sample_value("opsmetrics_alerts", {"state": "firing", "source": "kpi"}) == 2


def test_a_delivery_with_retries_counts_each_retry() -> None:
    telemetry = Telemetry()
    telemetry.notified("mail", False, 4, 1.5)
    got = telemetry.registry.get_sample_value
    assert got("opsmetrics_notifications_total", {"channel": "mail", "outcome": "failed"}) == 1
    assert got("opsmetrics_notifications_total", {"channel": "mail", "outcome": "retried"}) == 3
    assert got("opsmetrics_notification_seconds_sum", {"channel": "mail"}) == 1.5


def test_watching_again_replaces_the_sources() -> None:
    class Firing:
        state = "firing"

    telemetry = Telemetry()
    telemetry.watch_alerts(rule=lambda: [Firing()])
    telemetry.watch_alerts(rule=lambda: [Firing(), Firing()])  # a second app, same services
    got = telemetry.registry.get_sample_value
    assert got("opsmetrics_alerts", {"state": "firing", "source": "rule"}) == 2
