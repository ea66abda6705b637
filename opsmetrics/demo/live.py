"""The live phase's writer: chunks go through the server's public ingest endpoints over HTTP.

The history load writes in-process (fast path); live traffic is posted to `/api/v1/samples`,
`/api/v1/events` and `/api/v1/annotations` with the client SDK's transport, exactly as an
instrumented application would, so the demo exercises the real ingest path end to end.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opsmetrics.auth import new_token
from opsmetrics.client import RetryPolicy, Transport
from opsmetrics.demo.simulator import Chunk
from opsmetrics.model import METRIC_NAME, Annotation, Event, Labels
from opsmetrics.services import Services
from opsmetrics.storage.token_records import Scope

JSON = "application/json"
#: A tick is retried briefly; a lost tick is caught up by the next one.
LIVE_RETRIES = RetryPolicy(max_retries=3, backoff=0.2, max_backoff=2.0)


def loopback_url(host: str, port: int) -> str:
    """Where this process's own server answers (a wildcard bind answers on loopback)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def demo_token(services: Services) -> str | None:
    """An ingest token for the demo's own client, held in memory only, when auth is on."""
    if not services.tokens.enabled:
        return None
    token = new_token("demo-live", Scope.INGEST, services.clock.now_ms())
    services.tokens.add(token.record)
    return token.secret


class HttpWriter:
    def __init__(self, url: str, token: str | None, events_per_request: int) -> None:
        self._transport = Transport(url, token, policy=LIVE_RETRIES)
        self._events_per_request = events_per_request
        self._names: dict[Labels, tuple[str, dict[str, str]]] = {}

    def write_chunk(self, chunk: Chunk) -> int:
        self._post("/api/v1/samples", self._series(chunk))
        events = chunk.events
        limit = self._events_per_request
        for first in range(0, len(events), limit):
            self._post("/api/v1/events", [_event(e) for e in events[first : first + limit]])
        return 1 + -(-len(events) // limit)

    def write_annotations(self, notes: list[Annotation]) -> None:
        if notes:
            self._post("/api/v1/annotations", [_annotation(a) for a in notes])

    def flush(self) -> None:
        """Every post is answered before it returns: nothing to wait for."""

    def close(self) -> None:
        self._transport.close()

    def _post(self, path: str, body: list[dict[str, Any]]) -> None:
        self._transport.post(path, msgspec.json.encode(body), JSON)

    def _series(self, chunk: Chunk) -> list[dict[str, Any]]:
        batch = chunk.batch
        rows: list[list[list[float]]] = [[] for _ in batch.series]
        for i, t, v in zip(
            batch.index.tolist(), batch.ts.tolist(), batch.values.tolist(), strict=True
        ):
            rows[i].append([t, v])
        out = []
        for labels, samples in zip(batch.series, rows, strict=True):
            name, rest = self._split(labels)
            out.append({"name": name, "labels": rest, "samples": samples})
        return out

    def _split(self, labels: Labels) -> tuple[str, dict[str, str]]:
        known = self._names.get(labels)
        if known is None:
            pairs = dict(labels)
            name = pairs.pop(METRIC_NAME)
            known = self._names[labels] = (name, pairs)
        return known


def _event(e: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"name": e.name, "ts": e.ts, "entity": e.entity, "props": e.props}
    if e.value is not None:
        out["value"] = e.value
    if e.id is not None:
        out["id"] = e.id
    return out


def _annotation(a: Annotation) -> dict[str, Any]:
    out: dict[str, Any] = {"id": a.id, "title": a.title, "ts": a.ts, "tags": list(a.tags)}
    out["text"] = a.text
    if a.end is not None:
        out["end"] = a.end
    return out
