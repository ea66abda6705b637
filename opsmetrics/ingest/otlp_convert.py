"""OTLP metrics → Prometheus series, per OpenTelemetry's Prometheus compatibility spec.

As in Prometheus's own OTLP receiver: names and units as otlp_names says; `service.namespace` /
`service.name` → `job`, `service.instance.id` → `instance`, the other resource attributes on a
`target_info` series; instrumentation scopes are not labels. Cumulative monotonic sums are
counters, other cumulative sums and gauges are gauges; histograms and summaries become their
classic series. Delta sums and histograms go to the deltas batch, which the pipeline adds to
each series' last value; delta non-monotonic sums are dropped, as the spec says. Points that
are not stored are counted, with reasons, for the OTLP partial_success answer.

The request is read as otlp_view messages: a data point's attributes stay undecoded bytes and
serve as the key under which its series is found again, so attributes are decoded once per
series and request rather than once per point. Gauge and sum points are read in bulk by
otlp_numbers, histograms and summaries by otlp_histograms; `convert_plain` maps every point one
at a time, as the fallback and the test oracle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as otlp

from opsmetrics.errors import BadDataError
from opsmetrics.ingest.otlp_histograms import (
    MISMATCH,
    UNORDERED,
    Attributes,
    Extra,
    Shape,
    Sink,
    add_histograms,
    add_summaries,
)
from opsmetrics.ingest.otlp_names import (
    attribute_value,
    format_float,
    label_name,
    metric_name,
    prometheus_unit,
    sanitize_metric_name,
)
from opsmetrics.ingest.otlp_numbers import (
    NO_TIME,
    NumberPoints,
    SeriesCache,
    Target,
    add_numbers,
)
from opsmetrics.ingest.otlp_rows import Rejects, Rows
from opsmetrics.ingest.proto import otlp_view_pb2 as view
from opsmetrics.model import (
    METRIC_NAME,
    STALE_NAN,
    Labels,
    MetricMetadata,
    MetricType,
    SampleBatch,
    make_labels,
)

NO_RECORDED_VALUE = otlp.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
DELTA = otlp.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
UNSPECIFIED = otlp.AggregationTemporality.AGGREGATION_TEMPORALITY_UNSPECIFIED
TARGET_INFO = "target_info"
_IDENTITY_ATTRIBUTES = ("service.name", "service.namespace", "service.instance.id")

HistogramPoints = Sequence[view.HistogramPointView]
SummaryPoints = Sequence[view.SummaryPointView]
Row = tuple[str, Extra, float]  # name suffix, extra label, value
Point = view.NumberPointView | view.HistogramPointView | view.SummaryPointView
_Attribute = tuple[str, str, str]  # key, label name, value


@dataclass(frozen=True, slots=True)
class Converted:
    samples: SampleBatch
    deltas: SampleBatch
    metadata: list[MetricMetadata]
    rejected_points: int
    error_message: str


def convert(request: view.ExportView, cache: SeriesCache | None = None) -> Converted:
    """Map an export request to Prometheus series; pass a long-lived `cache` for speed."""
    return _convert(request, NumberPoints.read(request), SeriesCache() if cache is None else cache)


def convert_plain(request: view.ExportView) -> Converted:
    """The same mapping one point at a time: the bulk reader's fallback and test oracle."""
    converter = _PointByPoint(None, SeriesCache())
    for number, resource_metrics in enumerate(request.resource_metrics):
        converter.resource(number, resource_metrics)
    return converter.finish()


def _convert(
    request: view.ExportView, numbers: NumberPoints | None, cache: SeriesCache
) -> Converted:
    converter = _Converter(numbers, cache)
    for number, resource_metrics in enumerate(request.resource_metrics):
        converter.resource(number, resource_metrics)
    return converter.finish()


def _labels(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Attribute (key, value) pairs as labels; keys that sanitise alike join values with `;`."""
    return _joined((key, label_name(key), value) for key, value in pairs)


def _joined(attributes: Iterable[_Attribute]) -> dict[str, str]:
    named = [attribute for attribute in attributes if attribute[1]]
    labels = {name: value for _, name, value in named}
    if len(labels) < len(named):  # rare: keys that sanitise alike, joined in key order
        labels = {}
        for _, name, value in sorted(named):
            labels[name] = f"{labels[name]};{value}" if name in labels else value
    return labels


def _key_value(data: bytes) -> tuple[str, str]:
    try:
        kv = KeyValue.FromString(data)
    except DecodeError as exc:
        raise BadDataError(f"OTLP body holds an invalid attribute KeyValue ({exc})") from None
    return kv.key, attribute_value(kv.value)


def _resource_labels(resource: view.ResourceView) -> tuple[dict[str, str], dict[str, str]]:
    """(job and instance, the other resource attributes as target_info labels)."""
    attributes = dict(map(_key_value, resource.attributes))
    service, namespace, instance = (attributes.pop(key, "") for key in _IDENTITY_ATTRIBUTES)
    job = f"{namespace}/{service}" if namespace and service else service
    identity = {name: value for name, value in (("job", job), ("instance", instance)) if value}
    return identity, _labels(attributes.items())


def _number(point: view.NumberPointView) -> float | None:
    if point.flags & NO_RECORDED_VALUE:
        return STALE_NAN
    kind = point.WhichOneof("value")
    if kind == "as_double":
        return point.as_double
    return float(point.as_int) if kind == "as_int" else None


def _histogram_problem(point: view.HistogramPointView) -> str | None:
    bounds, counts = point.explicit_bounds, point.bucket_counts
    if (bounds or counts) and len(counts) != len(bounds) + 1:
        return MISMATCH
    if any(not a < b for a, b in zip(bounds, bounds[1:], strict=False)):
        return UNORDERED
    return None


def _histogram_rows(point: view.HistogramPointView) -> list[Row]:
    rows: list[Row] = []
    cumulative = 0
    for bound, count in zip(point.explicit_bounds, point.bucket_counts, strict=False):
        cumulative += count
        if bound != float("inf"):
            rows.append(("_bucket", ("le", format_float(bound)), float(cumulative)))
    rows.append(("_bucket", ("le", "+Inf"), float(point.count)))
    if point.HasField("sum"):
        rows.append(("_sum", None, point.sum))
    rows.append(("_count", None, float(point.count)))
    return rows


def _summary_rows(point: view.SummaryPointView) -> list[Row]:
    rows: list[Row] = [
        ("", ("quantile", format_float(q.quantile)), q.value) for q in point.quantile_values
    ]
    rows.append(("_sum", None, point.sum))
    rows.append(("_count", None, float(point.count)))
    return rows


class _Converter:
    """Builds the samples of one request, one metric at a time."""

    def __init__(self, numbers: NumberPoints | None, cache: SeriesCache) -> None:
        self._numbers_read = numbers
        self._cache = cache
        self._metric = -1  # the ordinal of the metric being mapped, in request order
        self.samples = Rows()
        self.deltas = Rows()
        self.metadata: dict[str, MetricMetadata] = {}
        self.rejects = Rejects()
        self._resource = 0
        self._identity: dict[str, str] = {}
        self._attributes: dict[Attributes, dict[str, str]] = {}
        self._decoded: dict[bytes, _Attribute] = {}
        self._names: dict[str, str] = {}

    def finish(self) -> Converted:
        metadata = list(self.metadata.values())
        samples, deltas = self.samples.build(), self.deltas.build()
        return Converted(samples, deltas, metadata, self.rejects.count, self.rejects.message())

    def resource(self, number: int, resource_metrics: view.ResourceMetricsView) -> None:
        self._resource = number
        self._identity, info = _resource_labels(resource_metrics.resource)
        latest = 0
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                latest = max(latest, self.metric(metric))
        if info and latest:
            labels = make_labels({**info, **self._identity, METRIC_NAME: TARGET_INFO})
            self.samples.append(self.samples.register(labels, labels), latest, 1.0)
            self._family(TARGET_INFO, MetricType.GAUGE, "Target metadata", "")

    def metric(self, metric: view.MetricView) -> int:
        """Adds the metric's points; returns the latest timestamp stored (0 if none)."""
        self._metric += 1
        kind = metric.WhichOneof("data")
        if kind is not None and not sanitize_metric_name(metric.name):
            points = getattr(metric, kind).data_points
            self.rejects.add(len(points), "points of a metric without a name", metric)
            return 0
        match kind:
            case "gauge":
                return self._numbers(metric, metric.gauge, MetricType.GAUGE, self.samples)
            case "sum":
                return self._sum(metric)
            case "histogram":
                return self._histogram(metric)
            case "summary":
                return self._summary(metric)
            case "exponential_histogram":
                points = len(metric.exponential_histogram.data_points)
                reason = "exponential histogram points (not supported; send explicit buckets)"
                self.rejects.add(points, reason, metric)
        return 0

    def _sum(self, metric: view.MetricView) -> int:
        data = metric.sum
        if data.aggregation_temporality == UNSPECIFIED:
            reason = "sum points without aggregation_temporality"
            self.rejects.add(len(data.data_points), reason, metric)
            return 0
        delta = data.aggregation_temporality == DELTA
        if delta and not data.is_monotonic:
            reason = "points of a delta non-monotonic sum (not supported; send cumulative)"
            self.rejects.add(len(data.data_points), reason, metric)
            return 0
        kind = MetricType.COUNTER if data.is_monotonic else MetricType.GAUGE
        return self._numbers(metric, data, kind, self.deltas if delta else self.samples)

    def _numbers(
        self, metric: view.MetricView, data: view.NumbersView, kind: MetricType, target: Rows
    ) -> int:
        counter = kind is MetricType.COUNTER
        unit = prometheus_unit(metric.unit, gauge=not counter)
        name = metric_name(metric.name, unit, counter=counter)
        found = self._numbers_read
        if found is not None:
            to = Target(target, self.samples, self._resource, self._series_of)
            latest = add_numbers(found, self._metric, name, metric, to, self.rejects)
            return self._done(latest, name, kind, metric, unit)
        latest = 0
        for point in data.data_points:
            value = _number(point)
            if value is None:
                self.rejects.add(1, "points without a value", metric)
            elif self._accept(point, metric):
                latest = max(latest, self._rows(name, [("", None, value)], point, target))
        return self._done(latest, name, kind, metric, unit)

    def _histogram(self, metric: view.MetricView) -> int:
        data = metric.histogram
        if data.aggregation_temporality == UNSPECIFIED:
            reason = "histogram points without aggregation_temporality"
            self.rejects.add(len(data.data_points), reason, metric)
            return 0
        unit = prometheus_unit(metric.unit, gauge=False)
        name = metric_name(metric.name, unit, counter=False)
        target = self.deltas if data.aggregation_temporality == DELTA else self.samples
        latest = self._histogram_points(name, metric, data.data_points, target)
        return self._done(latest, name, MetricType.HISTOGRAM, metric, unit)

    def _summary(self, metric: view.MetricView) -> int:
        unit = prometheus_unit(metric.unit, gauge=False)
        name = metric_name(metric.name, unit, counter=False)
        latest = self._summary_points(name, metric, metric.summary.data_points)
        return self._done(latest, name, MetricType.SUMMARY, metric, unit)

    def _histogram_points(
        self, name: str, metric: view.MetricView, points: HistogramPoints, target: Rows
    ) -> int:
        sink = Sink(target, self.samples, self._resource, self._shape_series)
        latest = add_histograms(points, name, metric, sink, self.rejects)
        return self._histogram_each(name, metric, points, target) if latest is None else latest

    def _summary_points(self, name: str, metric: view.MetricView, points: SummaryPoints) -> int:
        sink = Sink(self.samples, self.samples, self._resource, self._shape_series)
        return add_summaries(points, name, metric, sink, self.rejects)

    def _histogram_each(
        self, name: str, metric: view.MetricView, points: HistogramPoints, target: Rows
    ) -> int:
        latest = 0
        for point in points:
            problem = _histogram_problem(point)
            if problem is not None:
                self.rejects.add(1, problem, metric)
            elif self._accept(point, metric):
                latest = max(latest, self._rows(name, _histogram_rows(point), point, target))
        return latest

    def _summary_each(self, name: str, metric: view.MetricView, points: SummaryPoints) -> int:
        latest = 0
        for point in points:
            if self._accept(point, metric):
                latest = max(latest, self._rows(name, _summary_rows(point), point, self.samples))
        return latest

    def _accept(self, point: Point, metric: view.MetricView) -> bool:
        if point.time_unix_nano:
            return True
        self.rejects.add(1, NO_TIME, metric)
        return False

    def _rows(self, name: str, rows: list[Row], point: Point, target: Rows) -> int:
        """Adds a point's rows; returns its timestamp. NO_RECORDED_VALUE → stale markers."""
        ts = point.time_unix_nano // 1_000_000
        stale = bool(point.flags & NO_RECORDED_VALUE)
        rows_to = self.samples if stale else target
        attributes = tuple(point.attributes)
        for suffix, extra, value in rows:
            key = (name + suffix, extra, self._resource, attributes)
            index = rows_to.find(key)
            if index is None:
                index = rows_to.register(key, self._series(name + suffix, extra, attributes))
            rows_to.append(index, ts, STALE_NAN if stale else value)
        return ts

    def _series(self, name: str, extra: Extra, attributes: Attributes) -> Labels:
        labels = self._attributes.get(attributes)
        if labels is None:
            labels = self._attributes[attributes] = _joined(map(self._attribute, attributes))
        own = dict([extra]) if extra else {}
        return make_labels({**labels, **self._identity, **own, METRIC_NAME: name})

    def _shape_series(
        self, name: str, key: bytes, shape: Shape, attributes: Attributes
    ) -> list[Labels]:
        """The series of a histogram or summary point's rows, by its bounds or quantiles
        (`key`, the bits behind `shape`) and attribute messages."""
        found_key = (name, key, tuple(self._identity.items()), attributes)
        labels = self._cache.get_rows(found_key)
        if labels is None:
            labels = [self._series(name + suffix, extra, attributes) for suffix, extra in shape]
            self._cache.put_rows(found_key, labels)
        return labels

    def _series_of(self, name: str, attributes: bytes) -> Labels:
        """A series from the raw run of its point's attribute fields (otlp_numbers)."""
        key = (name, tuple(self._identity.items()), attributes)
        labels = self._cache.get(key)
        if labels is None:
            points = view.NumberPointView.FromString(attributes).attributes
            labels = self._series(name, None, tuple(points))
            self._cache.put(key, labels)
        return labels

    def _attribute(self, data: bytes) -> _Attribute:
        """A KeyValue decoded, its key made a label name; each distinct one decoded once."""
        found = self._decoded.get(data)
        if found is None:
            key, value = _key_value(data)
            name = self._names.get(key)
            if name is None:
                name = self._names[key] = label_name(key)
            found = self._decoded[data] = (key, name, value)
        return found

    def _done(
        self, latest: int, name: str, kind: MetricType, metric: view.MetricView, unit: str
    ) -> int:
        if latest:
            self._family(name, kind, metric.description, unit)
        return latest

    def _family(self, name: str, kind: MetricType, help_text: str, unit: str) -> None:
        self.metadata.setdefault(name, MetricMetadata(name, kind, help_text, unit))


class _PointByPoint(_Converter):
    """Histograms and summaries one point at a time (gauges and sums too: no NumberPoints)."""

    def _histogram_points(
        self, name: str, metric: view.MetricView, points: HistogramPoints, target: Rows
    ) -> int:
        return self._histogram_each(name, metric, points, target)

    def _summary_points(self, name: str, metric: view.MetricView, points: SummaryPoints) -> int:
        return self._summary_each(name, metric, points)
