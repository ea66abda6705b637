"""The bulk decoders (OTLP gauge/sum points in numpy, histograms and summaries a metric at a
time, JSON samples in typed structs) give exactly the samples, rejects and errors of the
one-at-a-time decoders they replace."""

from __future__ import annotations

import math
import re

import msgspec
import numpy as np
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as otlp

from opsmetrics.errors import BadDataError
from opsmetrics.ingest.json_formats import decode_samples_plain
from opsmetrics.ingest.json_samples import SeriesLabels, decode_samples_json
from opsmetrics.ingest.otlp_convert import Converted, convert, convert_plain
from opsmetrics.ingest.otlp_json import otlp_json_to_protobuf
from opsmetrics.ingest.otlp_numbers import NumberPoints, SeriesCache
from opsmetrics.ingest.proto import otlp_view_pb2 as view
from opsmetrics.model import SampleBatch

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_700_000_000_000


def rows(batch: SampleBatch) -> list[tuple[object, int, int]]:
    """(labels, ts, value bits) per row, in order: NaN payloads compared exactly."""
    bits = batch.values.view(np.uint64).tolist()
    return [
        (batch.series[i], t, b)
        for i, t, b in zip(batch.index.tolist(), batch.ts.tolist(), bits, strict=True)
    ]


def same(a: Converted, b: Converted) -> None:
    assert rows(a.samples) == rows(b.samples)
    assert rows(a.deltas) == rows(b.deltas)
    assert a.samples.series == b.samples.series and a.deltas.series == b.deltas.series
    assert a.metadata == b.metadata
    assert (a.rejected_points, a.error_message) == (b.rejected_points, b.error_message)


# --- OTLP -------------------------------------------------------------------------------------

attribute = st.builds(
    lambda k, v: KeyValue(key=k, value=AnyValue(string_value=v)),
    st.sampled_from(["host", "code", "a.b", "9x", "region"]),
    st.sampled_from(["", "h1", "h2", "200", "é"]),
)


@st.composite
def number_point(draw: st.DrawFn) -> otlp.NumberDataPoint:
    point = otlp.NumberDataPoint(
        attributes=draw(st.lists(attribute, max_size=4)),
        time_unix_nano=draw(st.sampled_from([0, 999_999, 10**6, NOW * 10**6, 2**64 - 1])),
        start_time_unix_nano=draw(st.sampled_from([0, 5])),
        flags=draw(st.sampled_from([0, 1, 2, 3, 2**32 - 1])),
    )
    match draw(st.sampled_from(["double", "int", "none"])):
        case "double":
            point.as_double = draw(st.floats(allow_nan=True))
        case "int":
            point.as_int = draw(st.integers(-(2**63), 2**63 - 1))
    if draw(st.booleans()):
        point.exemplars.add(as_double=1.0, time_unix_nano=3)
    return point


@st.composite
def metric(draw: st.DrawFn) -> otlp.Metric:
    points = draw(st.lists(number_point(), max_size=8))
    name = draw(st.sampled_from(["up", "http.requests", "", "x_count"]))
    m = otlp.Metric(name=name, unit=draw(st.sampled_from(["", "ms", "1"])))
    if draw(st.booleans()):
        m.gauge.data_points.extend(points)
    else:
        m.sum.data_points.extend(points)
        m.sum.aggregation_temporality = draw(st.sampled_from([0, 1, 2]))
        m.sum.is_monotonic = draw(st.booleans())
    return m


# Few attribute sets, bounds and quantiles, so that points share series and row shapes.
attributes = st.one_of(
    st.sampled_from([[], [KeyValue(key="host", value=AnyValue(string_value="h1"))]]),
    st.lists(attribute, max_size=2),
)
bounds = st.one_of(
    st.sampled_from([[], [1.0], [0.0, 1.0, math.inf], [-0.0, 2.5], [-math.inf, 0.5, 1.0]]),
    st.sampled_from([[1.0, 0.5], [math.nan], [1.0, 1.0], [0.5, math.nan]]),  # some refused
)
bucket_count = st.sampled_from([0, 1, 7, 3, 2**63, 2**64 - 1])  # some add up past 2**64
point_time = st.sampled_from([0, 999_999, NOW * 10**6, 2**64 - 1])
point_flags = st.sampled_from([0, 1, 2, 3])


@st.composite
def histogram_point(draw: st.DrawFn) -> otlp.HistogramDataPoint:
    drawn = draw(bounds)
    size = len(drawn) + 1 if draw(st.integers(0, 4)) else draw(st.integers(0, 3))
    point = otlp.HistogramDataPoint(
        attributes=draw(attributes),
        time_unix_nano=draw(point_time),
        flags=draw(point_flags),
        count=draw(bucket_count),
        explicit_bounds=drawn,
        bucket_counts=draw(st.lists(bucket_count, min_size=size, max_size=size)),
    )
    if draw(st.booleans()):
        point.sum = draw(st.floats(allow_nan=True))
    return point


@st.composite
def summary_point(draw: st.DrawFn) -> otlp.SummaryDataPoint:
    point = otlp.SummaryDataPoint(
        attributes=draw(attributes),
        time_unix_nano=draw(point_time),
        flags=draw(point_flags),
        count=draw(bucket_count),
        sum=draw(st.floats(allow_nan=True)),
    )
    quantiles = [[], [0.5], [0.0, 0.5, 0.99], [-0.0], [math.nan, 1.0]]
    for quantile in draw(st.sampled_from(quantiles)):
        point.quantile_values.add(quantile=quantile, value=draw(st.floats(allow_nan=True)))
    return point


@st.composite
def distribution(draw: st.DrawFn) -> otlp.Metric:
    m = otlp.Metric(name=draw(st.sampled_from(["latency", "", "latency_sum"])), unit="s")
    if draw(st.booleans()):
        m.histogram.data_points.extend(draw(st.lists(histogram_point(), max_size=6)))
        m.histogram.aggregation_temporality = draw(st.sampled_from([0, 1, 1, 2]))
    else:
        m.summary.data_points.extend(draw(st.lists(summary_point(), max_size=6)))
    return m


@st.composite
def export(draw: st.DrawFn, metrics: st.SearchStrategy[otlp.Metric] | None = None) -> bytes:
    request = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(1, 3))):
        rm = request.resource_metrics.add()
        service = draw(st.sampled_from(["", "api", "web"]))
        if service:
            rm.resource.attributes.add(key="service.name", value=AnyValue(string_value=service))
        drawn = draw(st.lists(metric() if metrics is None else metrics, max_size=4))
        rm.scope_metrics.add().metrics.extend(drawn)
    return request.SerializeToString()


@SETTINGS
@given(export(st.one_of(metric(), distribution(), distribution())))
def test_otlp_bulk_equals_point_by_point(body: bytes) -> None:
    request = view.ExportView.FromString(body)
    cache = SeriesCache()
    same(convert(request, cache), convert_plain(request))
    same(convert(request, cache), convert_plain(request))  # the second time from the cache


def test_otlp_histograms_in_bulk_cache_each_row_series() -> None:
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    # Counts that add up past 2**64 send their metric point by point, with the same result.
    for name, counts in (("h", [1, 2, 3]), ("big", [2**64 - 1, 2**64 - 1, 0])):
        m = metrics.add(name=name, histogram=otlp.Histogram(aggregation_temporality=2))
        for when in (NOW, NOW + 1):
            point = m.histogram.data_points.add(time_unix_nano=when * 10**6, count=9)
            point.explicit_bounds.extend([1.0, 2.0])
            point.bucket_counts.extend(counts)
    parsed = view.ExportView.FromString(request.SerializeToString())
    cache = SeriesCache()
    result = convert(parsed, cache)
    same(result, convert_plain(parsed))
    assert len(cache) == 1 and len(result.samples.series) == 8  # one shape of h's; 4 rows a metric
    assert result.samples.values[-4:-2].tolist() == [float(2**64 - 1), float(2 * (2**64 - 1))]
    again = convert(view.ExportView.FromString(request.SerializeToString()), cache)
    assert again.samples.series == result.samples.series and len(cache) == 1


def test_otlp_bulk_path_is_taken_and_keys_series_by_attribute_bytes() -> None:
    request = ExportMetricsServiceRequest()
    points = request.resource_metrics.add().scope_metrics.add().metrics.add(name="up").gauge
    for host in ("a", "b", "a"):
        p = points.data_points.add(time_unix_nano=NOW * 10**6, as_double=1.0)
        p.attributes.add(key="host", value=AnyValue(string_value=host))
    parsed = view.ExportView.FromString(request.SerializeToString())
    read = NumberPoints.read(parsed)
    assert read is not None and read.spans == {0: (0, 3)}
    cache = SeriesCache()
    result = convert(parsed, cache)
    assert [dict(s)["host"] for s in result.samples.series] == ["a", "b"]
    assert result.samples.index.tolist() == [0, 1, 0] and len(cache) == 2


def test_otlp_corrupt_attribute_is_the_same_error() -> None:
    point = view.NumberPointView(attributes=[b"\x0a\x05a"], time_unix_nano=NOW, as_double=1.0)
    m = view.MetricView(name="up", gauge=view.NumbersView(data_points=[point]))
    scope = view.ScopeMetricsView(metrics=[m])
    body = view.ExportView(resource_metrics=[view.ResourceMetricsView(scope_metrics=[scope])])
    parsed = view.ExportView.FromString(body.SerializeToString())
    assert NumberPoints.read(parsed) is not None
    with pytest.raises(BadDataError, match="invalid attribute KeyValue"):
        convert(parsed)


# --- OTLP JSON ------------------------------------------------------------------------------


@st.composite
def histogram_or_summary(draw: st.DrawFn) -> otlp.Metric:
    m = otlp.Metric(name=draw(st.sampled_from(["latency", "size"])), unit="s")
    attrs = draw(st.lists(attribute, max_size=3))
    when = draw(st.sampled_from([0, NOW * 10**6, 2**64 - 1]))
    value = st.floats(allow_nan=True)
    if draw(st.booleans()):
        bounds = sorted(draw(st.lists(st.floats(-1e6, 1e6), max_size=3, unique=True)))
        h = m.histogram.data_points.add(
            attributes=attrs, time_unix_nano=when, explicit_bounds=bounds
        )
        h.bucket_counts.extend(draw(st.lists(st.integers(0, 2**64 - 1), min_size=len(bounds) + 1,
                                             max_size=len(bounds) + 1)))  # fmt: skip
        h.count = draw(st.integers(0, 2**64 - 1))
        if draw(st.booleans()):
            h.sum = draw(value)
        m.histogram.aggregation_temporality = draw(st.sampled_from([0, 1, 2]))
    elif draw(st.booleans()):
        q = m.summary.data_points.add(
            attributes=attrs, time_unix_nano=when, count=3, sum=draw(value)
        )
        for quantile in draw(st.lists(st.sampled_from([0.0, 0.5, 0.99, 1.0]), max_size=3)):
            q.quantile_values.add(quantile=quantile, value=draw(value))
    else:
        m.exponential_histogram.data_points.add(time_unix_nano=when, count=1)
    return m


@SETTINGS
@given(export(), st.lists(histogram_or_summary(), max_size=3), st.booleans())
def test_otlp_json_fast_path_equals_json_format(body: bytes, more: list[otlp.Metric],
                                                  ints: bool) -> None:  # fmt: skip
    request = ExportMetricsServiceRequest.FromString(body)
    request.resource_metrics[0].scope_metrics.add().metrics.extend(more)
    text = json_format.MessageToJson(request)
    if ints:  # exporters also write 64-bit integers as JSON numbers
        text = re.sub(
            r'("(?:timeUnixNano|startTimeUnixNano|asInt|count)": )"(-?[0-9]+)"', r"\1\2", text
        )
    raw = text.encode()
    fast = otlp_json_to_protobuf(raw)
    assert fast is not None, text
    slow = ExportMetricsServiceRequest()
    json_format.Parse(raw, slow, ignore_unknown_fields=True)
    same(convert_plain(view.ExportView.FromString(fast)),
         convert_plain(view.ExportView.FromString(slow.SerializeToString())))  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        '{"resource_metrics": []}',  # snake_case keys: json_format reads them
        '{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "up", "gauge": {"dataPoints":'
        ' [{"asDouble": "1.5", "timeUnixNano": "1e3"}]}}]}]}]}',  # other spellings it takes
        '{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "up", "gauge": {"dataPoints":'
        ' [{"asDouble": 1, "asInt": "2"}]}}]}]}]}',  # two members of a oneof: its error
        '{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "up", "gauge": {"dataPoints":'
        ' [{"asInt": "9223372036854775808"}]}}]}]}]}',  # out of range: its error
        '{"resourceMetrics": [{"resource": {"attributes": [{"key": "a", "value":'
        ' {"intValue": "x"}}]}}]}',
        '{"resourceMetrics": 3}',
    ],
)
def test_otlp_json_outside_the_common_spelling_is_left_to_json_format(body: str) -> None:
    assert otlp_json_to_protobuf(body.encode()) is None


# --- JSON samples -------------------------------------------------------------------------

time_value = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([NOW, 2**53 - 1, 2**53, 2**53 + 1, -(2**53) - 3, 2**63, 1.5]),
    st.sampled_from(["2023-11-14T22:13:20Z", "bad"]),
)
number_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["NaN", "+Inf", "stale", "x", 10**400]),
)
labels = st.dictionaries(
    st.sampled_from(["a", "b", "__name__", "c"]), st.sampled_from(["", "1", "v"]), max_size=3
)


@st.composite
def series_object(draw: st.DrawFn) -> dict[str, object]:
    item: dict[str, object] = {"name": draw(st.sampled_from(["m", "n", ""]))}
    if draw(st.booleans()):
        item["labels"] = draw(labels)
    if draw(st.integers(0, 4)) == 0:
        item["type"] = draw(st.sampled_from(["counter", "gauge", "bogus"]))
    match draw(st.sampled_from(["samples", "value", "neither"])):
        case "samples":
            item["samples"] = draw(st.lists(st.tuples(time_value, number_value), max_size=4))
        case "value":
            item["value"] = draw(number_value)
            if draw(st.booleans()):
                item["ts"] = draw(time_value)
    return item


def outcome(decode: object, body: bytes) -> object:
    try:
        result = decode(body, NOW)  # type: ignore[operator]
    except BadDataError as exc:
        return ("error", str(exc))
    return (rows(result.batch), result.batch.series, result.metadata)


@SETTINGS
@given(st.lists(series_object(), max_size=5), st.booleans())
def test_json_bulk_equals_sample_by_sample(items: list[dict[str, object]], ndjson: bool) -> None:
    if ndjson:
        body = b"\n".join(msgspec.json.encode(item) for item in items)
    else:
        body = msgspec.json.encode(items)
    cache = SeriesLabels()
    expected = outcome(decode_samples_plain, body)
    assert outcome(lambda b, n: decode_samples_json(b, n, cache), body) == expected
    assert outcome(lambda b, n: decode_samples_json(b, n, cache), body) == expected


def test_json_bulk_interns_labels_across_requests() -> None:
    body = b'[{"name": "m", "labels": {"b": "2", "a": "1"}, "samples": [[1, 2], [3, 4.5]]}]'
    cache = SeriesLabels()
    first = decode_samples_json(body, NOW, cache).batch
    second = decode_samples_json(body, NOW, cache).batch
    assert first.series == [(("__name__", "m"), ("a", "1"), ("b", "2"))]
    assert second.series[0] is first.series[0] and len(cache) == 1
    assert second.ts.tolist() == [1, 3] and second.values.tolist() == [2.0, 4.5]
    assert math.isclose(float(second.values.sum()), 6.5)
