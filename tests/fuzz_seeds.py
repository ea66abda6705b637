"""Valid (and nearly valid) inputs the fuzz targets start from, one list per target.

Seeds come from the formats' own examples: the demo catalog's YAML files, the OpenMetrics
parser suite and the PromQL conformance queries in ../shared/testdata (when that directory is
there), and small requests built here with the same builders the decoder tests use. A fuzzer
that starts from valid input reaches the code behind the first syntax check; random bytes
alone mostly test the first line of each parser.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import cramjam
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from opsmetrics.catalog.validate import EXAMPLE_CONFIG
from opsmetrics.ingest.proto import remote_pb2 as pb
from tests.test_otlp import export, gauge, histogram, number, total

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
REPO = Path(__file__).resolve().parents[1]

#: Bytes that parsers give a meaning to; inserted at random places in the seeds.
TOKENS = [
    b"(" * 16,
    b"[" * 16,
    b"&a [*a, *a, *a, *a]",
    b"1+1+1+1+1+1+1+1+",
    b"\x00",
    b"\xff",
    b"\x80",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\n",
    b"\r",
    b"\t",
    b" ",
    b'"',
    b"'",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"(",
    b")",
    b",",
    b":",
    b"=",
    b"#",
    b"# EOF\n",
    b"# TYPE x counter\n",
    b"{{",
    b"}}",
    b"{{ end }}",
    b"$",
    b"|",
    b"-",
    b"+",
    b"0",
    b"-1",
    b"1e309",
    b"-0",
    b"NaN",
    b"+Inf",
    b"9223372036854775808",
    b"1.5",
    b"&a",
    b"*a",
    b"!!binary",
    b"---",
    b"? ",
    b"%YAML 1.1\n",
    b"~",
    b"null",
    b"true",
    b"\x08\x96\x01",
    b"\x0a\xff\xff\xff\xff\x0f",
    b"\x12\x00",
    b"\x1a\x05",
    b"\x09" * 9,
]


def testdata() -> Path:
    """../shared/testdata, or OPSMETRICS_TESTDATA (as the conformance tests read it)."""
    root = os.environ.get("OPSMETRICS_TESTDATA")
    return Path(root) if root else TESTDATA


def write_request(*series: tuple[dict[str, str], list[tuple[int, float]]]) -> bytes:
    request = pb.WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    meta = request.metadata.add(metric_family_name="http_requests_total", help="Requests.")
    meta.type = pb.MetricMetadata.COUNTER
    return request.SerializeToString()


def remote_write_protos() -> list[bytes]:
    api = {"__name__": "http_requests_total", "job": "api", "code": "200"}
    return [
        write_request((api, [(1000, 1.0), (2000, 2.5)])),
        write_request((api, [(1000, float("nan"))]), ({"__name__": "up"}, [(1000, 1.0)])),
        write_request(({"job": "no_name"}, [(1000, 1.0)])),
        b"",
    ]


def otlp_protos() -> list[bytes]:
    return [
        export(gauge("queue_depth", number(3.5, labels={"queue": "a"})), resource={"job": "w"}),
        export(total("requests", number(7, labels={"code": 200}), unit="1")),
        export(histogram("latency", [0.1, 1.0], [1, 2, 0])),
        export(total("delta", number(1.0), temporality=1)),
    ]


def otlp_jsons() -> list[bytes]:
    out = []
    for raw in otlp_protos():
        request = ExportMetricsServiceRequest.FromString(raw)
        out.append(json_format.MessageToJson(request).encode())
    return out


def openmetrics_texts() -> list[bytes]:
    own = [
        b'# TYPE a counter\n# HELP a Things.\na_total{x="1"} 1 1.5\na_created 1\n# EOF\n',
        b'# TYPE h histogram\nh_bucket{le="1"} 0\nh_bucket{le="+Inf"} 2 # {t="x"} 1 2\n'
        b"h_count 2\nh_sum 3\n# EOF\n",
        b'# TYPE s stateset\ns{s="a"} 1\ns{s="b"} 0\n# EOF\n',
    ]
    suite = testdata() / "openmetrics" / "parsers"
    if not suite.is_dir():
        return own
    cases = sorted(p / "metrics" for p in suite.iterdir() if (p / "metrics").is_file())
    return own + [p.read_bytes() for p in cases[::6]]


def prometheus_texts() -> list[bytes]:
    return [
        b'# HELP up Up.\n# TYPE up gauge\nup{job="a",instance="b:9"} 1 1700000000000\n',
        b'http_requests_total{code="200",path="/a b"} 10\nx NaN\ny +Inf\n',
        b'# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\n',
        b'# TYPE s summary\ns{quantile="0.9"} 1\ns_count 3\ns_sum 4\n',
    ]


def samples_jsons() -> list[bytes]:
    series = [
        {"name": "a", "labels": {"k": "v"}, "type": "counter", "samples": [[1000, 1]]},
        {"name": "b", "ts": "2026-12-07T00:00:00Z", "value": "NaN"},
        {"name": "c", "value": 2},
    ]
    return [
        json.dumps(series).encode(),
        b"\n".join(json.dumps(s).encode() for s in series),
        b'{"name": "d", "samples": [[1000, "stale"], [2000, "+Inf"]], "help": "x", "unit": "s"}',
    ]


def events_jsons() -> list[bytes]:
    events = [
        {"name": "purchase", "entity": "u1", "value": 1250, "props": {"plan": "pro", "n": 2}},
        {"name": "signup", "ts": "2026-12-06T23:00:00Z", "entity": "u2", "id": "e-1"},
        {"name": "nps_response", "value": 9, "props": {"score": 9, "ok": True}},
    ]
    return [json.dumps(events).encode(), b"\n".join(json.dumps(e).encode() for e in events)]


def annotations_jsons() -> list[bytes]:
    items = [
        {"title": "deploy api", "tags": ["deploy"], "text": "v1.2"},
        {"title": "incident", "ts": "2026-12-06T22:00:00Z", "end": "2026-12-06T23:00:00Z"},
    ]
    return [json.dumps(items).encode(), json.dumps(items[0]).encode()]


def csv_files() -> list[bytes]:
    return [
        b"name,ts,entity,value,plan\npurchase,1796604000000,u1,12.5,pro\nsignup,,u2,,\n",
        b'\xef\xbb\xbfname,id,entity\nsignup,e1,u1\n"quoted, name",e2,"u""2"\n',
    ]


def import_files() -> list[bytes]:
    return [*samples_jsons(), *events_jsons(), *prometheus_texts()[:2], openmetrics_texts()[0]]


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def gzip_bodies() -> list[bytes]:
    return [bytes(cramjam.gzip.compress(s)) for s in samples_jsons()[:2]]


@cache
def promql_queries() -> list[bytes]:
    own = [
        b'sum by (job) (rate(http_requests_total{job=~"a.*"}[5m]))',
        b"histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
        b"up offset 5m @ 1700000000 and on(job) group_left(x) (up > bool 0)",
        b"max_over_time(up[1h:5m]) / ignoring(a) -time() ^ 2",
        b'label_replace(up, "a", "$1", "job", "(.*)") unless topk(3, up)',
        b'count_values("v", up) or vector(1) % absent(nope{a!="b"})',
    ]
    folder = testdata() / "promql"
    if not folder.is_dir():
        return own
    found: list[bytes] = []
    for path in sorted(folder.glob("*.test")):
        lines = path.read_text(encoding="utf-8").splitlines()
        found += [line.split(" ", 4)[-1].encode() for line in lines if line.startswith("eval ")]
    return own + found[::25]


def alert_templates() -> list[bytes]:
    return [
        b"{{ $labels.instance }} is down ({{ $value | humanize }})",
        b"{{ if gt $value 0.5 }}high{{ else if eq $value 0.0 }}zero{{ else }}low{{ end }}",
        b'{{ printf "%.2f%%" $value }} {{ $externalURL }} {{ .Labels.job | title }}',
        b'{{ humanizeDuration $value }} {{ reReplaceAll "a(.)" "$1" $labels.job }}',
        b'{{/* comment */}}{{ index $labels "job" }} {{ humanizePercentage 0.5 }}',
    ]


def demo_file(rel: str) -> bytes:
    return (EXAMPLE_CONFIG / rel).read_bytes()


def demo_files(folder: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((EXAMPLE_CONFIG / folder).glob("*.yaml"))]


def notify_files() -> list[bytes]:
    windows = (
        b"time_intervals:\n- name: weekends\n  time_intervals:\n"
        b"  - weekdays: ['saturday', 'sunday']\n    times: [{start_time: '00:00', end_time: "
        b"'24:00'}]\n    months: ['1:3', 'december']\n    days_of_month: ['1', '-1']\n"
        b"    location: Europe/Berlin\n"
    )
    return [demo_file("notify.yaml"), windows]


def kpi_alert_files() -> list[bytes]:
    return [demo_file("rules/kpi_alerts.yaml")]
