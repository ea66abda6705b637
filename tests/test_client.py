"""The Python client against a real server process."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from opsmetrics.client import (
    Client,
    DeliveryFailure,
    Kind,
    RegistryPusher,
    Sample,
    registry_exposition,
)
from opsmetrics.client.records import sample_json
from opsmetrics.client.transport import (
    DeliveryError,
    RejectedError,
    RetryPolicy,
    Transport,
    retry_after,
)
from opsmetrics.model import Event
from tests.server import ServerProcess, free_port
from tests.stores import open_store


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def stored_events(srv: ServerProcess) -> list[Event]:
    """Kill the server (it owns the file; a 2xx answer is durable) and read its DuckDB file."""
    srv.kill()
    storage = open_store(srv.data_dir, now_ms())
    try:
        return storage.read_events(None, 0, 2**62)
    finally:
        storage.close()


def query_values(url: str, expr: str, at_ms: int) -> list[tuple[dict[str, str], list[float]]]:
    """Every stored point of the series of `expr` over the two hours before `at_ms`."""
    params = {"query": f"{expr}[2h]", "time": str(at_ms / 1000)}
    body = httpx.get(url + "/api/v1/query", params=params).json()
    assert body["status"] == "success", body
    return [(r["metric"], [float(v) for _, v in r["values"]]) for r in body["data"]["result"]]


class ScriptedServer(ThreadingHTTPServer):
    """A real HTTP server answering POSTs with a scripted list of statuses, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.statuses = statuses
        self.bodies: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def do_POST(self) -> None:
        self.server.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        body = b'{"status":"error","errorType":"bad_data","error":"scripted failure"}'
        if status == 200:
            body = b'{"status":"success","data":{}}'
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    srv = ScriptedServer([])
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


@pytest.mark.clock
def test_429_and_5xx_are_retried_with_the_same_body(scripted: ScriptedServer) -> None:
    scripted.statuses = [503, 429, 500]
    transport = Transport(scripted.url, policy=RetryPolicy(max_retries=5, backoff=0.01))
    try:
        assert transport.post("/api/v1/events", b"[1]", "application/json")["status"] == "success"
    finally:
        transport.close()
    assert scripted.bodies == [b"[1]"] * 4


def test_other_4xx_fail_at_once_with_the_server_message(scripted: ScriptedServer) -> None:
    scripted.statuses = [400, 400]
    transport = Transport(scripted.url, policy=RetryPolicy(max_retries=5, backoff=0.01))
    with pytest.raises(RejectedError, match="400: scripted failure") as info:
        transport.post("/api/v1/events", b"[1]", "application/json")
    transport.close()
    assert info.value.status == 400
    assert len(scripted.bodies) == 1


def test_retries_are_bounded(scripted: ScriptedServer) -> None:
    scripted.statuses = [503] * 10
    transport = Transport(scripted.url, policy=RetryPolicy(max_retries=2, backoff=0.01))
    with pytest.raises(DeliveryError, match="gave up after 3 attempts: 503: scripted failure"):
        transport.post("/api/v1/events", b"[1]", "application/json")
    transport.close()
    assert len(scripted.bodies) == 3


def test_unreachable_server_is_reported_not_raised() -> None:
    port = free_port()  # nothing listens there
    client = Client(f"http://127.0.0.1:{port}", max_retries=1, backoff=0.01, flush_interval=0.01)
    client.track("signup", "u1")
    assert client.flush()
    client.close()
    [failure] = client.errors
    assert (failure.kind, failure.count, failure.status) == (Kind.EVENTS, 1, None)
    assert "cannot reach" in failure.message
    with pytest.raises(RuntimeError, match="closed"):
        client.track("signup", "u2")


def test_sample_json_accepts_records_and_tuples() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    assert sample_json(("up", {"job": "a"}, 1.0)) == {
        "name": "up",
        "labels": {"job": "a"},
        "value": 1.0,
    }
    assert sample_json(("up", {}, math.nan, at))["ts"] == 1767312000000
    assert sample_json(Sample("x", {}, -math.inf, 5))["value"] == "-Inf"


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": "3"})) == 3.0
    dated = httpx.Response(
        503,
        headers={
            "Retry-After": "Wed, 21 Oct 2026 07:28:10 GMT",
            "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
        },
    )
    assert retry_after(dated) == 10.0
    assert retry_after(httpx.Response(500)) is None


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=5, backoff=1.0, max_backoff=4.0)
    assert all(0 <= policy.delay(10, None) <= 4.0 for _ in range(100))
    assert policy.delay(0, 2.5) == 2.5
    assert policy.delay(0, 99.0) == 4.0


def test_registry_exposition_labels_every_sample() -> None:
    registry = CollectorRegistry()
    Counter("jobs_done", "Jobs done", ["kind"], registry=registry).labels("mail").inc(3)
    text = registry_exposition(registry, {"job": "batch", "instance": "w1"}).decode()
    assert 'jobs_done_total{instance="w1",job="batch",kind="mail"} 3.0' in text
    assert "# TYPE jobs_done_total counter" in text


@pytest.mark.clock
@pytest.mark.e2e
def test_events_and_annotations_are_stored_once(server: ServerProcess) -> None:
    with Client(server.url, batch_size=2, flush_interval=0.05) as client:
        ids = [
            client.track("purchase", f"user-{i}", value=100 * i, props={"plan": "pro"})
            for i in range(5)
        ]
        client.track("signup", "user-9", id="fixed-id")
        client.track("signup", "user-9", id="fixed-id")  # a retry by the caller: same event
        client.annotate("deploy api 1.4", tags=["deploy"], text="canary")
        assert client.flush()
    assert client.errors == []
    events = stored_events(server)
    assert sorted(e.id or "" for e in events) == sorted([*ids, "fixed-id"])
    purchase = next(e for e in events if e.id == ids[3])
    assert (purchase.name, purchase.entity, purchase.value, purchase.props) == (
        "purchase",
        "user-3",
        300.0,
        {"plan": "pro"},
    )


@pytest.mark.clock
@pytest.mark.e2e
def test_pushed_samples_read_back(server: ServerProcess) -> None:
    t = now_ms() - 10_000
    with Client(server.url, flush_interval=0.05) as client:
        client.push(
            [
                Sample("queue_depth", {"queue": "mail"}, 12, t),
                ("queue_depth", {"queue": "mail"}, 14.5, t + 1000),
            ]
        )
        client.push([("queue_depth", {"queue": "sms"}, math.inf, t)])
    got = dict((m["queue"], v) for m, v in query_values(server.url, "queue_depth", t + 2000))
    assert got == {"mail": [12.0, 14.5], "sms": [math.inf]}


@pytest.mark.clock
@pytest.mark.e2e
def test_data_sent_before_the_server_is_up_arrives_exactly_once(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data")  # its port is chosen, nothing listens yet
    t = now_ms() - 5_000
    client = Client(
        srv.url, batch_size=3, flush_interval=0.01, max_retries=1000, backoff=0.02, max_backoff=0.2
    )
    try:
        ids = [client.track("signup", f"user-{i}") for i in range(7)]
        client.push([("build_seconds", {"job": "ci"}, 30 + i, t + i * 1000) for i in range(4)])
        srv.start()
        assert client.flush()
        assert client.errors == []
        points = query_values(srv.url, "build_seconds", t + 4000)
        assert points == [({"__name__": "build_seconds", "job": "ci"}, [30.0, 31.0, 32.0, 33.0])]
        client.close()
        assert sorted(e.id or "" for e in stored_events(srv)) == sorted(ids)
    finally:
        client.close(timeout=1)
        srv.kill()


@pytest.mark.clock
@pytest.mark.e2e
def test_a_rejected_batch_is_reported_and_not_retried(server: ServerProcess) -> None:
    failures: list[DeliveryFailure] = []
    with Client(server.url, flush_interval=0.05, backoff=0.01, on_error=failures.append) as client:
        client.push([("bad", {"__name__": "x"}, 1.0)])
        client.flush()
        client.track("ok", "user-1")
    assert len(client.errors) == 1 and failures == client.errors
    failure = client.errors[0]
    assert (failure.kind, failure.status, failure.count) == (Kind.SAMPLES, 400, 1)
    assert "__name__" in failure.message
    metrics = httpx.get(server.url + "/metrics").text
    assert 'opsmetrics_ingest_rejected_total{reason="bad_data"} 1.0' in metrics
    assert [e.name for e in stored_events(server)] == ["ok"]


@pytest.mark.e2e
def test_push_registry_and_periodic_pusher(server: ServerProcess) -> None:
    registry = CollectorRegistry()
    jobs = Counter("jobs_processed", "Jobs processed", registry=registry)
    Gauge("worker_busy", "Busy workers", registry=registry).set(3)
    jobs.inc(5)
    with Client(server.url) as client:
        assert client.push_registry(registry, job="batch", instance="w1") >= 2
        jobs.inc(2)
        with RegistryPusher(client, registry, job="batch", instance="w1", interval=0.05) as pusher:
            pass
        assert pusher.pushes >= 1 and pusher.failures == 0
    body = httpx.get(
        server.url + "/api/v1/query", params={"query": 'jobs_processed_total{job="batch"}'}
    ).json()
    [series] = body["data"]["result"]
    assert series["metric"]["instance"] == "w1"
    assert series["value"][1] == "7"
