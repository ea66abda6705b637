"""The ClickHouse schema: table DDL, numbered migrations, and the cluster form of both.

Every statement is `CREATE … IF NOT EXISTS`, so a migration can run twice (two nodes starting
at once) without harm; `schema_migrations` records which numbers ran. The single-node DDL is
the source of truth: `clustered` rewrites each statement into its `ON CLUSTER` form — a
`Replicated*MergeTree` table `<name>_local` on every node plus a `Distributed` table `<name>`
over it, sharded by series id (samples, series, rollups) or by `cityHash64(entity)` (events, so
one user's funnel stays on one shard) — so the backend's queries, which name `<name>`, run
unchanged on either.

Times are Int64 milliseconds; a sample partition is one UTC day, `intDiv(ts, 86400000)`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opsmetrics.storage.base import DAY_MS, ROLLUP_WIDTHS_MS, RetentionPolicy

#: Block hashes kept per non-replicated table for insert deduplication (retried writes).
DEDUP_WINDOW = 1000

SAMPLES = f"""CREATE TABLE IF NOT EXISTS samples (
    metric LowCardinality(String),
    series_id Int64,
    ts Int64 CODEC(DoubleDelta, ZSTD(1)),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    nan_bits UInt64 DEFAULT 0 CODEC(ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY intDiv(ts, {DAY_MS})
ORDER BY (metric, series_id, ts)
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}, ttl_only_drop_parts = 1"""

SERIES = f"""CREATE TABLE IF NOT EXISTS series (
    id Int64,
    metric LowCardinality(String),
    labels Map(String, String),
    INDEX series_id_idx id TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree
ORDER BY (metric, id)
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"""

METADATA = """CREATE TABLE IF NOT EXISTS metadata (
    metric String,
    type LowCardinality(String),
    help String,
    unit String
) ENGINE = ReplacingMergeTree
ORDER BY metric"""

ANNOTATIONS = """CREATE TABLE IF NOT EXISTS annotations (
    id String,
    ts Int64,
    end_ts Nullable(Int64),
    title String,
    tags Array(String),
    text String
) ENGINE = ReplacingMergeTree
ORDER BY id"""

#: One row per compacted sample partition: the newest insert block it covered.
SAMPLE_PARTITIONS = """CREATE TABLE IF NOT EXISTS sample_partitions (
    start_ms Int64,
    end_ms Int64,
    max_block Int64,
    compacted_ms Int64
) ENGINE = ReplacingMergeTree
ORDER BY start_ms"""

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_ms Int64
) ENGINE = ReplacingMergeTree
ORDER BY version"""


def rollups_table(width_ms: int) -> str:
    """The table of one width's buckets: `rollups_300s`, `rollups_3600s`."""
    if width_ms not in ROLLUP_WIDTHS_MS:
        raise ValueError(f"no rollups of width {width_ms} ms; widths are {ROLLUP_WIDTHS_MS}")
    return f"rollups_{width_ms // 1000}s"


def rollups_ddl(width_ms: int) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {rollups_table(width_ms)} (
    series_id Int64,
    bucket Int64 CODEC(DoubleDelta, ZSTD(1)),
    min_v Float64 CODEC(Gorilla, ZSTD(1)),
    max_v Float64 CODEC(Gorilla, ZSTD(1)),
    sum_v Float64 CODEC(Gorilla, ZSTD(1)),
    n UInt32,
    first_v Float64 CODEC(Gorilla, ZSTD(1)),
    first_ts Int64 CODEC(DoubleDelta, ZSTD(1)),
    last_v Float64 CODEC(Gorilla, ZSTD(1)),
    last_ts Int64 CODEC(DoubleDelta, ZSTD(1)),
    inc Float64 CODEC(Gorilla, ZSTD(1)),
    nonfinite UInt32
) ENGINE = ReplacingMergeTree
PARTITION BY intDiv(bucket, {DAY_MS})
ORDER BY (series_id, bucket)
SETTINGS ttl_only_drop_parts = 1"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def migrations(events_schema: Sequence[str]) -> list[Migration]:
    """The numbered migrations, oldest first; `events_schema` is ClickHouseEvents.schema()."""
    return [
        Migration(
            1, "samples, series, metadata, annotations", (SAMPLES, SERIES, METADATA, ANNOTATIONS)
        ),
        Migration(
            2,
            "rollups and compaction state",
            (*(rollups_ddl(w) for w in ROLLUP_WIDTHS_MS), SAMPLE_PARTITIONS),
        ),
        Migration(3, "events", tuple(events_schema)),
    ]


def schema_statements(
    events_schema: Sequence[str], cluster: str | None = None, database: str = "default"
) -> list[str]:
    """Every statement of the schema, single-node or (with `cluster`) in ON CLUSTER form."""
    plain = [MIGRATIONS_TABLE] + [
        textwrap.dedent(s).strip() for m in migrations(events_schema) for s in m.statements
    ]
    if cluster is None:
        return plain
    return [out for s in plain for out in clustered(s, cluster, database)]


# --- the cluster form -------------------------------------------------------------------
_CREATE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+) \(")
_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (\w+) ")
_ENGINE = re.compile(r"ENGINE = (\w*MergeTree)(\(([^)]*)\))?")
_DEDUP = re.compile(r"non_replicated_deduplication_window = \d+(, )?")
_EMPTY_SETTINGS = re.compile(r"\s*SETTINGS\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sharding_key(table: str, ddl: str) -> str:
    """How a Distributed table spreads rows. Rows that a ReplacingMergeTree must merge (same
    order key) land on one shard: by series for samples, series and rollups, by entity for
    events (a user's funnel is then one shard's work too), else by a hash of the order key."""
    if table == "series":
        return "id"
    if table == "samples" or table.startswith("rollups_"):
        return "series_id"
    if re.search(r"\bentity\s+(LowCardinality\()?String\b", ddl):
        return "cityHash64(entity)"
    order = re.search(r"ORDER BY \(?([^)\n]+)\)?", ddl)
    if order is None:
        return "rand()"
    return f"cityHash64({order.group(1).strip()})"


def clustered(ddl: str, cluster: str, database: str) -> list[str]:
    """A single-node statement in its ON CLUSTER form: a table becomes a replicated local
    table plus a Distributed table of the same name; a view reads the Distributed tables."""
    for name in (cluster, database):
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a plain ClickHouse identifier")
    text = textwrap.dedent(ddl).strip()
    view = _VIEW.match(text)
    if view is not None:
        head = f"CREATE VIEW IF NOT EXISTS {database}.{view.group(1)} ON CLUSTER {cluster} "
        return [head + text[view.end() :]]
    found = _CREATE.match(text)
    if found is None:
        raise ValueError(f"not a CREATE TABLE or VIEW statement: {text[:60]!r}")
    table = found.group(1)
    local = f"{table}_local"
    head = f"CREATE TABLE IF NOT EXISTS {database}.{local} ON CLUSTER {cluster} ("
    body = _ENGINE.sub(_replicated(database, local), head + text[found.end() :], count=1)
    # Replicated tables deduplicate inserts by default (replicated_deduplication_window).
    body = _EMPTY_SETTINGS.sub("", _DEDUP.sub("", body))
    dist = (
        f"CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} "
        f"AS {database}.{local}\n"
        f"ENGINE = Distributed({cluster}, {database}, {local}, {sharding_key(table, text)})"
    )
    return [body, dist]


def _replicated(database: str, local: str) -> Callable[[re.Match[str]], str]:
    def engine(m: re.Match[str]) -> str:
        args = [f"'/clickhouse/tables/{{shard}}/{database}/{local}'", "'{replica}'"]
        if m.group(3):
            args.append(m.group(3))
        return f"ENGINE = Replicated{m.group(1)}({', '.join(args)})"

    return engine


# --- retention as TTL -------------------------------------------------------------------
def ttl_statements(policy: RetentionPolicy, skew_ms: int = 0) -> list[str]:
    """ALTER … MODIFY TTL for the samples and rollups tables.

    ClickHouse judges a TTL by its own clock; `skew_ms` (server now − caller now, when the
    caller's clock is behind) moves the TTL so it expires what the caller's policy expires and
    never more: the interval is rounded up to whole hours.
    """
    raw = _hours(policy.raw_ms + max(0, skew_ms))
    rollups = _hours(policy.rollups_ms + max(0, skew_ms))
    out = [f"ALTER TABLE samples MODIFY TTL toDateTime(intDiv(ts, 1000)) + INTERVAL {raw} HOUR"]
    out += [
        f"ALTER TABLE {rollups_table(w)} MODIFY TTL "
        f"toDateTime(intDiv(bucket + {w}, 1000)) + INTERVAL {rollups} HOUR"
        for w in ROLLUP_WIDTHS_MS
    ]
    return out


def _hours(ms: int) -> int:
    return -(-ms // 3_600_000)
