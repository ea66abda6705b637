"""remote_write, OTLP and scraping through the real server process."""

from __future__ import annotations

import gzip
from pathlib import Path

import cramjam
import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as otlp_service

from opsmetrics.ingest.proto import remote_pb2 as pb
from tests.server import ServerProcess, wait_until

pytestmark = pytest.mark.e2e
RW_HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}
#: The scraping server's (and its target's) clock starts here.
SCRAPE_NOW = 1_780_272_420_000  # Monday 2026-06-01 00:07 UTC


def write_request(ts_ms: int, value: float, job: str = "api") -> bytes:
    req = pb.WriteRequest()
    series = req.timeseries.add()
    for name, val in (("__name__", "http_requests_total"), ("job", job), ("code", "200")):
        label = series.labels.add()
        label.name, label.value = name, val
    sample = series.samples.add()
    sample.value, sample.timestamp = value, ts_ms
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def instant(srv: ServerProcess, expr: str, at_ms: int) -> list[dict[str, object]]:
    r = httpx.get(srv.url + "/api/v1/query", params={"query": expr, "time": str(at_ms / 1000)})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["result"])


def test_remote_write_semantics(fixed_server: ServerProcess) -> None:
    server = fixed_server
    t = server.now_ms - 1000
    url = server.url + "/api/v1/write"
    r = httpx.post(url, content=write_request(t, 42.0), headers=RW_HEADERS)
    assert r.status_code == 204, r.text
    got = instant(server, 'http_requests_total{job="api"}', t)
    assert got[0]["value"] == [t / 1000, "42"]
    # the same sample again: an idempotent no-op; a changed value: rejected
    assert httpx.post(url, content=write_request(t, 42.0), headers=RW_HEADERS).status_code == 204
    changed = httpx.post(url, content=write_request(t, 43.0), headers=RW_HEADERS)
    assert changed.status_code == 400 and "already has the value" in changed.json()["error"]
    # wrong content type / encoding: 415; corrupt body: 400
    bad_type = {**RW_HEADERS, "content-type": "application/json"}
    assert httpx.post(url, content=write_request(t, 1.0), headers=bad_type).status_code == 415
    framed = {**RW_HEADERS, "content-encoding": "gzip"}
    assert httpx.post(url, content=write_request(t, 1.0), headers=framed).status_code == 415
    corrupt = httpx.post(url, content=b"\x05garbage", headers=RW_HEADERS)
    assert corrupt.status_code == 400 and corrupt.json()["errorType"] == "bad_data"


def otlp_request(ts_ms: int) -> otlp_service.ExportMetricsServiceRequest:
    body = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "checkout"}},
                        {"key": "service.instance.id", "value": {"stringValue": "pod-1"}},
                    ]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "queue.depth",
                                "unit": "1",
                                "gauge": {
                                    "dataPoints": [
                                        {"asDouble": 7, "timeUnixNano": str(ts_ms * 1_000_000)}
                                    ]
                                },
                            },
                            {
                                "name": "latency",
                                "unit": "s",
                                "exponentialHistogram": {
                                    "dataPoints": [
                                        {"count": "1", "timeUnixNano": str(ts_ms * 1_000_000)}
                                    ]
                                },
                            },
                        ]
                    }
                ],
            }
        ]
    }
    return json_format.ParseDict(body, otlp_service.ExportMetricsServiceRequest())


def test_otlp_protobuf_json_and_partial_success(fixed_server: ServerProcess) -> None:
    server = fixed_server
    t = server.now_ms - 1000
    req = otlp_request(t)
    r = httpx.post(
        server.url + "/v1/metrics",
        content=gzip.compress(req.SerializeToString()),
        headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    answer = otlp_service.ExportMetricsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_data_points == 1
    assert answer.partial_success.error_message
    got = instant(server, "queue_depth_ratio", t)  # unit "1" on a gauge: _ratio
    assert got[0]["metric"]["job"] == "checkout" and got[0]["metric"]["instance"] == "pod-1"
    assert got[0]["value"][1] == "7"
    # JSON encoding of the same request, one millisecond later
    req2 = otlp_request(t + 1)
    r = httpx.post(
        server.url + "/v1/metrics",
        content=json_format.MessageToJson(req2),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    bad = httpx.post(
        server.url + "/v1/metrics", content=b"{}", headers={"content-type": "text/plain"}
    )
    assert bad.status_code == 415


def test_scrapes_targets_from_scrape_yaml(tmp_path: Path) -> None:
    # Any /metrics endpoint will do.
    target = ServerProcess(tmp_path / "target", now_ms=SCRAPE_NOW).start()
    config = tmp_path / "config"
    config.mkdir()
    (config / "scrape.yaml").write_text(
        "scrape_configs:\n"
        "  - job_name: target\n"
        "    scrape_interval: 1s\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target.port}']}}]\n"
    )
    srv = ServerProcess(tmp_path / "data", config_dir=config, now_ms=SCRAPE_NOW).start()
    try:
        got = wait_until(
            lambda: instant(srv, 'up{job="target"}', srv.clock_ms()), "a scrape of the target", 20
        )
        assert got[0]["value"][1] == "1"
        assert got[0]["metric"]["instance"] == f"127.0.0.1:{target.port}"
        scraped = instant(
            srv, 'opsmetrics_storage_rows{job="target",kind="series"}', srv.clock_ms()
        )
        assert len(scraped) == 1
    finally:
        srv.kill()
        target.kill()
