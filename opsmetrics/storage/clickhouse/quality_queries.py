"""The data-quality reads of the ClickHouse backend (storage/quality_records.py).

A property's JSON type comes from its raw JSON text in `props_json` (the `props` map holds
texts without their quotes and leaves nulls out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from opsmetrics.model import STALE_NAN_BITS
from opsmetrics.storage.clickhouse.event_sql import EVENTS, MS
from opsmetrics.storage.quality_records import NameCount, PropProfile, PropTypeCount

_WINDOW = "{s:Int64} + intDiv(%s - {s:Int64}, {w:Int64}) * {w:Int64}"
_RAW_KIND = (
    "multiIf(startsWith(kv.2, '\"'), 'string', kv.2 IN ('true', 'false'), 'boolean', "
    "kv.2 = 'null', 'null', 'number')"
)


class EventQualityReads:
    """Mixed into ClickHouseEvents, whose client it uses."""

    _client: Client

    def event_counts(self, start_ms: int, end_ms: int, width_ms: int) -> list[NameCount]:
        sql = (
            f"SELECT name, {_WINDOW % MS} AS b, count() FROM {EVENTS} "
            f"WHERE {MS} >= {{s:Int64}} AND {MS} < {{e:Int64}} GROUP BY name, b ORDER BY name, b"
        )
        rows = self._quality_rows(sql, {"s": start_ms, "e": end_ms, "w": width_ms})
        return [NameCount(str(n), int(b), int(c)) for n, b, c in rows]

    def event_names_newest(self) -> dict[str, int]:
        rows = self._quality_rows(f"SELECT name, max({MS}) FROM {EVENTS} GROUP BY name", {})
        return {str(n): int(t) for n, t in rows}

    def event_prop_profile(self, start_ms: int, end_ms: int) -> PropProfile:
        window = f"{MS} >= {{s:Int64}} AND {MS} < {{e:Int64}}"
        params = {"s": start_ms, "e": end_ms}
        totals = self._quality_rows(
            f"SELECT name, count() FROM {EVENTS} WHERE {window} GROUP BY name", params
        )
        rows = self._quality_rows(
            f"SELECT name, kv.1 AS k, {_RAW_KIND} AS t, count() FROM {EVENTS} "
            f"ARRAY JOIN JSONExtractKeysAndValuesRaw(props_json) AS kv WHERE {window} "
            "GROUP BY name, k, t ORDER BY name, k, t",
            params,
        )
        props = [PropTypeCount(str(n), str(p), str(t), int(c)) for n, p, t, c in rows]
        return PropProfile({str(n): int(c) for n, c in totals}, props)

    def _quality_rows(self, sql: str, params: dict[str, int]) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = self._client.query(sql, parameters=params).result_rows
        return rows


def sample_counts(client: Client, start_ms: int, end_ms: int, width_ms: int) -> list[NameCount]:
    """Samples (stale markers left out) per metric and bucket in [start, end)."""
    sql = (
        f"SELECT metric, {_WINDOW % 'ts'} AS b, count() FROM samples FINAL "
        "WHERE ts >= {s:Int64} AND ts < {e:Int64} AND nan_bits != {stale:UInt64} "
        "GROUP BY metric, b ORDER BY metric, b"
    )
    params = {"s": start_ms, "e": end_ms, "w": width_ms, "stale": STALE_NAN_BITS}
    rows = client.query(sql, parameters=params).result_rows
    return [NameCount(str(n), int(b), int(c)) for n, b, c in rows]
