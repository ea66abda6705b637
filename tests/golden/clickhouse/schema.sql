CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_ms Int64
) ENGINE = ReplacingMergeTree
ORDER BY version;

CREATE TABLE IF NOT EXISTS samples (
    metric LowCardinality(String),
    series_id Int64,
    ts Int64 CODEC(DoubleDelta, ZSTD(1)),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    nan_bits UInt64 DEFAULT 0 CODEC(ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY intDiv(ts, 86400000)
ORDER BY (metric, series_id, ts)
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS series (
    id Int64,
    metric LowCardinality(String),
    labels Map(String, String),
    INDEX series_id_idx id TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree
ORDER BY (metric, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS metadata (
    metric String,
    type LowCardinality(String),
    help String,
    unit String
) ENGINE = ReplacingMergeTree
ORDER BY metric;

CREATE TABLE IF NOT EXISTS annotations (
    id String,
    ts Int64,
    end_ts Nullable(Int64),
    title String,
    tags Array(String),
    text String
) ENGINE = ReplacingMergeTree
ORDER BY id;

CREATE TABLE IF NOT EXISTS rollups_300s (
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
PARTITION BY intDiv(bucket, 86400000)
ORDER BY (series_id, bucket)
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS rollups_3600s (
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
PARTITION BY intDiv(bucket, 86400000)
ORDER BY (series_id, bucket)
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS sample_partitions (
    start_ms Int64,
    end_ms Int64,
    max_block Int64,
    compacted_ms Int64
) ENGINE = ReplacingMergeTree
ORDER BY start_ms;

CREATE TABLE IF NOT EXISTS events (
    key UInt64,
    id Nullable(String) CODEC(ZSTD(1)),
    name LowCardinality(String),
    ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    entity String CODEC(ZSTD(1)),
    value Nullable(Float64) CODEC(ZSTD(1)),
    props Map(String, String) CODEC(ZSTD(1)),
    nums Map(String, Float64) CODEC(ZSTD(1)),
    props_json String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (name, entity, ts, key)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE VIEW IF NOT EXISTS v_events AS
SELECT name, toUnixTimestamp64Milli(ts) AS ts, entity, value, props_json AS props
FROM events FINAL;
