"""Hostile clients against a real server process (issue 17 item 6): slow headers and bodies
time out while others are served, decompression bombs stop at the limit in bounded memory,
deeply nested JSON is refused before it is parsed, wrong tokens are rate-limited per address,
and cross-site writes are refused while bearer-token clients keep working."""

from __future__ import annotations

import gzip
import json
import select
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cramjam
import httpx
import pytest

from opsmetrics.auth import NewToken, new_token
from opsmetrics.clock import FakeClock
from opsmetrics.ingest.json_depth import MAX_JSON_DEPTH
from opsmetrics.services import open_services
from opsmetrics.settings import Settings
from opsmetrics.storage.token_records import Scope
from tests.conftest import FIXED_NOW
from tests.server import ServerProcess

pytestmark = pytest.mark.e2e
MIB = 1 << 20
#: Short deadlines, so that a test waits seconds; the server's defaults are 10 s and 60 s.
SLOW_ENV = {"OPSMETRICS_HEADER_READ_TIMEOUT": "2s", "OPSMETRICS_BODY_READ_TIMEOUT": "2s"}
#: How long a raw client keeps trickling before the test gives up: far past the deadlines
#: above, so only a server that never times the client out fails the test.
GIVE_UP_S = 30.0
BOMB_LIMIT = 16 * MIB


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data", env=SLOW_ENV, now_ms=FIXED_NOW).start()
    try:
        yield srv
    finally:
        srv.kill()


def trickle(srv: ServerProcess, first: bytes, drip: bytes) -> tuple[bytes, bool]:
    """Send `first`, then `drip` a byte every 0.2 s until the server answers and closes (or
    GIVE_UP_S passes); meanwhile another client must be served. What the server sent, and
    whether it closed the connection."""
    received, served_meanwhile = b"", False
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(first)
        give_up = time.monotonic() + GIVE_UP_S
        while time.monotonic() < give_up:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    assert served_meanwhile, "nobody else was served while the client trickled"
                    return received, True
                received += chunk
                continue
            if not served_meanwhile:
                served_meanwhile = httpx.get(srv.url + "/readyz").status_code == 200
            try:
                sock.sendall(drip)
            except (BrokenPipeError, ConnectionResetError):
                return received, True
    return received, False


def test_a_body_trickled_byte_by_byte_gets_408_and_others_are_served(
    slow_server: ServerProcess,
) -> None:
    head = (
        b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
    )
    received, closed = trickle(slow_server, head, b" ")
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b"OPSMETRICS_BODY_READ_TIMEOUT" in received and closed


def test_headers_trickled_byte_by_byte_get_408(slow_server: ServerProcess) -> None:
    received, closed = trickle(slow_server, b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b"request headers did not arrive within 2 s" in received and closed


def test_a_connection_that_sends_nothing_is_closed(slow_server: ServerProcess) -> None:
    received, closed = trickle(slow_server, b"", b"")
    assert closed and received.startswith(b"HTTP/1.1 408 ")


def test_a_body_sent_at_once_still_goes_through(slow_server: ServerProcess) -> None:
    event = {"name": "signup", "ts": slow_server.clock_ms(), "entity": "u1"}
    r = httpx.post(slow_server.url + "/api/v1/events", json=[event])
    assert r.status_code == 200 and r.json()["data"] == {"events": 1}


# --- decompression bombs ---------------------------------------------------------------
def gzip_of_zeros(size: int) -> bytes:
    """gzip of `size` zero bytes, made a slice at a time (never `size` bytes in memory)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(16 * MIB)
    parts = [deflate.compress(zeros) for _ in range(size // len(zeros))]
    return b"".join([*parts, deflate.flush()])


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def test_decompression_bombs_stop_at_the_limit_in_bounded_memory(tmp_path: Path) -> None:
    env = {"OPSMETRICS_MAX_DECOMPRESSED_BYTES": str(BOMB_LIMIT)}
    srv = ServerProcess(tmp_path / "data", env=env, now_ms=FIXED_NOW).start()
    try:
        assert srv.proc is not None
        gz_bomb = gzip_of_zeros(1024 * MIB)  # 1 GiB of zeros in about 1 MB
        snappy_bomb = bytes(cramjam.snappy.compress_raw(bytes(128 * MIB)))
        assert len(gz_bomb) < 2 * MIB and len(snappy_bomb) < 8 * MIB
        event = json.dumps([{"name": "signup", "ts": FIXED_NOW, "entity": "u1"}]).encode()
        # Warm up every path first: its imports and first allocations are not the bomb's.
        gz = {"content-encoding": "gzip"}
        assert httpx.post(srv.url + "/api/v1/events", content=gzip.compress(event), headers=gz)
        before = peak_rss_bytes(srv.proc.pid)
        bombs = [
            ("/api/v1/events", gz_bomb, gz),
            ("/api/v1/samples", gz_bomb, gz),
            ("/v1/metrics", gz_bomb, {**gz, "content-type": "application/x-protobuf"}),
            ("/api/v1/write", snappy_bomb, {"content-type": "application/x-protobuf"}),
        ]
        for path, body, headers in bombs:
            r = httpx.post(srv.url + path, content=body, headers=headers, timeout=60)
            assert r.status_code == 413, (path, r.text)
            assert str(BOMB_LIMIT) in r.json()["error"], r.text
        grown = peak_rss_bytes(srv.proc.pid) - before
        assert grown < 2 * BOMB_LIMIT, f"peak RSS grew by {grown / MIB:.0f} MiB"
        count = httpx.get(srv.url + "/api/v1/query", params={"query": "count(up)"})
        assert count.status_code == 200  # still serving
    finally:
        srv.kill()


# --- deeply nested JSON ----------------------------------------------------------------
def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/v1/events", {}),
        ("/api/v1/samples", {}),
        ("/v1/metrics", {"content-type": "application/json"}),
        ("/api/v1/silences", {}),
        ("/api/v1/analysis/ab", {}),
    ],
)
def test_deeply_nested_json_is_400_naming_the_limit(
    fixed_server: ServerProcess, path: str, headers: dict[str, str]
) -> None:
    for depth in (MAX_JSON_DEPTH + 1, 20_000):  # past the decoders' recursion limits
        r = httpx.post(fixed_server.url + path, content=nested(depth), headers=headers)
        assert r.status_code == 400, (path, depth, r.text)
        error = r.json()["error"]
        assert f"nested {depth} levels deep" in error and f"limit of {MAX_JSON_DEPTH}" in error


def test_json_just_within_the_depth_limit_is_decoded(fixed_server: ServerProcess) -> None:
    # At the limit the decoder runs and answers about the content, not the depth.
    r = httpx.post(fixed_server.url + "/api/v1/events", content=nested(MAX_JSON_DEPTH))
    assert r.status_code == 400 and "nested" not in r.json()["error"]


# --- wrong tokens ----------------------------------------------------------------------
def server_with_tokens(root: Path, env: dict[str, str]) -> tuple[ServerProcess, NewToken]:
    data = root / "data"
    token = new_token("hostile-test", Scope.ADMIN, FIXED_NOW)
    services = open_services(Settings(data_dir=data), FakeClock(FIXED_NOW))
    try:
        services.storage.save_token(token.record)
    finally:
        services.close()
    return ServerProcess(data, env=env, now_ms=FIXED_NOW).start(), token


def test_wrong_tokens_from_one_address_get_429_and_are_logged(tmp_path: Path) -> None:
    env = {"OPSMETRICS_MAX_TOKEN_FAILURES_PER_MIN": "5"}
    srv, token = server_with_tokens(tmp_path, env)
    good = {"authorization": f"Bearer {token.secret}"}
    bad = {"authorization": "Bearer om_deadbeef_not-the-secret"}
    # Two addresses of the loopback network: the guesser's and an honest client's.
    guesser = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    honest = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"))
    try:
        url = srv.url + "/api/v1/labels"
        codes = [guesser.get(url, headers=bad).status_code for _ in range(7)]
        assert codes == [401] * 5 + [429] * 2
        refused = guesser.get(url, headers=good)  # even the right token, until it refills
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 12
        assert "too many wrong tokens from 127.0.0.2" in refused.json()["error"]
        assert honest.get(url, headers=good).status_code == 200
        # A missing token guesses nothing and is not counted.
        assert [honest.get(url).status_code for _ in range(6)] == [401] * 6
        assert honest.get(url, headers=good).status_code == 200
        log = srv.log()
        assert log.count("wrong bearer token from 127.0.0.2 on GET /api/v1/labels") == 5
        assert "refusing that address for a while" in log and "127.0.0.3" not in log
        assert token.secret not in log
    finally:
        guesser.close()
        honest.close()
        srv.kill()


def test_wrong_cookie_tokens_on_pages_count_too(tmp_path: Path) -> None:
    srv, token = server_with_tokens(tmp_path, {"OPSMETRICS_MAX_TOKEN_FAILURES_PER_MIN": "2"})
    try:
        with httpx.Client(cookies={"opsmetrics_token": "om_wrong_guess"}) as pages:
            codes = [pages.get(srv.url + "/alerts").status_code for _ in range(3)]
        assert codes == [401, 401, 429]
    finally:
        srv.kill()


def test_the_sdk_route_is_no_faster_way_to_guess_tokens(tmp_path: Path) -> None:
    # It tells a valid token of another scope (403) from an unknown one (401): an oracle.
    srv, token = server_with_tokens(tmp_path, {"OPSMETRICS_MAX_TOKEN_FAILURES_PER_MIN": "3"})
    try:
        url, page = srv.url + "/api/v1/sdk/events", {"origin": "https://shop.example"}
        codes = [httpx.post(url, params={"key": f"om_pk_{i}"}, headers=page, json=[]).status_code
                 for i in range(4)]  # fmt: skip
        assert codes == [401, 401, 401, 429]
        r = httpx.post(url, params={"key": token.secret}, headers=page, json=[])
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    finally:
        srv.kill()


# --- cross-site requests ---------------------------------------------------------------
SILENCE = {
    "matchers": [{"name": "alertname", "value": "Hostile", "isRegex": False}],
    "startsAt": "2027-01-04T00:00:00Z",
    "endsAt": "2027-01-05T00:00:00Z",
    "createdBy": "test",
    "comment": "csrf test",
}


def silences(srv: ServerProcess, headers: dict[str, str] | None = None) -> list[object]:
    r = httpx.get(srv.url + "/api/v1/silences", headers=headers)
    assert r.status_code == 200, r.text
    found: list[object] = r.json()["data"]
    return found


def test_a_cross_site_write_is_refused_and_writes_nothing(fixed_server: ServerProcess) -> None:
    url = fixed_server.url + "/api/v1/silences"
    # A page on another site posting with `mode: "no-cors"` (text/plain, no preflight).
    for foreign in (
        {"origin": "https://evil.example", "content-type": "text/plain"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"origin": fixed_server.url, "sec-fetch-site": "same-site"},
    ):
        r = httpx.post(url, content=json.dumps(SILENCE), headers=foreign)
        assert r.status_code == 403, (foreign, r.text)
        assert "cross-site request refused" in r.json()["error"]
    assert silences(fixed_server) == []
    # The UI's own page (same origin), and a client that sends no Origin (curl, SDKs).
    own = {"origin": fixed_server.url, "sec-fetch-site": "same-origin"}
    assert httpx.post(url, json=SILENCE, headers=own).status_code == 200
    assert httpx.post(url, json=SILENCE).status_code == 200
    assert len(silences(fixed_server)) == 2


def test_bearer_token_clients_are_not_refused_as_cross_site(tmp_path: Path) -> None:
    srv, token = server_with_tokens(tmp_path, {})
    good = {"authorization": f"Bearer {token.secret}"}
    try:
        cookie = {"cookie": f"opsmetrics_token={token.secret}"}
        foreign = {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}
        url = srv.url + "/api/v1/silences"
        r = httpx.post(url, json=SILENCE, headers={**cookie, **foreign})
        assert r.status_code == 403 and silences(srv, good) == []
        r = httpx.post(url, json=SILENCE, headers={**good, **foreign})
        assert r.status_code == 200, r.text
        assert len(silences(srv, good)) == 1
    finally:
        srv.kill()


# --- security headers ------------------------------------------------------------------
def test_pages_and_api_answers_carry_security_headers(fixed_server: ServerProcess) -> None:
    for path in ("/", "/alerts", "/api/v1/labels", "/static/js/api.js", "/nope"):
        r = httpx.get(fixed_server.url + path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["x-frame-options"] == "DENY", path
        assert r.headers["referrer-policy"] == "same-origin", path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp.replace("style-src-attr 'unsafe-inline'", ""), csp
        assert "strict-transport-security" not in r.headers  # plain HTTP: no HSTS
    page = httpx.get(fixed_server.url + "/alerts").text
    assert "<script>" not in page  # every script is a file the CSP allows
    docs = httpx.get(fixed_server.url + "/docs")  # FastAPI's page: CDN scripts, inline code
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers
    assert docs.headers["x-content-type-options"] == "nosniff"
