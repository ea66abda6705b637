"""Series in ClickHouse: label matchers as SQL, and a node-local cache of known series.

Other nodes create series too, so selection (`select_series`, label names and values, counts)
always asks the `series` table. The cache only speeds up what is asked by id or label set —
`lookup_series`, `labels_of`, the metric of a series for the samples' order key — and is
filled from the table on a miss (one query for all the misses). Ids are `series_id(labels)`,
so a miss for a label set is a lookup by its id.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from opsmetrics.model import METRIC_NAME, Labels, Matcher, MatchOp, Series, metric_name
from opsmetrics.storage.clickhouse.connect import ClickHouse

Params = dict[str, Any]


def matcher_sql(matchers: Sequence[Matcher], params: Params, metric_only: bool = False) -> str:
    """A WHERE condition over `metric` and `labels`; values only ever go in as parameters.

    With `metric_only`, only the matchers on the metric name (for tables without labels)."""
    terms: list[str] = []
    for m in matchers:
        if m.name == METRIC_NAME:
            column = "metric"
        elif metric_only:
            continue
        else:
            key = f"k{len(params)}"
            params[key] = m.name
            column = f"labels[{{{key}:String}}]"
        terms.append(_term(m, column, params))
    return " AND ".join(terms) or "1"


def _term(m: Matcher, column: str, params: Params) -> str:
    key = f"v{len(params)}"
    match m.op:
        case MatchOp.EQ:
            params[key] = m.value
            return f"{column} = {{{key}:String}}"
        case MatchOp.NE:
            params[key] = m.value
            return f"{column} != {{{key}:String}}"
        case MatchOp.RE:
            params[key] = _anchored(m.value)
            return f"match({column}, {{{key}:String}})"
        case MatchOp.NRE:
            params[key] = _anchored(m.value)
            return f"NOT match({column}, {{{key}:String}})"


def _anchored(regex: str) -> str:
    # PromQL regexes are fully anchored RE2; (?s) as Matcher.of compiles them.
    return f"^(?s:{regex})$"


def labels_from_map(pairs: dict[str, str]) -> Labels:
    return tuple(sorted(pairs.items()))


def rows_to_series(rows: Iterable[Sequence[Any]]) -> list[Series]:
    return [Series(int(r[0]), labels_from_map(r[1])) for r in rows]


class SeriesCache:
    """Label sets ↔ ids this node has seen (written, read, or looked up), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[Labels, int] = {}
        self._labels: dict[int, Labels] = {}

    def add(self, series: Iterable[Series]) -> None:
        with self._lock:
            for s in series:
                self._ids[s.labels] = s.id
                self._labels[s.id] = s.labels

    def id_of(self, labels: Labels) -> int | None:
        return self._ids.get(labels)

    def labels_of(self, series_id: int) -> Labels | None:
        return self._labels.get(series_id)

    def metric_of(self, series_id: int) -> str | None:
        labels = self._labels.get(series_id)
        return None if labels is None else metric_name(labels)

    def fill(self, client: ClickHouse, ids: Iterable[int]) -> None:
        """Load the series of the ids not cached yet (one query)."""
        missing = sorted({int(i) for i in ids if int(i) not in self._labels})
        if missing:
            rows = client.query(
                "SELECT DISTINCT id, labels FROM series WHERE id IN {ids:Array(Int64)}",
                parameters={"ids": missing},
            ).result_rows
            self.add(rows_to_series(rows))
