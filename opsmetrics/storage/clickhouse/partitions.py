"""Daily sample partitions: which are closed, compacted, or changed since; retention drops.

ClickHouse numbers every insert block; a merge keeps the highest number of its inputs. So a
compacted partition whose parts now reach a higher block number than `sample_partitions`
recorded at compaction got late rows since: it is compacted again, and until then its span is
left out of `rollup_spans` (queries read raw samples there).
"""

from __future__ import annotations

from dataclasses import dataclass

from opsmetrics.storage.base import DAY_MS
from opsmetrics.storage.clickhouse.connect import ClickHouse

_PARTS = (
    "SELECT toInt64(partition_id) AS day, max(max_block_number) AS block, sum(rows) AS n "
    "FROM system.parts WHERE database = currentDatabase() AND table = {t:String} AND active "
    "GROUP BY day"
)


@dataclass(frozen=True, slots=True)
class PartitionState:
    start_ms: int
    block: int  # newest insert block in the partition's parts
    rows: int  # rows in its parts (before deduplication by merges)
    compacted_block: int | None  # the block recorded at its last compaction

    @property
    def end_ms(self) -> int:
        return self.start_ms + DAY_MS

    @property
    def clean(self) -> bool:
        return self.compacted_block is not None and self.block <= self.compacted_block


def states(client: ClickHouse, table: str = "samples") -> list[PartitionState]:
    """Every partition with rows, oldest first, with its compaction record (one query)."""
    rows = client.query(
        f"SELECT p.day, p.block, p.n, c.max_block FROM ({_PARTS}) AS p "
        "LEFT JOIN (SELECT start_ms, max_block FROM sample_partitions FINAL) AS c "
        f"ON c.start_ms = p.day * {DAY_MS} ORDER BY p.day",
        parameters={"t": table},
        settings={"join_use_nulls": 1},
    ).result_rows
    return [
        PartitionState(int(d) * DAY_MS, int(b), int(n), None if c is None else int(c))
        for d, b, n, c in rows
    ]


def to_compact(client: ClickHouse, cutoff_ms: int) -> list[PartitionState]:
    """Partitions wholly before the cutoff that were never compacted or changed since."""
    return [p for p in states(client) if p.end_ms <= cutoff_ms and not p.clean]


def compact(client: ClickHouse, part: PartitionState, now_ms: int) -> None:
    """Merge the partition into one part, deduplicated, and record the block it covers.

    `part.block` was read before the merge: rows inserted meanwhile carry a higher number, so
    the partition counts as changed and is compacted again next time.
    """
    day = part.start_ms // DAY_MS
    client.command(f"OPTIMIZE TABLE samples PARTITION ID '{int(day)}' FINAL")
    client.insert(
        "sample_partitions",
        [[part.start_ms, part.end_ms, part.block, now_ms]],
        column_names=["start_ms", "end_ms", "max_block", "compacted_ms"],
    )


def covered_spans(parts: list[PartitionState]) -> list[tuple[int, int]]:
    """Spans of clean compacted partitions before the oldest partition that is not."""
    dirty = [p.start_ms for p in parts if not p.clean]
    oldest = min(dirty) if dirty else None
    return [
        (p.start_ms, p.end_ms) for p in parts if p.clean and (oldest is None or p.end_ms <= oldest)
    ]


def drop_before(client: ClickHouse, table: str, day_column: str, cutoff_ms: int) -> tuple[int, int]:
    """Drop the daily partitions of `table` that end at or before the cutoff.

    Returns (partitions dropped, rows they held after deduplication)."""
    days = [d for d, *_ in _days(client, table) if (d + 1) * DAY_MS <= cutoff_ms]
    if not days:
        return 0, 0
    counted = client.command(
        f"SELECT count() FROM {table} FINAL WHERE intDiv({day_column}, {DAY_MS}) "
        "IN {days:Array(Int64)}",
        parameters={"days": days},
    )
    for day in days:
        client.command(f"ALTER TABLE {table} DROP PARTITION ID '{int(day)}'")
    return len(days), int(counted)


def _days(client: ClickHouse, table: str) -> list[tuple[int, int, int]]:
    rows = client.query(_PARTS, parameters={"t": table}).result_rows
    return [(int(d), int(b), int(n)) for d, b, n in rows]
