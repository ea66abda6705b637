"""JSON ingest endpoints, errors, auth and operations endpoints, through the real server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.server import ServerProcess

pytestmark = pytest.mark.e2e


def now_ms() -> int:
    return int(time.time() * 1000)


def query(srv: ServerProcess, expr: str, **params: str) -> list[dict[str, object]]:
    r = httpx.get(srv.url + "/api/v1/query", params={"query": expr, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    return list(body["data"]["result"])


@pytest.mark.clock
def test_json_samples_then_query(server: ServerProcess) -> None:
    t = now_ms() - 5000
    body = [
        {
            "name": "orders_total",
            "labels": {"shop": "eu"},
            "type": "counter",
            "help": "Orders",
            "samples": [[t - 15000, 1], [t, 3]],
        },
        {"name": "orders_total", "labels": {"shop": "us"}, "ts": t, "value": "NaN"},
    ]
    r = httpx.post(server.url + "/api/v1/samples", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"samples": 3, "duplicates": 0}
    got = query(server, 'orders_total{shop="eu"}', time=str(t / 1000))
    assert got == [{"metric": {"__name__": "orders_total", "shop": "eu"}, "value": [t / 1000, "3"]}]
    nan = query(server, 'orders_total{shop="us"}', time=str(t / 1000))
    assert nan[0]["value"] == [t / 1000, "NaN"]
    meta = httpx.get(server.url + "/api/v1/metadata").json()["data"]
    assert meta["orders_total"] == [{"type": "counter", "help": "Orders", "unit": ""}]
    series = httpx.get(server.url + "/api/v1/series", params={"match[]": "orders_total"}).json()
    assert len(series["data"]) == 2
    values = httpx.get(server.url + "/api/v1/label/shop/values").json()["data"]
    assert values == ["eu", "us"]


@pytest.mark.clock
def test_ndjson_events_idempotent(server: ServerProcess) -> None:
    t = now_ms()
    lines = "\n".join(
        [
            f'{{"name":"purchase","ts":{t},"entity":"u1","value":1999,"id":"o-1"}}',
            f'{{"name":"signup","ts":{t},"entity":"u2","props":{{"source":"ads"}}}}',
        ]
    )
    for _ in range(2):
        r = httpx.post(
            server.url + "/api/v1/events",
            content=lines,
            headers={"content-type": "application/x-ndjson"},
        )
        assert r.status_code == 200, r.text
    metrics = httpx.get(server.url + "/metrics").text
    assert 'opsmetrics_storage_rows{kind="events"} 2.0' in metrics


def test_bad_json_is_400_in_prometheus_shape_and_counted(server: ServerProcess) -> None:
    r = httpx.post(server.url + "/api/v1/events", content=b'[{"name": "x", "tss": 1}]')
    assert r.status_code == 400
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert "tss" in body["error"]
    r = httpx.post(server.url + "/api/v1/samples", json=[{"name": "bad-name", "value": 1}])
    assert r.status_code == 400 and "metric name" in r.json()["error"]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'opsmetrics_ingest_rejected_total{reason="invalid_json"} 1.0' in metrics
    assert 'opsmetrics_ingest_rejected_total{reason="invalid_metric_name"} 1.0' in metrics


@pytest.mark.clock
def test_annotations(server: ServerProcess) -> None:
    r = httpx.post(
        server.url + "/api/v1/annotations",
        json=[{"title": "deploy api v2", "tags": ["deploy"], "ts": now_ms()}],
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]["ids"]) == 1


def test_body_limit(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "d", env={"OPSMETRICS_MAX_BODY_BYTES": "1000"}).start()
    try:
        r = httpx.post(srv.url + "/api/v1/events", content=b"[" + b" " * 2000 + b"]")
        assert r.status_code == 413 and "OPSMETRICS_MAX_BODY_BYTES" in r.json()["error"]
    finally:
        srv.kill()


def test_health_and_buildinfo(server: ServerProcess) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").status_code == 200
    info = httpx.get(server.url + "/api/v1/status/buildinfo").json()
    assert info["status"] == "success" and info["data"]["version"]


def test_sigterm_shuts_down_cleanly(server: ServerProcess) -> None:
    r = httpx.post(server.url + "/api/v1/samples", json=[{"name": "x", "value": 1}])
    assert r.status_code == 200
    assert server.stop() == 0
    assert "Traceback" not in server.log()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsmetrics", *args], capture_output=True, text=True, timeout=60
    )


def test_tokens_and_scopes(tmp_path: Path) -> None:
    data = tmp_path / "d"
    ingest = _cli("token", "create", "--scope", "ingest", "--data", str(data))
    read = _cli("token", "create", "--scope", "read", "--data", str(data))
    assert ingest.returncode == 0, ingest.stderr
    ingest_tok, read_tok = ingest.stdout.strip(), read.stdout.strip()
    srv = ServerProcess(data).start()
    try:
        url = srv.url + "/api/v1/samples"
        body = [{"name": "x", "value": 1}]
        assert httpx.post(url, json=body).status_code == 401
        wrong = httpx.post(url, json=body, headers={"authorization": f"Bearer {read_tok}"})
        assert wrong.status_code == 403 and "ingest" in wrong.json()["error"]
        bogus = httpx.post(url, json=body, headers={"authorization": "Bearer om_x_y"})
        assert bogus.status_code == 401
        ok = httpx.post(url, json=body, headers={"authorization": f"Bearer {ingest_tok}"})
        assert ok.status_code == 200
        q = srv.url + "/api/v1/query"
        assert httpx.get(q, params={"query": "x"}).status_code == 401
        got = httpx.get(q, params={"query": "x"}, headers={"authorization": f"Bearer {read_tok}"})
        assert got.status_code == 200 and len(got.json()["data"]["result"]) == 1
    finally:
        srv.kill()
    # The secret itself is never stored, only its hash.
    assert ingest_tok.encode() not in (data / "opsmetrics.duckdb").read_bytes()


def test_refuses_public_bind_without_tokens(tmp_path: Path) -> None:
    res = _cli("serve", "--data", str(tmp_path / "d"), "--host", "0.0.0.0", "--port", "1")
    assert res.returncode == 2
    assert "no API tokens" in res.stderr


@pytest.mark.clock
def test_gzip_bodies_and_bombs(tmp_path: Path) -> None:
    import gzip

    env = {"OPSMETRICS_MAX_DECOMPRESSED_BYTES": "100000"}
    srv = ServerProcess(tmp_path / "d", env=env).start()
    try:
        line = f'{{"name":"signup","ts":{now_ms()},"entity":"u1"}}'
        ok = httpx.post(
            srv.url + "/api/v1/events",
            content=gzip.compress(line.encode()),
            headers={"content-encoding": "gzip"},
        )
        assert ok.status_code == 200 and ok.json()["data"] == {"events": 1}
        bomb = gzip.compress(b" " * 10_000_000)  # ~10 KB on the wire, 10 MB inflated
        r = httpx.post(
            srv.url + "/api/v1/events", content=bomb, headers={"content-encoding": "gzip"}
        )
        assert r.status_code == 413 and "OPSMETRICS_MAX_DECOMPRESSED_BYTES" in r.json()["error"]
        r = httpx.post(srv.url + "/api/v1/events", content=b"x", headers={"content-encoding": "br"})
        assert r.status_code == 415
    finally:
        srv.kill()
