"""One Settings object, built once from OPSMETRICS_* environment variables and CLI flags.

Every field is documented in docs/configuration.md; a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import ConfigError

ENV_PREFIX = "OPSMETRICS_"
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Ingest limits; each violation is a 4xx naming the item and counted by reason."""

    max_body_bytes: int = 32 * MIB
    max_decompressed_bytes: int = 128 * MIB
    max_samples_per_request: int = 1_000_000
    max_events_per_request: int = 100_000
    max_labels_per_series: int = 30
    max_label_name_bytes: int = 1024
    max_label_value_bytes: int = 4096
    max_series_per_metric: int = 100_000
    future_tolerance_ms: int = 10 * 60_000
    samples_late_window_ms: int = 60 * 60_000
    events_late_window_ms: int = 35 * 86_400_000
    write_queue_max_requests: int = 256
    #: A request's headers, then its body, must arrive within these (slow clients, slowloris).
    header_read_timeout_ms: int = 10_000
    body_read_timeout_ms: int = 60_000
    #: Wrong bearer tokens one client address may present per minute before it gets 429.
    max_token_failures_per_min: int = 10
    #: Decoded samples + events waiting for the writer (the queue's memory, not just its length).
    max_queued_samples: int = 2_000_000
    #: Requests one ingest endpoint handles at once (each endpoint has its own slots). Few:
    #: past a handful per core, more requests at once only lower what the writer gets done.
    max_ingest_concurrency: int = 8
    #: Body bytes held by all ingest requests being read, decoded or waiting for a commit.
    max_ingest_inflight_bytes: int = 256 * MIB


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("data")
    config_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8800
    #: Samples and events: duckdb://DIR (default: the data dir), clickhouse://…, chdb://…
    storage_url: str = ""
    #: KPI versions, tokens, the alert log, leases: duckdb://DIR (default) or postgresql://…
    state_url: str = ""
    #: This node's name among nodes sharing a state store (default: host name and pid).
    node_name: str = ""
    #: Room for writes this node keeps while a remote data store is down (storage/spool.py).
    max_spool_bytes: int = 1024 * MIB
    #: Writes are refused (507) while the data directory's filesystem has less free than this
    #: (storage/diskspace.py): room for DuckDB's checkpoints, so the disk never fills for real.
    min_free_bytes: int = 64 * MIB
    #: DuckDB's buffer pool (its cache of the data file's blocks) at most this: "2GB", "25%"
    #: of the machine's memory; "" keeps DuckDB's own default (80% of memory).
    duckdb_memory_limit: str = ""
    #: An `sql:` KPI query returns at most this many rows and is stopped after this long
    #: (storage/sql_sandbox.py, docs/security.md).
    sql_kpi_max_rows: int = 100_000
    sql_kpi_timeout_ms: int = 10_000
    #: Closed sample partitions are rewritten sorted by (series, ts) once older than this.
    partition_ms: int = 86_400_000
    #: How often the background maintenance (compaction, retention) runs.
    maintenance_interval_ms: int = 60_000
    #: After a restart, pending alerts keep their activeAt if the server was down at most this.
    alert_outage_tolerance_ms: int = 3_600_000
    #: Sample this machine under node_exporter's names (ingest/host.py); flag --collect-host.
    collect_host: bool = False
    collect_host_interval_ms: int = 15_000
    #: A report channel that failed is retried after this, doubling per attempt (docs/reports.md).
    report_retry_backoff_ms: int = 30_000
    #: A report whose last this many runs failed raises OpsmetricsReportFailing.
    max_report_failures: int = 3
    log_level: str = "info"
    #: Where retention's archives go, and whether retention archives before it deletes
    #: (ingest/archive_hook.py; docs/operations.md "Archive and restore").
    archive_dir: Path | None = None
    archive_before_retention: bool = False
    limits: Limits = field(default_factory=Limits)

    @staticmethod
    def from_env(env: Mapping[str, str], **overrides: Any) -> Settings:
        """Build from `OPSMETRICS_<FIELD>` variables, then apply non-None overrides (CLI flags)."""
        top = _read(Settings, env, ENV_PREFIX, skip={"limits"})
        limits = Limits(**_read(Limits, env, ENV_PREFIX, skip=set()))
        top.update({k: v for k, v in overrides.items() if v is not None})
        return Settings(limits=limits, **top)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def env_names() -> list[str]:
    """Every environment variable Settings reads (the docs test checks they are documented)."""
    names = [f for f in fields(Settings) if f.name != "limits"] + list(fields(Limits))
    return [env_key(f.name) for f in names]


def env_key(field_name: str) -> str:
    """`samples_late_window_ms` is set as OPSMETRICS_SAMPLES_LATE_WINDOW=1h (a duration)."""
    name = field_name[:-3] if field_name.endswith("_ms") else field_name
    return ENV_PREFIX + name.upper()


def _read(cls: type, env: Mapping[str, str], prefix: str, skip: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cls):
        key = env_key(f.name)
        if f.name in skip or key not in env:
            continue
        out[f.name] = _convert(key, f.name, env[key])
    return out


def _convert(key: str, name: str, raw: str) -> Any:
    if name.endswith("_ms"):
        return parse_duration_ms(raw, field=key)
    if name in ("collect_host", "archive_before_retention"):
        return _flag(key, raw)
    if name in ("data_dir", "config_dir", "archive_dir"):
        return Path(raw)
    if name == "port" or name.startswith(("max_", "min_")) or name.endswith(("_requests", "_rows")):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key}: {raw!r} is not an integer") from None
    return raw


def _flag(key: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{key}: {raw!r} is not a boolean; use 1 or 0")
