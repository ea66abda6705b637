CREATE TABLE IF NOT EXISTS metrics.schema_migrations_local ON CLUSTER ops (
    version UInt32,
    name String,
    applied_ms Int64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/schema_migrations_local', '{replica}')
ORDER BY version;

CREATE TABLE IF NOT EXISTS metrics.schema_migrations ON CLUSTER ops AS metrics.schema_migrations_local
ENGINE = Distributed(ops, metrics, schema_migrations_local, cityHash64(version));

CREATE TABLE IF NOT EXISTS metrics.samples_local ON CLUSTER ops (
    metric LowCardinality(String),
    series_id Int64,
    ts Int64 CODEC(DoubleDelta, ZSTD(1)),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    nan_bits UInt64 DEFAULT 0 CODEC(ZSTD(1))
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/samples_local', '{replica}')
PARTITION BY intDiv(ts, 86400000)
ORDER BY (metric, series_id, ts)
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS metrics.samples ON CLUSTER ops AS metrics.samples_local
ENGINE = Distributed(ops, metrics, samples_local, series_id);

CREATE TABLE IF NOT EXISTS metrics.series_local ON CLUSTER ops (
    id Int64,
    metric LowCardinality(String),
    labels Map(String, String),
    INDEX series_id_idx id TYPE minmax GRANULARITY 1
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/series_local', '{replica}')
ORDER BY (metric, id);

CREATE TABLE IF NOT EXISTS metrics.series ON CLUSTER ops AS metrics.series_local
ENGINE = Distributed(ops, metrics, series_local, id);

CREATE TABLE IF NOT EXISTS metrics.metadata_local ON CLUSTER ops (
    metric String,
    type LowCardinality(String),
    help String,
    unit String
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/metadata_local', '{replica}')
ORDER BY metric;

CREATE TABLE IF NOT EXISTS metrics.metadata ON CLUSTER ops AS metrics.metadata_local
ENGINE = Distributed(ops, metrics, metadata_local, cityHash64(metric));

CREATE TABLE IF NOT EXISTS metrics.annotations_local ON CLUSTER ops (
    id String,
    ts Int64,
    end_ts Nullable(Int64),
    title String,
    tags Array(String),
    text String
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/annotations_local', '{replica}')
ORDER BY id;

CREATE TABLE IF NOT EXISTS metrics.annotations ON CLUSTER ops AS metrics.annotations_local
ENGINE = Distributed(ops, metrics, annotations_local, cityHash64(id));

CREATE TABLE IF NOT EXISTS metrics.rollups_300s_local ON CLUSTER ops (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/rollups_300s_local', '{replica}')
PARTITION BY intDiv(bucket, 86400000)
ORDER BY (series_id, bucket)
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS metrics.rollups_300s ON CLUSTER ops AS metrics.rollups_300s_local
ENGINE = Distributed(ops, metrics, rollups_300s_local, series_id);

CREATE TABLE IF NOT EXISTS metrics.rollups_3600s_local ON CLUSTER ops (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/rollups_3600s_local', '{replica}')
PARTITION BY intDiv(bucket, 86400000)
ORDER BY (series_id, bucket)
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS metrics.rollups_3600s ON CLUSTER ops AS metrics.rollups_3600s_local
ENGINE = Distributed(ops, metrics, rollups_3600s_local, series_id);

CREATE TABLE IF NOT EXISTS metrics.sample_partitions_local ON CLUSTER ops (
    start_ms Int64,
    end_ms Int64,
    max_block Int64,
    compacted_ms Int64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/sample_partitions_local', '{replica}')
ORDER BY start_ms;

CREATE TABLE IF NOT EXISTS metrics.sample_partitions ON CLUSTER ops AS metrics.sample_partitions_local
ENGINE = Distributed(ops, metrics, sample_partitions_local, cityHash64(start_ms));

CREATE TABLE IF NOT EXISTS metrics.events_local ON CLUSTER ops (
    key UInt64,
    id Nullable(String) CODEC(ZSTD(1)),
    name LowCardinality(String),
    ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    entity String CODEC(ZSTD(1)),
    value Nullable(Float64) CODEC(ZSTD(1)),
    props Map(String, String) CODEC(ZSTD(1)),
    nums Map(String, Float64) CODEC(ZSTD(1)),
    props_json String CODEC(ZSTD(3))
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/metrics/events_local', '{replica}')
PARTITION BY toYYYYMMDD(ts)
ORDER BY (name, entity, ts, key);

CREATE TABLE IF NOT EXISTS metrics.events ON CLUSTER ops AS metrics.events_local
ENGINE = Distributed(ops, metrics, events_local, cityHash64(entity));

CREATE VIEW IF NOT EXISTS metrics.v_events ON CLUSTER ops AS
SELECT name, toUnixTimestamp64Milli(ts) AS ts, entity, value, props_json AS props
FROM events FINAL;
