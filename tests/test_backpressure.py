"""Overload: concurrency and bytes in flight per ingest endpoint, the write queue's bound, 429
with a computed Retry-After, and the Python client waiting as told. Real servers with small
limits; a request "held" mid-body (a raw socket that sent part of its body) occupies a slot
for as long as the test wants, so the overload is certain rather than a race."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from opsmetrics.client.transport import RetryPolicy, Transport
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.admission import IngestAdmission, IngestOverloadedError
from opsmetrics.ingest.otlp_response import RESOURCE_EXHAUSTED, encode_otlp_status
from opsmetrics.ingest.pipeline import MAX_RETRY_AFTER_S, Backlog, WriteRequest
from opsmetrics.model import Event
from opsmetrics.services import open_services
from opsmetrics.settings import Limits, Settings
from tests.conftest import FIXED_NOW
from tests.server import ServerProcess, wait_until

# --- helpers ----------------------------------------------------------------------------
Start = Callable[..., ServerProcess]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    servers: list[ServerProcess] = []

    def make(**env: str) -> ServerProcess:
        srv = ServerProcess(tmp_path / f"data{len(servers)}", env=env, now_ms=FIXED_NOW)
        servers.append(srv.start())
        return srv

    yield make
    for srv in servers:
        srv.kill()


class HeldRequest:
    """A POST that has sent its headers and the first byte of its body, and waits."""

    def __init__(self, srv: ServerProcess, path: str, body: bytes, ctype: str) -> None:
        self.body = body
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body[:1])

    def finish(self) -> tuple[int, bytes]:
        """Send the rest of the body; the answer's status and body."""
        self.sock.sendall(self.body[1:])
        data = b""
        while b"\r\n\r\n" not in data:
            data += self._recv()
        head, rest = data.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(rest) < length:
            rest += self._recv()
        self.sock.close()
        return int(head.split()[1]), rest

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection"
        return chunk


def metric(srv: ServerProcess, name: str, **labels: str) -> float:
    """One sample of the server's /metrics (0 when absent)."""
    text = httpx.get(srv.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def wait_inflight(srv: ServerProcess, endpoint: str, n: int) -> None:
    wait_until(
        lambda: metric(srv, "opsmetrics_ingest_inflight_requests", endpoint=endpoint) == n,
        f"{n} {endpoint} requests in flight",
    )


def samples_body(srv: ServerProcess, req: str, n: int = 3) -> bytes:
    """One series `bp_load{req=...}` with `n` samples in the server's last ten minutes."""
    ts0 = srv.clock_ms() - 600_000
    rows = [[ts0 + i * 1000, i] for i in range(n)]
    return json.dumps([{"name": "bp_load", "labels": {"req": req}, "samples": rows}]).encode()


def stored_counts(srv: ServerProcess) -> dict[str, int]:
    """Samples stored per `req` label of bp_load, through the query API."""
    query = {"query": "count_over_time(bp_load[1h])", "time": str(srv.clock_ms() / 1000)}
    got = httpx.get(srv.url + "/api/v1/query", params=query).json()
    return {r["metric"]["req"]: int(r["value"][1]) for r in got["data"]["result"]}


def assert_overloaded(response: httpx.Response, reason_text: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert reason_text in response.json()["error"]


# --- admission, in process --------------------------------------------------------------
def _admission(**limits: int) -> IngestAdmission:
    return IngestAdmission(Limits(**limits), CollectorRegistry(), lambda: 3)


def test_each_endpoint_has_its_own_slots() -> None:
    admission = _admission(max_ingest_concurrency=2)
    held = [admission.enter("samples", 10), admission.enter("samples", 10)]
    with pytest.raises(IngestOverloadedError) as refused:
        admission.enter("samples", 10)
    assert (refused.value.reason, refused.value.retry_after_s) == ("concurrency", 3)
    assert "OPSMETRICS_MAX_INGEST_CONCURRENCY" in refused.value.message
    admission.release(admission.enter("events", 10))  # another endpoint is not affected
    admission.release(held[0])
    admission.release(held[0])  # a second release changes nothing
    assert (admission.inflight_requests("samples"), admission.inflight_bytes) == (1, 10)
    admission.release(admission.enter("samples", 10))


def test_bytes_in_flight_are_bounded_but_one_request_alone_always_fits() -> None:
    admission = _admission(max_ingest_inflight_bytes=100)
    big = admission.enter("samples", 150)  # alone: admitted above the budget
    with pytest.raises(IngestOverloadedError) as refused:
        admission.enter("events", 1)
    assert refused.value.reason == "inflight_bytes"
    assert "OPSMETRICS_MAX_INGEST_INFLIGHT_BYTES" in refused.value.message
    admission.release(big)
    chunked = admission.enter("events", 0)  # no Content-Length: counted as it arrives
    declared = admission.enter("samples", 60)
    admission.received(chunked, 30)
    with pytest.raises(IngestOverloadedError):
        admission.received(chunked, 30)
    admission.received(declared, 60)  # bytes it declared are already held
    assert admission.inflight_bytes == 90
    admission.release(chunked)
    admission.release(declared)
    assert admission.inflight_bytes == 0


def test_retry_after_is_the_backlog_over_the_drain_rate() -> None:
    backlog = Backlog(max_work=100_000)
    assert backlog.retry_after_s() == 1  # nothing measured yet: at least 1 s
    backlog.add(1000)
    backlog.done(1000, 1.0)  # 1,000 items a second
    assert backlog.add(4500)
    assert (backlog.seconds(), backlog.retry_after_s()) == (4.5, 5)
    assert backlog.add(95_000) and not backlog.add(1000)
    assert backlog.retry_after_s() == MAX_RETRY_AFTER_S


def test_a_full_write_queue_refuses_with_queue_full(tmp_path: Path) -> None:
    limits = Limits(max_queued_samples=10)
    svc = open_services(Settings(data_dir=tmp_path, limits=limits), FakeClock(FIXED_NOW))
    writer_busy, go_on = threading.Event(), threading.Event()

    def block() -> None:
        writer_busy.set()
        go_on.wait(30)

    def events(n: int, name: str) -> WriteRequest:
        made = [Event(name, FIXED_NOW - i, f"user-{i}") for i in range(n)]
        return WriteRequest("test", events=made)

    try:
        svc.ingestor.run_maintenance(block)
        assert writer_busy.wait(30)
        first = svc.ingestor.submit(events(8, "first"))  # an empty queue takes anything
        with pytest.raises(IngestOverloadedError) as refused:
            svc.ingestor.submit(events(5, "second"))
        assert refused.value.reason == "queue_full" and refused.value.retry_after_s >= 1
        assert "OPSMETRICS_MAX_QUEUED_SAMPLES" in refused.value.message
        go_on.set()
        assert first.result(30).events == 8
        assert svc.ingestor.write(events(5, "second")).events == 5  # room again
    finally:
        go_on.set()
        svc.close()


def _status_class() -> type:
    """google.rpc.Status, built from its two-field definition (googleapis is not installed)."""
    file = descriptor_pb2.FileDescriptorProto(name="status_test.proto", package="google.rpc")
    message = file.message_type.add(name="Status")
    message.field.add(name="code", number=1, type=5, label=1)  # int32
    message.field.add(name="message", number=2, type=9, label=1)  # string
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


def test_the_otlp_status_body_decodes_as_google_rpc_status() -> None:
    payload, ctype = encode_otlp_status("application/x-protobuf", RESOURCE_EXHAUSTED, "slow é" * 30)
    status = _status_class().FromString(payload)
    assert (ctype, status.code, status.message) == ("application/x-protobuf", 8, "slow é" * 30)
    payload, ctype = encode_otlp_status("application/json; charset=utf-8", 8, "slow")
    assert (ctype, json.loads(payload)) == ("application/json", {"code": 8, "message": "slow"})


# --- a real server ----------------------------------------------------------------------
def test_a_body_still_arriving_holds_its_slot(start: Start) -> None:
    srv = start(OPSMETRICS_MAX_INGEST_CONCURRENCY="2")
    held = [
        HeldRequest(srv, "/api/v1/samples", samples_body(srv, f"held{i}"), "application/json")
        for i in range(2)
    ]
    wait_inflight(srv, "samples", 2)
    refused = httpx.post(srv.url + "/api/v1/samples", content=samples_body(srv, "refused"))
    assert_overloaded(refused, "OPSMETRICS_MAX_INGEST_CONCURRENCY")
    event = [{"name": "signup", "ts": srv.clock_ms() - 1000, "entity": "u1"}]
    assert httpx.post(srv.url + "/api/v1/events", json=event).status_code == 200
    assert [h.finish()[0] for h in held] == [200, 200]
    assert stored_counts(srv) == {"held0": 3, "held1": 3}
    labels = {"endpoint": "samples", "reason": "concurrency"}
    assert metric(srv, "opsmetrics_ingest_throttled_total", **labels) == 1
    wait_inflight(srv, "samples", 0)


def test_a_client_that_goes_away_gives_its_slot_back(start: Start) -> None:
    srv = start(OPSMETRICS_MAX_INGEST_CONCURRENCY="1")
    gone = HeldRequest(srv, "/api/v1/samples", samples_body(srv, "gone"), "application/json")
    wait_inflight(srv, "samples", 1)
    gone.sock.close()
    wait_inflight(srv, "samples", 0)
    assert metric(srv, "opsmetrics_ingest_inflight_bytes") == 0
    ok = httpx.post(srv.url + "/api/v1/samples", content=samples_body(srv, "after"))
    assert ok.status_code == 200 and stored_counts(srv) == {"after": 3}


def test_a_large_refused_body_still_gets_its_429(start: Start) -> None:
    """Refused before its body is read: the server (uvicorn) reads and drops the rest rather
    than closing with unread bytes, which would reset the connection and lose the answer."""
    srv = start(OPSMETRICS_MAX_INGEST_CONCURRENCY="1")
    held = HeldRequest(srv, "/api/v1/samples", samples_body(srv, "held"), "application/json")
    wait_inflight(srv, "samples", 1)
    large = b" " * (8 * 1024 * 1024)
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        for _ in range(5):
            assert_overloaded(client.post("/api/v1/samples", content=large), "CONCURRENCY")
    assert held.finish()[0] == 200
    assert stored_counts(srv) == {"held": 3}


def test_bytes_in_flight_are_bounded_across_endpoints(start: Start) -> None:
    srv = start(OPSMETRICS_MAX_INGEST_INFLIGHT_BYTES="1000")
    body = samples_body(srv, "held", n=40)
    assert 800 < len(body) < 1000
    held = HeldRequest(srv, "/api/v1/samples", body, "application/json")
    wait_inflight(srv, "samples", 1)
    events = json.dumps(
        [{"name": "signup", "ts": srv.clock_ms() - 1000, "entity": f"u{i}"} for i in range(8)]
    ).encode()
    declared = httpx.post(srv.url + "/api/v1/events", content=events)
    assert_overloaded(declared, "OPSMETRICS_MAX_INGEST_INFLIGHT_BYTES")
    chunked = httpx.post(srv.url + "/api/v1/events", content=iter([events]))  # no length
    assert_overloaded(chunked, "OPSMETRICS_MAX_INGEST_INFLIGHT_BYTES")
    assert held.finish()[0] == 200
    assert httpx.post(srv.url + "/api/v1/events", content=events).json()["data"]["events"] == 8
    assert metric(srv, "opsmetrics_ingest_throttled_total", reason="inflight_bytes") == 2
    assert metric(srv, "opsmetrics_ingest_admission_limit", limit="max_inflight_bytes") == 1000


def test_otlp_overload_answers_a_google_rpc_status(start: Start) -> None:
    srv = start(OPSMETRICS_MAX_INGEST_CONCURRENCY="1")
    held = HeldRequest(srv, "/v1/metrics", b"\x00\x00", "application/x-protobuf")
    wait_inflight(srv, "otlp", 1)
    proto = httpx.post(
        srv.url + "/v1/metrics",
        content=b"",
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert proto.status_code == 429 and int(proto.headers["retry-after"]) >= 1
    assert proto.headers["content-type"] == "application/x-protobuf"
    status = _status_class().FromString(proto.content)
    assert status.code == RESOURCE_EXHAUSTED
    assert "OPSMETRICS_MAX_INGEST_CONCURRENCY" in status.message
    as_json = httpx.post(srv.url + "/v1/metrics", json={"resourceMetrics": []})
    assert as_json.status_code == 429 and as_json.json()["code"] == RESOURCE_EXHAUSTED
    held.finish()
    wait_inflight(srv, "otlp", 0)


def _send_all(srv: ServerProcess, thread: int, requests: int) -> dict[str, httpx.Response]:
    answers = {}
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        for i in range(requests):
            req = f"t{thread}-{i}"
            answers[req] = client.post("/api/v1/samples", content=samples_body(srv, req, 200))
    return answers


def test_under_load_every_acknowledged_sample_is_stored_and_no_refused_one(
    start: Start,
) -> None:
    srv = start(OPSMETRICS_MAX_INGEST_CONCURRENCY="1")
    with ThreadPoolExecutor(6) as pool:
        parts = pool.map(lambda t: _send_all(srv, t, 25), range(6))
        answers = {req: r for part in parts for req, r in part.items()}
    codes = {r.status_code for r in answers.values()}
    refused = [r for r in answers.values() if r.status_code == 429]
    assert codes <= {200, 429} and refused, codes
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    acknowledged = {req for req, r in answers.items() if r.status_code == 200}
    assert stored_counts(srv) == dict.fromkeys(acknowledged, 200)
    throttled = metric(srv, "opsmetrics_ingest_throttled_total", endpoint="samples")
    assert throttled == len(refused)


def test_the_python_client_waits_as_told_and_gets_through(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    srv = start(OPSMETRICS_MAX_INGEST_CONCURRENCY="1")
    held = HeldRequest(srv, "/api/v1/samples", samples_body(srv, "held"), "application/json")
    wait_inflight(srv, "samples", 1)
    # Its own backoff would wait a few ms at most: a wait of whole seconds is the server's.
    transport = Transport(srv.url, policy=RetryPolicy(max_retries=20, backoff=0.001))
    caplog.set_level(logging.WARNING, "opsmetrics.client.transport")
    body = samples_body(srv, "client")
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(transport.post, "/api/v1/samples", body, "application/json")
        wait_until(
            lambda: metric(srv, "opsmetrics_ingest_throttled_total", endpoint="samples") >= 1,
            "the client's first attempt refused",
        )
        assert held.finish()[0] == 200
        assert sent.result(60)["data"]["samples"] == 3
    transport.close()
    waits = [float(w) for w in re.findall(r"429: .*; retrying in ([\d.]+)s", caplog.text)]
    assert waits and all(w >= 1 and w == int(w) for w in waits), caplog.text
    assert stored_counts(srv) == {"held": 3, "client": 3}
