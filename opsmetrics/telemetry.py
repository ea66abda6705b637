"""Our own metrics, exposed at /metrics. One registry per server: no import-time globals."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingested_samples = Counter(
            "opsmetrics_ingest_samples", "Samples durably stored", ["source"], registry=r
        )
        self.ingested_events = Counter(
            "opsmetrics_ingest_events", "Events durably stored", ["source"], registry=r
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
