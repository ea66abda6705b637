"""The data-quality reads of the DuckDB backend (storage/quality_records.py)."""

from __future__ import annotations

import duckdb

from opsmetrics.model import STALE_NAN_BITS
from opsmetrics.storage.quality_records import NameCount, PropProfile, PropTypeCount, prop_kind


class QualityQueries:
    """Mixed into DuckDBStorage, whose cursor it uses."""

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def event_counts(self, start_ms: int, end_ms: int, width_ms: int) -> list[NameCount]:
        """Events per name and bucket of `width_ms` from `start_ms`, in [start, end)."""
        rows = (
            self._cursor()
            .execute(
                "SELECT name, ? + (ts - ?) // ? * ? AS b, count(*) FROM events "
                "WHERE ts >= ? AND ts < ? GROUP BY ALL ORDER BY name, b",
                [start_ms, start_ms, width_ms, width_ms, start_ms, end_ms],
            )
            .fetchall()
        )
        return [NameCount(str(n), int(b), int(c)) for n, b, c in rows]

    def event_names_newest(self) -> dict[str, int]:
        """The newest timestamp per event name."""
        rows = self._cursor().execute("SELECT name, max(ts) FROM events GROUP BY name")
        return {str(n): int(t) for n, t in rows.fetchall()}

    def event_prop_profile(self, start_ms: int, end_ms: int) -> PropProfile:
        """Events per name in [start, end) and their properties' JSON types."""
        cur = self._cursor()
        window = [start_ms, end_ms]
        totals = cur.execute(
            "SELECT name, count(*) FROM events WHERE ts >= ? AND ts < ? GROUP BY name", window
        ).fetchall()
        rows = cur.execute(
            "SELECT name, j.key, j.type, count(*) FROM events, json_each(props) AS j "
            "WHERE ts >= ? AND ts < ? GROUP BY ALL",
            window,
        ).fetchall()
        merged: dict[tuple[str, str, str], int] = {}
        for name, prop, engine_type, n in rows:
            key = (str(name), str(prop), prop_kind(str(engine_type)))
            merged[key] = merged.get(key, 0) + int(n)
        props = [PropTypeCount(n, p, k, c) for (n, p, k), c in sorted(merged.items())]
        return PropProfile({str(n): int(c) for n, c in totals}, props)

    def sample_counts(self, start_ms: int, end_ms: int, width_ms: int) -> list[NameCount]:
        """Samples (stale markers left out) per metric name and bucket, in [start, end)."""
        rows = (
            self._cursor()
            .execute(
                "SELECT s.metric, ? + (a.ts - ?) // ? * ? AS b, count(*) "
                "FROM samples_all AS a JOIN series AS s ON s.id = a.series_id "
                "WHERE a.ts >= ? AND a.ts < ? AND a.nan_bits <> ? GROUP BY ALL ORDER BY 1, 2",
                [start_ms, start_ms, width_ms, width_ms, start_ms, end_ms, STALE_NAN_BITS],
            )
            .fetchall()
        )
        return [NameCount(str(n), int(b), int(c)) for n, b, c in rows]
