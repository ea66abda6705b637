"""Turning decoded exposition samples into series, shared by the text and OpenMetrics decoders."""

from __future__ import annotations

import math
from decimal import Decimal

from opsmetrics.ingest.exposition_lexer import parse_float
from opsmetrics.model import (
    METRIC_NAME,
    Labels,
    MetricType,
    SampleBatch,
    SampleBatchBuilder,
    make_labels,
)

HISTOGRAM_TYPES = (MetricType.HISTOGRAM, MetricType.GAUGE_HISTOGRAM)


class SampleRows:
    """Sample rows. A repeat of a series at the same millisecond is dropped and the first kept,
    as Prometheus does with duplicate-timestamp samples, so one bad line cannot fail a write."""

    def __init__(self) -> None:
        self._builder = SampleBatchBuilder()
        self._last_ts: dict[Labels, int] = {}

    def add(self, labels: Labels, ts: int, value: float) -> None:
        if self._last_ts.get(labels) == ts:
            return
        self._last_ts[labels] = ts
        self._builder.add(labels, ts, value)

    def build(self) -> SampleBatch:
        return self._builder.build()


def series_labels(name: str, labels: dict[str, str], float_label: str | None) -> Labels:
    pairs = {**labels, METRIC_NAME: name}
    if float_label is not None and float_label in pairs:
        pairs[float_label] = normalize_float_label(pairs[float_label])
    return make_labels(pairs)


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def normalize_float_label(text: str) -> str:
    """`le`/`quantile` values in one spelling (`1` → `1.0`, `1000000` → `1e+06`), as Prometheus
    3 stores them, so the same bucket from different exporters is the same series."""
    value = parse_float(text)
    if value is None:
        return text
    if math.isnan(value) or math.isinf(value):
        return format_value(value)
    return _go_float(value)


def _go_float(value: float) -> str:
    # Go's strconv.FormatFloat(v, 'g', -1, 64) plus ".0" on integers (FormatOpenMetricsFloat).
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)
    if value == 0:
        return "0.0"
    prefix = "-" if sign else ""
    if not -4 <= point - 1 < 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{point - 1:+03d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{prefix}{digits}{'0' * (point - len(digits))}.0"
    return f"{prefix}{digits[:point]}.{digits[point:]}"
