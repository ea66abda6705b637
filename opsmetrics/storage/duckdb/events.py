"""Events and annotations tables of the DuckDB backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import duckdb
import msgspec
import numpy as np

from opsmetrics.model import Annotation, Event
from opsmetrics.storage.base import StoredEvent
from opsmetrics.storage.duckdb.sql import scalar
from opsmetrics.storage.token_records import Scope, TokenRecord, origins_from_column

CursorFactory = Callable[[], duckdb.DuckDBPyConnection]
#: Keys sorted, no spaces, non-ASCII as it is: what `_props_json` writes for these types.
_ENCODE_PROPS = msgspec.json.Encoder(order="sorted").encode
#: The value types msgspec writes as json.dumps does (it writes some floats another way:
#: 1e+16 as 1e16), so a stored props text does not depend on which of the two wrote it.
_SAME_AS_JSON = frozenset({str, int, bool, type(None)})
TOKEN_COLUMNS = "id, name, scope, hash, created_ms, origins, rate_per_min"


class EventTables:
    def __init__(self, cursor: CursorFactory) -> None:
        self._event_cursor = cursor

    def insert_events(
        self, cur: duckdb.DuckDBPyConnection, events: list[StoredEvent]
    ) -> dict[str, int]:
        """Insert events whose key is new; a retried event (same key) is ignored. Returns the
        ignored ones per event name (the duplicates the data-quality monitors report).

        The rows go in as registered columnar arrays in one INSERT … SELECT: far faster than
        executemany, and no event field ever becomes SQL text. A NaN `value` is stored as NULL.
        """
        if not events:
            return {}
        unique = {e.key: e.event for e in events}  # a retry inside one batch is one event
        cur.register("new_events", _event_columns(unique))
        try:
            stored = cur.execute(
                "INSERT OR IGNORE INTO events "
                "SELECT key, id, name, ts, entity, value, props FROM new_events RETURNING key"
            ).fetchnumpy()["key"]
        finally:
            cur.unregister("new_events")
        if len(stored) == len(events):  # every event went in (a repeated key cannot)
            return {}
        return _duplicates(events, set(stored.tolist()))

    def insert_annotations(
        self, cur: duckdb.DuckDBPyConnection, annotations: list[Annotation]
    ) -> None:
        if not annotations:
            return
        rows = [(a.id, a.ts, a.end, a.title, list(a.tags), a.text) for a in annotations]
        cur.executemany("INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?)", rows)

    def read_events(
        self, name: str | None, start_ms: int, end_ms: int, limit: int | None = None
    ) -> list[Event]:
        sql = "SELECT name, ts, entity, value, props, id FROM events WHERE ts >= ? AND ts <= ?"
        params: list[Any] = [start_ms, end_ms]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        sql += " ORDER BY ts, key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._event_cursor().execute(sql, params).fetchall()
        return [
            Event(name=r[0], ts=r[1], entity=r[2], value=r[3], props=json.loads(r[4]), id=r[5])
            for r in rows
        ]

    def read_annotations(self, start_ms: int, end_ms: int) -> list[Annotation]:
        rows = (
            self._event_cursor()
            .execute(
                "SELECT id, ts, title, end_ts, tags, text FROM annotations "
                "WHERE ts <= ? AND coalesce(end_ts, ts) >= ? ORDER BY ts, id",
                [end_ms, start_ms],
            )
            .fetchall()
        )
        return [
            Annotation(id=r[0], ts=r[1], title=r[2], end=r[3], tags=list(r[4]), text=r[5])
            for r in rows
        ]

    def save_token(self, token: TokenRecord) -> None:
        self._event_cursor().execute(
            f"INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                *(token.id, token.name, token.scope.value, token.hash, token.created_ms),
                *(token.origins_column, token.rate_per_min),
            ],
        )

    def tokens(self) -> list[TokenRecord]:
        rows = (
            self._event_cursor()
            .execute(
                f"SELECT {TOKEN_COLUMNS} FROM tokens "
                "WHERE revoked_ms IS NULL ORDER BY created_ms, id"
            )
            .fetchall()
        )
        return [
            TokenRecord(i, n, Scope(s), h, c, origins_from_column(o), r)
            for i, n, s, h, c, o, r in rows
        ]

    def delete_events_before(self, cur: duckdb.DuckDBPyConnection, cutoff_ms: int) -> int:
        return int(scalar(cur, "DELETE FROM events WHERE ts < ?", [cutoff_ms]) or 0)

    def count_events(self, cur: duckdb.DuckDBPyConnection) -> int:
        return int(scalar(cur, "SELECT count(*) FROM events"))

    def count_annotations(self, cur: duckdb.DuckDBPyConnection) -> int:
        return int(scalar(cur, "SELECT count(*) FROM annotations"))


def _duplicates(events: list[StoredEvent], stored: set[int]) -> dict[str, int]:
    """Per name, the events of the batch that did not go in (the first of a key did)."""
    out: dict[str, int] = {}
    for e in events:
        if e.key in stored:
            stored.discard(e.key)
        else:
            out[e.event.name] = out.get(e.event.name, 0) + 1
    return out


def _event_columns(events: dict[int, Event]) -> dict[str, np.ndarray]:
    items = list(events.values())
    fields = {f: list(map(attrgetter(f), items)) for f in ("id", "name", "ts", "entity", "value")}
    return {
        "key": np.fromiter(events.keys(), dtype=np.uint64, count=len(items)),
        "id": _strings(fields["id"]),
        "name": _strings(fields["name"]),
        "ts": np.array(fields["ts"], dtype=np.int64),
        "entity": _strings(fields["entity"]),
        "value": np.array([np.nan if v is None else v for v in fields["value"]], np.float64),
        "props": _strings(_props_texts(list(map(attrgetter("props"), items)))),
    }


def _props_texts(props: list[dict[str, Any]]) -> list[str]:
    """Each event's props as JSON text: through msgspec (a tenth of json.dumps's time, most
    of the events insert's) when every key is text and every value of a type it writes
    as json.dumps does, else all through `_props_json`."""
    keys = {type(k) for p in props for k in p}
    values = {type(v) for p in props for v in p.values()}
    if keys <= {str} and values <= _SAME_AS_JSON:
        try:
            return [_ENCODE_PROPS(p).decode() for p in props]
        except (TypeError, ValueError):  # e.g. an int past 64 bits: json.dumps writes it
            pass
    return [_props_json(p) for p in props]


def _strings(values: Sequence[str | None]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _props_json(props: dict[str, Any]) -> str:
    return json.dumps(props, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
