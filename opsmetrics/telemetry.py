"""Our own metrics, exposed at /metrics. One registry per server: no import-time globals."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: Seconds one notification took to deliver, retries and their waits included.
NOTIFY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
ALERT_STATES = ("pending", "firing")


class _Stated(Protocol):
    @property
    def state(self) -> object: ...


class AlertCounts(Collector):
    """`opsmetrics_alerts{state, source}`, counted from the sources' active alerts at scrape
    time, so the gauge can never lag behind what /api/v1/alerts shows."""

    def __init__(self, sources: Mapping[str, Callable[[], Sequence[_Stated]]]) -> None:
        self._sources = dict(sources)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "opsmetrics_alerts", "Active alerts by state and source", labels=["state", "source"]
        )
        for source, active in self._sources.items():
            counts = dict.fromkeys(ALERT_STATES, 0)
            for alert in active():
                state = getattr(alert.state, "value", str(alert.state))
                if state in counts:
                    counts[state] += 1
            for state, n in counts.items():
                family.add_metric([state, source], n)
        yield family


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._alert_counts: AlertCounts | None = None
        r = self.registry
        self.ingested_samples = Counter(
            "opsmetrics_ingest_samples", "Samples durably stored", ["source"], registry=r
        )
        self.ingested_events = Counter(
            "opsmetrics_ingest_events", "Events durably stored", ["source"], registry=r
        )
        self.duplicate_events = Counter(
            "opsmetrics_ingest_duplicate_events",
            "Events not stored because an event with the same id (or content) was stored "
            "already, by event name (counted by the DuckDB store)",
            ["name"],
            registry=r,
        )
        self.rejected = Counter(
            "opsmetrics_ingest_rejected",
            "Ingest requests (or items) rejected, by reason",
            ["reason"],
            registry=r,
        )
        self.commits = Counter("opsmetrics_storage_commits", "Group commits written", registry=r)
        self.commit_seconds = Histogram(
            "opsmetrics_storage_commit_seconds", "Time to write one group commit", registry=r
        )
        self.group_requests = Histogram(
            "opsmetrics_storage_group_requests",
            "Requests per group commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.queue_depth = Gauge(
            "opsmetrics_ingest_queue_depth", "Write requests waiting for a commit", registry=r
        )
        self.http_seconds = Histogram(
            "opsmetrics_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "code"],
            registry=r,
        )
        self.storage_bytes = Gauge(
            "opsmetrics_storage_bytes", "Bytes used by the database", ["kind"], registry=r
        )
        self.storage_rows = Gauge(
            "opsmetrics_storage_rows", "Rows stored, by data class", ["kind"], registry=r
        )
        self.spool = Gauge(
            "opsmetrics_spool",
            "Writes this node holds while the data store is down (storage/spool.py): bytes, "
            "batches, oldest_age_seconds, rejected (set aside for an operator), max_bytes",
            ["kind"],
            registry=r,
        )
        self.storage_writable = Gauge(
            "opsmetrics_storage_writable",
            "1 while the directory takes writes; 0 with the reason (below_reserve: less free "
            "than OPSMETRICS_MIN_FREE_BYTES; disk_full: a write found no space)",
            ["directory", "reason"],
            registry=r,
        )
        self.storage_free_bytes = Gauge(
            "opsmetrics_storage_free_bytes",
            "Bytes free (to us) on the filesystem of a directory the server writes to",
            ["directory"],
            registry=r,
        )
        self.storage_min_free_bytes = Gauge(
            "opsmetrics_storage_min_free_bytes",
            "The reserve below which writes are refused (OPSMETRICS_MIN_FREE_BYTES)",
            ["directory"],
            registry=r,
        )
        self.notifications = Counter(
            "opsmetrics_notifications",
            "Notification deliveries by channel and outcome (delivered, failed, retried: one "
            "per retry)",
            ["channel", "outcome"],
            registry=r,
        )
        self.notification_seconds = Histogram(
            "opsmetrics_notification_seconds",
            "Time to deliver one notification, retries included",
            ["channel"],
            buckets=NOTIFY_BUCKETS,
            registry=r,
        )
        self.rule_evaluation_seconds = Histogram(
            "opsmetrics_rule_evaluation_seconds",
            "Time to evaluate one rule group",
            ["group"],
            registry=r,
        )
        self.rule_evaluation_failures = Counter(
            "opsmetrics_rule_evaluation_failures",
            "Rule evaluations that failed, by group",
            ["group"],
            registry=r,
        )
        # Prometheus's own names, so its dashboards and runbooks work here; `rule_group` is
        # "<file>;<group>" for rule groups and the rule's id for KPI alert rules.
        self.rule_group_last_duration = Gauge(
            "prometheus_rule_group_last_duration_seconds",
            "Seconds the group's last evaluation took",
            ["rule_group"],
            registry=r,
        )
        self.rule_group_iterations_missed = Counter(
            "prometheus_rule_group_iterations_missed",
            "Evaluations of the group skipped because an earlier one ran late",
            ["rule_group"],
            registry=r,
        )
        self.rule_group_last_samples = Gauge(
            "prometheus_rule_group_last_evaluation_samples",
            "Samples the group's rules produced in its last evaluation",
            ["rule_group"],
            registry=r,
        )
        self.rule_group_interval = Gauge(
            "prometheus_rule_group_interval_seconds",
            "The interval of the rule group",
            ["rule_group"],
            registry=r,
        )
        self.rule_evaluations = Counter(
            "prometheus_rule_evaluations",
            "Rule evaluations, by group",
            ["rule_group"],
            registry=r,
        )
        self.rule_failures = Counter(
            "prometheus_rule_evaluation_failures",
            "Rule evaluations that failed, by group",
            ["rule_group"],
            registry=r,
        )

    def notified(self, channel: str, delivered: bool, attempts: int, seconds: float) -> None:
        """Count one finished delivery of `attempts` attempts."""
        self.notifications.labels(channel, "delivered" if delivered else "failed").inc()
        if attempts > 1:
            self.notifications.labels(channel, "retried").inc(attempts - 1)
        self.notification_seconds.labels(channel).observe(seconds)

    def rule_group_evaluated(
        self,
        group: str,
        key: str,
        *,
        seconds: float,
        samples: int,
        failures: int,
        missed: int,
        rules: int = 0,
        interval_s: float = 0.0,
    ) -> None:
        """Count one evaluation of a rule group (`group` its name, `key` its rule_group)."""
        self.rule_evaluation_seconds.labels(group).observe(seconds)
        if failures:
            self.rule_evaluation_failures.labels(group).inc(failures)
        self.rule_group_last_duration.labels(key).set(seconds)
        self.rule_group_last_samples.labels(key).set(samples)
        self.rule_group_iterations_missed.labels(key).inc(missed)
        self.rule_group_interval.labels(key).set(interval_s)
        self.rule_evaluations.labels(key).inc(rules)
        self.rule_failures.labels(key).inc(failures)

    def watch_alerts(self, **sources: Callable[[], Sequence[_Stated]]) -> None:
        """Export `opsmetrics_alerts{state, source}` from each source's active alerts; a later
        call (another app over the same services) replaces the earlier sources."""
        if self._alert_counts is not None:
            self.registry.unregister(self._alert_counts)
        self._alert_counts = AlertCounts(sources)
        self.registry.register(self._alert_counts)
