"""OTLP/HTTP metrics decoding: the Prometheus mapping, partial success, encodings and limits."""

from __future__ import annotations

import gzip
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as otlp
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from opsmetrics.errors import (
    BadDataError,
    LimitExceededError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from opsmetrics.ingest.otlp import OtlpDecoded, decode_otlp
from opsmetrics.ingest.otlp_names import format_float, metric_name, prometheus_unit
from opsmetrics.ingest.proto import otlp_view_pb2 as view
from opsmetrics.model import (
    STALE_NAN_BITS,
    MetricMetadata,
    MetricType,
    SampleBatch,
)
from opsmetrics.model import (
    metric_name as name_of,
)
from opsmetrics.settings import Limits

LIMITS = Limits()
CUMULATIVE = otlp.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = otlp.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
NO_VALUE = otlp.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
MS = 1_000_000  # nanoseconds
Scalar = str | bool | int | float | list[str | int]


def any_value(value: Scalar) -> AnyValue:
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))


def attrs(values: Mapping[str, Scalar]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in values.items()]


def number(
    value: float | int | None,
    t_ms: int = 1000,
    labels: dict[str, Scalar] | None = None,
    flags: int = 0,
) -> otlp.NumberDataPoint:
    point = otlp.NumberDataPoint(
        time_unix_nano=t_ms * MS, attributes=attrs(labels or {}), flags=flags
    )
    if isinstance(value, int):
        point.as_int = value
    elif value is not None:
        point.as_double = value
    return point


def gauge(name: str, *points: otlp.NumberDataPoint, unit: str = "") -> otlp.Metric:
    return otlp.Metric(name=name, unit=unit, gauge=otlp.Gauge(data_points=points))


def total(
    name: str,
    *points: otlp.NumberDataPoint,
    unit: str = "",
    monotonic: bool = True,
    temporality: otlp.AggregationTemporality.ValueType = CUMULATIVE,
) -> otlp.Metric:
    data = otlp.Sum(data_points=points, is_monotonic=monotonic, aggregation_temporality=temporality)
    return otlp.Metric(name=name, unit=unit, sum=data)


def histogram(
    name: str,
    bounds: Sequence[float],
    counts: Sequence[int],
    *,
    total_sum: float | None = 1.5,
    temporality: otlp.AggregationTemporality.ValueType = CUMULATIVE,
    flags: int = 0,
    unit: str = "s",
) -> otlp.Metric:
    point = otlp.HistogramDataPoint(
        time_unix_nano=2000 * MS,
        count=sum(counts),
        bucket_counts=counts,
        explicit_bounds=bounds,
        flags=flags,
        attributes=attrs({"route": "/a"}),
    )
    if total_sum is not None:
        point.sum = total_sum
    data = otlp.Histogram(data_points=[point], aggregation_temporality=temporality)
    return otlp.Metric(name=name, unit=unit, description="Latency.", histogram=data)


def export(*metrics: otlp.Metric, resource: Mapping[str, Scalar] | None = None) -> bytes:
    return request(*metrics, resource=resource).SerializeToString()


def request(
    *metrics: otlp.Metric, resource: Mapping[str, Scalar] | None = None
) -> ExportMetricsServiceRequest:
    scope = otlp.ScopeMetrics(metrics=metrics)
    res = Resource(attributes=attrs(resource or {}))
    return ExportMetricsServiceRequest(
        resource_metrics=[otlp.ResourceMetrics(resource=res, scope_metrics=[scope])]
    )


def decode(
    body: bytes,
    content_type: str | None = "application/x-protobuf",
    encoding: str | None = None,
    limits: Limits = LIMITS,
) -> OtlpDecoded:
    return decode_otlp(body, content_type, encoding, limits)


def text(batch: SampleBatch) -> list[tuple[str, int, float]]:
    """Each sample as (`name{a="b"}`, ts, value), in order."""
    names = [
        name_of(s) + "{" + ",".join(f'{k}="{v}"' for k, v in s if k != "__name__") + "}"
        for s in batch.series
    ]
    values = batch.values.tolist()
    return [
        (names[i], t, v)
        for i, t, v in zip(batch.index.tolist(), batch.ts.tolist(), values, strict=True)
    ]


# --- the Prometheus mapping ----------------------------------------------------------------


def test_gauge_with_resource_and_attributes() -> None:
    metric = gauge("system.memory.usage", number(1024, 1500, {"state": "used"}), unit="By")
    resource = {
        "service.name": "api",
        "service.namespace": "shop",
        "service.instance.id": "pod-1",
        "host.name": "h1",
    }
    result = decode(export(metric, resource=resource))
    assert result.rejected_points == 0 and result.error_message == ""
    assert text(result.decoded.batch) == [
        ('system_memory_usage_bytes{instance="pod-1",job="shop/api",state="used"}', 1500, 1024.0),
        ('target_info{host_name="h1",instance="pod-1",job="shop/api"}', 1500, 1.0),
    ]
    assert result.decoded.metadata == [
        MetricMetadata("system_memory_usage_bytes", MetricType.GAUGE, "", "bytes"),
        MetricMetadata("target_info", MetricType.GAUGE, "Target metadata", ""),
    ]
    assert len(result.decoded.deltas) == 0


def test_target_info_only_with_other_resource_attributes() -> None:
    metric = gauge("up", number(1.0, 1000), number(1.0, 3000))
    result = decode(export(metric, resource={"service.name": "api"}))
    assert [row[0] for row in text(result.decoded.batch)] == ['up{job="api"}'] * 2
    with_host = decode(export(metric, resource={"service.name": "api", "host": "h"}))
    assert text(with_host.decoded.batch)[-1] == ('target_info{host="h",job="api"}', 3000, 1.0)


def test_cumulative_monotonic_sum_is_a_counter() -> None:
    metric = total("http.server.requests", number(7, 1000, {"http.method": "GET"}), unit="{req}")
    result = decode(export(metric))
    assert text(result.decoded.batch) == [
        ('http_server_requests_total{http_method="GET"}', 1000, 7.0)
    ]
    assert result.decoded.metadata[0].type is MetricType.COUNTER


@pytest.mark.parametrize(
    ("name", "unit", "counter", "expected"),
    [
        ("http.server.duration", "ms", True, "http_server_duration_milliseconds_total"),
        ("requests_total", "", True, "requests_total"),
        ("process.cpu.seconds_total", "s", True, "process_cpu_seconds_total"),
        ("net.io", "By/s", False, "net_io_bytes_per_second"),
        ("packets", "{packets}/s", False, "packets_per_second"),
        ("temp", "Cel", False, "temp_celsius"),
        ("weird", "foo bar", False, "weird_foo_bar"),
        ("my-metric..name!", "", False, "my_metric_name_"),
        ("9lives", "", False, "_9lives"),
        ("ns:sub", "", False, "ns:sub"),
        ("", "s", False, ""),
    ],
)
def test_metric_names(name: str, unit: str, counter: bool, expected: str) -> None:
    assert metric_name(name, prometheus_unit(unit, gauge=not counter), counter=counter) == expected


def test_ratio_unit_only_for_gauges() -> None:
    assert prometheus_unit("1", gauge=True) == "ratio"
    assert prometheus_unit("1", gauge=False) == ""
    result = decode(export(gauge("cpu.utilization", number(0.5), unit="1")))
    assert text(result.decoded.batch)[0][0] == "cpu_utilization_ratio{}"


def test_non_monotonic_cumulative_sum_is_a_gauge() -> None:
    metric = total("queue.size", number(3), monotonic=False)
    result = decode(export(metric))
    assert text(result.decoded.batch) == [("queue_size{}", 1000, 3.0)]
    assert result.decoded.metadata[0].type is MetricType.GAUGE


def test_delta_sums_become_deltas() -> None:
    metric = total("orders", number(2, 1000), number(3, 2000), temporality=DELTA)
    result = decode(export(metric))
    assert len(result.decoded.batch) == 0
    assert text(result.decoded.deltas) == [
        ("orders_total{}", 1000, 2.0),
        ("orders_total{}", 2000, 3.0),
    ]
    assert result.decoded.metadata == [MetricMetadata("orders_total", MetricType.COUNTER)]


def test_delta_non_monotonic_sums_are_rejected() -> None:
    metric = total("queue", number(2), number(1), monotonic=False, temporality=DELTA)
    result = decode(export(metric, gauge("up", number(1.0))))
    assert result.rejected_points == 2
    assert "2 points of a delta non-monotonic sum" in result.error_message
    assert "'queue'" in result.error_message
    assert len(result.decoded.batch) == 1


def test_cumulative_histogram_becomes_classic_series() -> None:
    metric = histogram("http.server.duration", [0.005, 1.0, 2.5], [1, 2, 3, 4])
    result = decode(export(metric))
    base = "http_server_duration_seconds"
    assert text(result.decoded.batch) == [
        (f'{base}_bucket{{le="0.005",route="/a"}}', 2000, 1.0),
        (f'{base}_bucket{{le="1",route="/a"}}', 2000, 3.0),
        (f'{base}_bucket{{le="2.5",route="/a"}}', 2000, 6.0),
        (f'{base}_bucket{{le="+Inf",route="/a"}}', 2000, 10.0),
        (f'{base}_sum{{route="/a"}}', 2000, 1.5),
        (f'{base}_count{{route="/a"}}', 2000, 10.0),
    ]
    assert result.decoded.metadata == [
        MetricMetadata(base, MetricType.HISTOGRAM, "Latency.", "seconds")
    ]


def test_histogram_without_sum_or_buckets() -> None:
    result = decode(export(histogram("h", [], [], total_sum=None, unit="")))
    assert text(result.decoded.batch) == [
        ('h_bucket{le="+Inf",route="/a"}', 2000, 0.0),
        ('h_count{route="/a"}', 2000, 0.0),
    ]


def test_delta_histograms_become_deltas() -> None:
    result = decode(export(histogram("h", [1.0], [2, 1], temporality=DELTA, unit="")))
    assert len(result.decoded.batch) == 0
    assert [v for _, _, v in text(result.decoded.deltas)] == [2.0, 3.0, 1.5, 3.0]


@pytest.mark.parametrize(
    ("bounds", "counts", "reason"),
    [
        ([1.0, 2.0], [1, 2], "one entry more than explicit_bounds"),
        ([2.0, 1.0], [1, 2, 3], "not strictly increasing"),
        ([1.0, math.nan], [1, 2, 3], "not strictly increasing"),
    ],
)
def test_invalid_histograms_are_rejected(
    bounds: list[float], counts: list[int], reason: str
) -> None:
    result = decode(export(histogram("h", bounds, counts)))
    assert result.rejected_points == 1 and reason in result.error_message
    assert len(result.decoded.batch) == 0 and result.decoded.metadata == []


def test_summary_becomes_quantile_series() -> None:
    point = otlp.SummaryDataPoint(
        time_unix_nano=3000 * MS,
        count=4,
        sum=2.0,
        quantile_values=[
            otlp.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=0.25),
            otlp.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=0.9),
        ],
    )
    metric = otlp.Metric(name="rpc.latency", unit="s", summary=otlp.Summary(data_points=[point]))
    result = decode(export(metric))
    assert text(result.decoded.batch) == [
        ('rpc_latency_seconds{quantile="0.5"}', 3000, 0.25),
        ('rpc_latency_seconds{quantile="0.99"}', 3000, 0.9),
        ("rpc_latency_seconds_sum{}", 3000, 2.0),
        ("rpc_latency_seconds_count{}", 3000, 4.0),
    ]
    assert result.decoded.metadata[0].type is MetricType.SUMMARY


def test_exponential_histograms_are_rejected_and_the_rest_kept() -> None:
    points = [otlp.ExponentialHistogramDataPoint(time_unix_nano=MS, count=1)] * 3
    expo = otlp.Metric(
        name="latency", exponential_histogram=otlp.ExponentialHistogram(data_points=points)
    )
    result = decode(export(expo, gauge("up", number(1.0))))
    assert result.rejected_points == 3
    assert result.error_message == (
        "rejected 3 data points: 3 exponential histogram points (not supported; send "
        "explicit buckets) (metric 'latency')"
    )
    assert text(result.decoded.batch) == [("up{}", 1000, 1.0)]


def test_no_recorded_value_is_a_stale_marker() -> None:
    stale = number(None, 5000, flags=NO_VALUE)
    delta = total("orders", number(1, 4000), number(None, 5000, flags=NO_VALUE), temporality=DELTA)
    result = decode(
        export(gauge("up", stale), delta, histogram("h", [1.0], [1, 1], flags=NO_VALUE))
    )
    batch = result.decoded.batch
    assert result.rejected_points == 0
    assert set(batch.values.view(np.uint64).tolist()) == {STALE_NAN_BITS}
    assert len(batch) == 1 + 1 + 4
    assert text(result.decoded.deltas) == [("orders_total{}", 4000, 1.0)]


def test_points_without_value_or_time_are_rejected() -> None:
    metric = gauge("up", number(None), number(1.0, 0), number(2.0))
    result = decode(export(metric))
    assert result.rejected_points == 2
    assert "1 points without a value" in result.error_message
    assert "1 points without time_unix_nano" in result.error_message
    assert text(result.decoded.batch) == [("up{}", 1000, 2.0)]


def test_metrics_without_a_name_are_rejected() -> None:
    result = decode(export(gauge("", number(1.0), number(2.0))))
    assert result.rejected_points == 2 and "without a name" in result.error_message


def test_nanoseconds_become_milliseconds() -> None:
    point = otlp.NumberDataPoint(time_unix_nano=1_700_000_000_123_999_999, as_double=1.0)
    result = decode(export(gauge("up", point)))
    assert result.decoded.batch.ts.tolist() == [1_700_000_000_123]


def test_attribute_names_and_values() -> None:
    labels: dict[str, Scalar] = {
        "http_method": "POST",
        "http.method": "GET",
        "1st": "a",
        "count": 5,
        "ok": True,
        "ratio": 0.5,
        "tags": ["x", 1],
        "empty": "",
        "__name__": "evil",
    }
    result = decode(export(gauge("up", number(1.0, labels=labels))))
    (series,) = result.decoded.batch.series
    assert dict(series) == {
        "__name__": "up",
        "_name_": "evil",
        "count": "5",
        "http_method": "GET;POST",
        "key_1st": "a",
        "ok": "true",
        "ratio": "0.5",
        "tags": '["x",1]',
    }


def test_structured_attribute_values() -> None:
    kvlist = AnyValue(kvlist_value=KeyValueList(values=attrs({"k": 1.5, "inf": math.inf})))
    values = {
        "map": kvlist,
        "raw": AnyValue(bytes_value=b"\x00\xff"),
        "unset": AnyValue(),
        "nan": AnyValue(double_value=math.nan),
    }
    point = number(1.0)
    point.attributes.extend(KeyValue(key=k, value=v) for k, v in values.items())
    (series,) = decode(export(gauge("up", point))).decoded.batch.series
    assert dict(series) == {
        "__name__": "up",
        "map": '{"k":1.5,"inf":"+Inf"}',
        "nan": "NaN",
        "raw": "AP8=",
    }


@pytest.mark.parametrize("kind", ["sum", "histogram"])
def test_unspecified_temporality_is_rejected(kind: str) -> None:
    metric = total("s", number(1)) if kind == "sum" else histogram("h", [1.0], [1, 1])
    getattr(metric, kind).aggregation_temporality = 0
    result = decode(export(metric))
    assert result.rejected_points == 1 and "without aggregation_temporality" in result.error_message
    assert len(result.decoded.batch) == 0


def test_resource_job_wins_over_a_job_attribute() -> None:
    point = number(1.0, labels={"job": "attr", "instance": "attr"})
    with_service = decode(export(gauge("up", point), resource={"service.name": "svc"}))
    assert dict(with_service.decoded.batch.series[0])["job"] == "svc"
    assert dict(with_service.decoded.batch.series[0])["instance"] == "attr"
    without = decode(export(gauge("up", point)))
    assert dict(without.decoded.batch.series[0])["job"] == "attr"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.005, "0.005"), (1.0, "1"), (2.5, "2.5"), (1e-9, "0.000000001"), (math.inf, "+Inf")],
)
def test_le_format(value: float, expected: str) -> None:
    assert format_float(value) == expected


def test_an_empty_request_is_fine() -> None:
    result = decode(b"")
    assert len(result.decoded.batch) == 0 and result.rejected_points == 0


# --- JSON, gzip, content negotiation -------------------------------------------------------

MIXED = request(
    gauge("up", number(1.0, 1000, {"a": "b"})),
    total("orders", number(3, 2000), unit="{orders}"),
    histogram("latency", [0.1, 1.0], [1, 2, 3]),
    resource={"service.name": "api", "region": "eu"},
)


def test_json_is_equivalent_to_protobuf() -> None:
    body = json_format.MessageToJson(MIXED).encode()
    from_json = decode(body, "application/json; charset=utf-8")
    from_proto = decode(MIXED.SerializeToString())
    assert text(from_json.decoded.batch) == text(from_proto.decoded.batch)
    assert from_json.decoded.metadata == from_proto.decoded.metadata


def test_otlp_json_as_exporters_write_it() -> None:
    body = b"""{"resourceMetrics": [{
      "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
      "scopeMetrics": [{"scope": {"name": "lib", "version": "1"}, "metrics": [{
        "name": "orders", "unit": "1", "futureField": true,
        "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [{
          "asInt": "5", "timeUnixNano": "1700000000000000000",
          "attributes": [{"key": "shop", "value": {"intValue": "7"}}],
          "exemplars": [{"traceId": "5b8efff798038103d269b633813fc60c",
                         "spanId": "eee19b7ec3c1b174", "asDouble": 1}]
        }]}
      }]}]
    }]}"""
    result = decode(body, "application/json")
    assert text(result.decoded.batch) == [('orders_total{job="api",shop="7"}', 1700000000000, 5.0)]


def test_gzip() -> None:
    body = export(gauge("up", number(1.0)))
    assert len(decode(gzip.compress(body), encoding="gzip").decoded.batch) == 1
    two_members = gzip.compress(body[:5]) + gzip.compress(body[5:])
    assert len(decode(two_members, encoding="GZIP").decoded.batch) == 1


def test_gzip_bomb_is_refused() -> None:
    body = export(gauge("x" * 200_000, number(1.0)))
    with pytest.raises(PayloadTooLargeError, match="100000 bytes"):
        decode(gzip.compress(body), encoding="gzip", limits=Limits(max_decompressed_bytes=100_000))


@pytest.mark.parametrize(
    "body",
    [b"not gzip", gzip.compress(b"x" * 100)[:-10], b"", gzip.compress(b"x") + b"trailing"],
)
def test_corrupt_gzip_is_bad_data(body: bytes) -> None:
    with pytest.raises(BadDataError, match="gzip"):
        decode(body, encoding="gzip")


def test_unsupported_encoding() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="br"):
        decode(b"", encoding="br")


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/x-www-form-urlencoded"]
)
def test_unsupported_content_types(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="application/x-protobuf"):
        decode(b"", content_type)


def test_corrupt_protobuf_is_bad_data() -> None:
    with pytest.raises(BadDataError, match="not a valid protobuf ExportMetricsServiceRequest"):
        decode(b"\x0a\x05\x01")


@pytest.mark.parametrize("attribute", [b"\x0a\x05a", b"\x0a\x01\xff"])
def test_corrupt_attributes_are_bad_data(attribute: bytes) -> None:
    point = view.NumberPointView(attributes=[attribute], time_unix_nano=MS, as_double=1.0)
    metric = view.MetricView(name="up", gauge=view.NumbersView(data_points=[point]))
    scope = view.ScopeMetricsView(metrics=[metric])
    body = view.ExportView(resource_metrics=[view.ResourceMetricsView(scope_metrics=[scope])])
    with pytest.raises(BadDataError, match="invalid attribute KeyValue"):
        decode(body.SerializeToString())


@pytest.mark.parametrize("body", [b"{", b"[1]", b'{"resourceMetrics": 3}', b"\xff\xfe"])
def test_corrupt_json_is_bad_data(body: bytes) -> None:
    with pytest.raises(BadDataError, match="not a valid JSON"):
        decode(body, "application/json")


def test_oversized_body_is_refused() -> None:
    body = export(gauge("up", number(1.0)))
    with pytest.raises(PayloadTooLargeError):
        decode(body, limits=Limits(max_body_bytes=len(body) - 1))


def test_too_many_samples() -> None:
    body = export(histogram("h", [1.0, 2.0], [1, 1, 1]))  # 3 buckets + sum + count
    with pytest.raises(LimitExceededError, match="5 samples .* limit of 4") as info:
        decode(body, limits=Limits(max_samples_per_request=4))
    assert info.value.reason == "too_many_samples"
    assert len(decode(body, limits=Limits(max_samples_per_request=5)).decoded.batch) == 5
