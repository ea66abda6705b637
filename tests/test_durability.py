"""Crash durability: acknowledged writes survive SIGKILL, exactly once; every request is atomic.

Several clients write remote_write, JSON samples and NDJSON events concurrently while the server
is killed with SIGKILL at random moments and restarted on the same data directory. Partitions and
the late-data window are tiny and maintenance runs every second, so kills also land in the middle
of compactions. At the end every acknowledged (2xx) request must be stored completely, exactly
once; a rejected (4xx) one not at all; one whose answer never came either completely or not at
all. Randomness is seeded, so a failure can be replayed.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import cramjam
import httpx
import msgspec
import pytest

from opsmetrics.clock import pause
from opsmetrics.ingest.proto import remote_pb2 as pb
from opsmetrics.model import Matcher, MatchOp
from opsmetrics.storage.base import Storage
from tests.server import ServerProcess
from tests.stores import open_store

pytestmark = pytest.mark.e2e

SEED = 20261123
ROUNDS = 20
CLIENTS = 4
SERIES_PER_REQUEST = 20
SAMPLES_PER_SERIES = 5
EVENTS_PER_REQUEST = 20
#: Each request of a client moves its series this far forward in time.
REQUEST_STEP_MS = 2_000
ENV = {
    "OPSMETRICS_PARTITION": "10m",
    "OPSMETRICS_SAMPLES_LATE_WINDOW": "5m",
    "OPSMETRICS_MAINTENANCE_INTERVAL": "1s",
}

#: A stored sample: (metric, client, series number, ts, value).
SampleKey = tuple[str, str, str, int, float]


class Outcome(Enum):
    ACKED = "acked"  # 2xx: must be there, completely, once
    REJECTED = "rejected"  # 4xx: must not be there at all
    NOT_SENT = "not sent"  # the connection was refused: the server never saw it
    UNKNOWN = "unknown"  # no answer (killed) or 429/5xx: all or nothing


@dataclass
class Sent:
    kind: str
    samples: list[SampleKey] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    outcome: Outcome = Outcome.UNKNOWN
    detail: str = ""


@dataclass
class Client:
    """One writer: its own series, its own sequence numbers, its own seeded choices."""

    number: int
    base_ms: int
    rng: random.Random
    sent: list[Sent] = field(default_factory=list)
    seq: int = 0

    def next_request(self) -> tuple[Sent, str, bytes, dict[str, str]]:
        self.seq += 1
        kind = self.rng.choice(["remote_write", "json", "events"])
        if kind == "events":
            return self._events()
        samples = self._samples("dur_" + kind)
        if kind == "remote_write":
            return Sent(kind, samples), "/api/v1/write", remote_write_body(samples), RW_HEADERS
        return Sent(kind, samples), "/api/v1/samples", json_body(samples), JSON_HEADERS

    def _samples(self, metric: str) -> list[SampleKey]:
        t0 = self.base_ms + self.seq * REQUEST_STEP_MS
        return [
            (metric, str(self.number), str(s), t0 + i * 100, float(self.seq * 1000 + s * 10 + i))
            for s in range(SERIES_PER_REQUEST)
            for i in range(SAMPLES_PER_SERIES)
        ]

    def _events(self) -> tuple[Sent, str, bytes, dict[str, str]]:
        ids = [f"c{self.number}-r{self.seq}-e{i}" for i in range(EVENTS_PER_REQUEST)]
        ts = self.base_ms + 90 * 60_000  # the servers' start instant (START_MS)
        lines = [
            msgspec.json.encode(
                {"name": "dur_event", "ts": ts, "entity": f"u{i}", "value": i, "id": event_id}
            )
            for i, event_id in enumerate(ids)
        ]
        return Sent("events", event_ids=ids), "/api/v1/events", b"\n".join(lines), NDJSON_HEADERS


RW_HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}
JSON_HEADERS = {"content-type": "application/json"}
NDJSON_HEADERS = {"content-type": "application/x-ndjson"}


def remote_write_body(samples: list[SampleKey]) -> bytes:
    request = pb.WriteRequest()
    by_series: dict[tuple[str, str, str], pb.TimeSeries] = {}
    for metric, client, s, ts, value in samples:
        series = by_series.get((metric, client, s))
        if series is None:
            series = by_series[(metric, client, s)] = request.timeseries.add()
            for name, label_value in (("__name__", metric), ("client", client), ("s", s)):
                series.labels.add(name=name, value=label_value)
        series.samples.add(value=value, timestamp=ts)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def json_body(samples: list[SampleKey]) -> bytes:
    grouped: dict[tuple[str, str, str], list[list[float]]] = {}
    for metric, client, s, ts, value in samples:
        grouped.setdefault((metric, client, s), []).append([ts, value])
    items = [
        {"name": metric, "labels": {"client": client, "s": s}, "samples": points}
        for (metric, client, s), points in grouped.items()
    ]
    return msgspec.json.encode(items)


def run_client(client: Client, url: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            sent, path, body, headers = client.next_request()
            client.sent.append(sent)
            try:
                response = http.post(path, content=body, headers=headers)
            except httpx.ConnectError as exc:
                sent.outcome, sent.detail = Outcome.NOT_SENT, repr(exc)
                continue
            except httpx.HTTPError as exc:
                sent.detail = repr(exc)
                continue
            sent.detail = f"{response.status_code} {response.text[:200]}"
            if 200 <= response.status_code < 300:
                sent.outcome = Outcome.ACKED
            elif 400 <= response.status_code < 500 and response.status_code != 429:
                sent.outcome = Outcome.REJECTED


def ingest_then_kill(server: ServerProcess, clients: list[Client], delay_s: float) -> None:
    """Clients write until the server is SIGKILLed after `delay_s`; then they stop."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_client, args=(c, server.url, stop), daemon=True)
        for c in clients
    ]
    for t in threads:
        t.start()
    pause(delay_s)
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a client hung after the server was killed"


# --- checking ---------------------------------------------------------------------------------


def stored_samples(storage: Storage, start_ms: int, end_ms: int) -> Counter[SampleKey]:
    """Every stored row of the test's metrics, counted (a count of 2 is a duplicate)."""
    found: Counter[SampleKey] = Counter()
    for metric in ("dur_remote_write", "dur_json"):
        series = storage.select_series(_name_is(metric))
        labels = {s.id: dict(s.labels) for s in series}
        rows = storage.read_samples([s.id for s in series], start_ms, end_ms)
        for sid, ts, value in zip(rows.series_ids, rows.ts, rows.values, strict=True):
            lbl = labels[int(sid)]
            found[(metric, lbl["client"], lbl["s"], int(ts), float(value))] += 1
    return found


def _name_is(metric: str) -> list[Matcher]:
    return [Matcher.of("__name__", MatchOp.EQ, metric)]


def stored_event_ids(storage: Storage) -> Counter[str]:
    events = storage.read_events("dur_event", 0, 2**62)
    return Counter(e.id for e in events if e.id is not None)


def check_request(sent: Sent, present: int) -> str | None:
    """A problem with one request given how many of its items are stored, else None."""
    total = len(sent.samples) + len(sent.event_ids)
    if sent.outcome is Outcome.ACKED and present != total:
        return f"acked {sent.kind} request has {present} of {total} items stored"
    if sent.outcome in (Outcome.REJECTED, Outcome.NOT_SENT) and present:
        return f"rejected {sent.kind} request ({sent.detail}) left {present} items behind"
    if present not in (0, total):
        return f"unanswered {sent.kind} request stored partially: {present} of {total}"
    return None


def check_all(sent: list[Sent], samples: Counter[SampleKey], events: Counter[str]) -> list[str]:
    problems = [f"stored twice: {k}" for k, n in samples.items() if n > 1]
    problems += [f"event stored twice: {k}" for k, n in events.items() if n > 1]
    expected: set[object] = set()
    for s in sent:
        present = sum(1 for k in s.samples if k in samples)
        present += sum(1 for e in s.event_ids if e in events)
        expected.update(s.samples, s.event_ids)
        problem = check_request(s, present)
        if problem:
            problems.append(problem)
    problems += [f"stored but never sent: {k}" for k in [*samples, *events] if k not in expected]
    return problems


def query_acked_over_http(server: ServerProcess, sent: list[Sent], at_ms: int) -> None:
    """The restarted server answers queries with every acknowledged sample."""
    acked = {k for s in sent if s.outcome is Outcome.ACKED for k in s.samples}
    got: Counter[SampleKey] = Counter()
    for metric in ("dur_remote_write", "dur_json"):
        r = httpx.get(
            server.url + "/api/v1/query",
            params={"query": f"{metric}[3h]", "time": str(at_ms / 1000)},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        for item in r.json()["data"]["result"]:
            m = item["metric"]
            for t, v in item["values"]:
                got[(metric, m["client"], m["s"], round(t * 1000), float(v))] += 1
    assert not [k for k, n in got.items() if n > 1], "the query API returns duplicates"
    missing = acked - set(got)
    assert not missing, f"{len(missing)} acked samples missing over HTTP, e.g. {min(missing)}"


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


#: Monday 2026-12-07 00:46 UTC: the servers' clock starts here and moves on across restarts.
START_MS = 1_796_604_360_000


def test_acked_writes_survive_sigkill_exactly_once(data_dir: Path) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()

    def now_ms() -> int:
        return START_MS + int((time.monotonic() - started) * 1000)

    base_ms = START_MS - 90 * 60_000
    clients = [Client(n, base_ms, random.Random(rng.random())) for n in range(CLIENTS)]
    for _ in range(ROUNDS):
        server = ServerProcess(data_dir, env=ENV, now_ms=now_ms()).start()
        ingest_then_kill(server, clients, rng.uniform(0.05, 0.8))
    sent = [s for c in clients for s in c.sent]
    assert sum(s.outcome is Outcome.ACKED for s in sent) >= ROUNDS, "too few writes got through"
    # The kills must land while requests are in flight, or the test proves little.
    assert sum(s.outcome is Outcome.UNKNOWN for s in sent) >= ROUNDS, "kills hit no writes"
    assert {s.kind for s in sent if s.outcome is Outcome.ACKED} == {
        "remote_write",
        "json",
        "events",
    }

    server = ServerProcess(data_dir, env=ENV, now_ms=now_ms()).start()
    query_acked_over_http(server, sent, server.clock_ms())
    # A clean stop after the kills: SIGTERM exits 0 and loses nothing acknowledged.
    last, path, body, headers = clients[0].next_request()
    r = httpx.post(server.url + path, content=body, headers=headers, timeout=30)
    assert r.status_code in (200, 204), r.text
    last.outcome = Outcome.ACKED
    sent.append(last)
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()

    storage = open_store(data_dir, now_ms())
    try:
        samples = stored_samples(storage, base_ms - 1, 2**62)
        events = stored_event_ids(storage)
    finally:
        storage.close()
    problems = check_all(sent, samples, events)
    assert not problems, f"{len(problems)} problems, first ones: {problems[:5]}"
