"""The OpenMetrics 1.0 rules a metric family's samples must keep, by family type.

Each type owns some sample names (family name + suffix) and constrains their labels and
values; a histogram is also checked as a whole once all its buckets have been read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from opsmetrics.ingest.exposition_lexer import REAL_RE, line_error
from opsmetrics.ingest.exposition_series import HISTOGRAM_TYPES, format_value
from opsmetrics.ingest.openmetrics_lexer import OMSample
from opsmetrics.model import MetricMetadata, MetricType

#: The sample names a family of each type owns: family name + suffix.
SUFFIXES: dict[MetricType, tuple[str, ...]] = {
    MetricType.COUNTER: ("_total", "_created"),
    MetricType.GAUGE: ("",),
    MetricType.HISTOGRAM: ("_bucket", "_count", "_sum", "_created"),
    MetricType.GAUGE_HISTOGRAM: ("_bucket", "_gcount", "_gsum"),
    MetricType.SUMMARY: ("", "_count", "_sum", "_created"),
    MetricType.INFO: ("_info",),
    MetricType.STATESET: ("",),
    MetricType.UNKNOWN: ("",),
}


@dataclass(slots=True)
class Family:
    name: str
    type: MetricType = MetricType.UNKNOWN
    typed: bool = False
    help: str | None = None
    unit: str | None = None
    sampled: bool = False

    def suffix_of(self, sample_name: str) -> str | None:
        if not sample_name.startswith(self.name):
            return None
        suffix = sample_name[len(self.name) :]
        return suffix if suffix in SUFFIXES[self.type] else None

    def has_metadata(self) -> bool:
        return self.typed or self.help is not None or self.unit is not None

    def metadata(self) -> MetricMetadata:
        return MetricMetadata(self.name, self.type, self.help or "", self.unit or "")

    def describe(self) -> str:
        return f'{self.type.value} "{self.name}"'


def _counter_value(family: Family, sample: OMSample, number: int) -> None:
    if math.isnan(sample.value) or sample.value < 0:
        raise line_error(
            number,
            f"{family.describe()} sample {sample.name} is {format_value(sample.value)}; counts "
            "and sums "
            "must be non-negative numbers, not NaN",
        )


def _check_counter(family: Family, suffix: str, sample: OMSample, number: int) -> None:
    if suffix == "_total":
        _counter_value(family, sample, number)


def _check_histogram(family: Family, suffix: str, sample: OMSample, number: int) -> None:
    if suffix == "_bucket" and "le" not in sample.labels:
        raise line_error(number, f'{family.describe()} bucket {sample.name} has no "le" label')
    if suffix == "_gsum" and math.isnan(sample.value):
        raise line_error(number, f"{family.describe()} sample {sample.name} must not be NaN")
    if suffix in ("_bucket", "_count", "_gcount", "_sum"):
        _counter_value(family, sample, number)


def _check_summary(family: Family, suffix: str, sample: OMSample, number: int) -> None:
    if suffix in ("_count", "_sum"):
        _counter_value(family, sample, number)
    if suffix != "":
        return
    text = sample.labels.get("quantile")
    if text is None:
        raise line_error(number, f'{family.describe()} sample has no "quantile" label')
    if not REAL_RE.fullmatch(text) or not 0 <= float(text) <= 1:
        raise line_error(
            number, f'{family.describe()} quantile="{text}" must be a number between 0 and 1'
        )
    if sample.value < 0:
        raise line_error(
            number, f"{family.describe()} quantile value {format_value(sample.value)} is negative"
        )


def _check_info(family: Family, suffix: str, sample: OMSample, number: int) -> None:
    if sample.value != 1:
        raise line_error(
            number, f"{family.describe()} value is {format_value(sample.value)}; info values are 1"
        )


def _check_stateset(family: Family, suffix: str, sample: OMSample, number: int) -> None:
    if family.name not in sample.labels:
        raise line_error(
            number, f'{family.describe()} sample needs a "{family.name}" label naming the state'
        )
    if sample.value not in (0, 1):
        raise line_error(
            number,
            f"{family.describe()} value is {format_value(sample.value)}; stateset values are 0 "
            "or 1",
        )


def _check_nothing(family: Family, suffix: str, sample: OMSample, number: int) -> None:
    return


Rule = Callable[[Family, str, OMSample, int], None]
RULES: dict[MetricType, Rule] = {
    MetricType.COUNTER: _check_counter,
    MetricType.GAUGE: _check_nothing,
    MetricType.HISTOGRAM: _check_histogram,
    MetricType.GAUGE_HISTOGRAM: _check_histogram,
    MetricType.SUMMARY: _check_summary,
    MetricType.INFO: _check_info,
    MetricType.STATESET: _check_stateset,
    MetricType.UNKNOWN: _check_nothing,
}


def check_exemplar_allowed(family: Family, suffix: str, number: int) -> None:
    counter = family.type is MetricType.COUNTER and suffix == "_total"
    bucket = family.type in HISTOGRAM_TYPES and suffix == "_bucket"
    if not (counter or bucket):
        raise line_error(
            number,
            f"{family.describe()} sample {family.name}{suffix} cannot have an exemplar; "
            "only counter _total and histogram _bucket samples can",
        )


def _parse_le(text: str) -> float | None:
    if text == "+Inf":
        return math.inf
    return float(text) if REAL_RE.fullmatch(text) else None


@dataclass(slots=True)
class HistogramPoint:
    """The samples of one histogram (labels minus `le`, timestamp), checked as a whole."""

    family: Family
    ts: Decimal | None
    line: int = 0
    last_le: float | None = None
    last_le_text: str = ""
    last_count: float = 0.0
    inf_count: float | None = None
    negative_buckets: bool = False
    count: float | None = None
    sum: float | None = None

    def add(self, suffix: str, sample: OMSample, number: int) -> None:
        self.line = number
        if suffix == "_bucket":
            self._bucket(sample.labels["le"], sample.value, number)
        elif suffix in ("_count", "_gcount"):
            self.count = sample.value
        elif suffix in ("_sum", "_gsum"):
            self.sum = sample.value

    def _bucket(self, le_text: str, value: float, number: int) -> None:
        name = self.family.describe()
        le = _parse_le(le_text)
        if le is None:
            raise line_error(number, f'{name} bucket le="{le_text}" is not a number or "+Inf"')
        if self.last_le is not None and le <= self.last_le:
            raise line_error(
                number,
                f'{name} bucket le="{le_text}" is not above the previous bucket '
                f'le="{self.last_le_text}"; buckets must be sorted by le',
            )
        if self.last_le is not None and value < self.last_count:
            raise line_error(
                number,
                f'{name} bucket le="{le_text}" count {format_value(value)} is lower than the '
                f"previous bucket's {format_value(self.last_count)}; buckets must be "
                "cumulative",
            )
        self.last_le, self.last_le_text, self.last_count = le, le_text, value
        self.negative_buckets |= le < 0
        if le == math.inf:
            self.inf_count = value

    def finish(self) -> None:
        name, gauge = self.family.describe(), self.family.type is MetricType.GAUGE_HISTOGRAM
        count, total = ("_gcount", "_gsum") if gauge else ("_count", "_sum")
        if self.inf_count is None:
            raise line_error(
                self.line, f'{name} has no le="+Inf" bucket; every histogram needs one'
            )
        if self.count is not None and self.count != self.inf_count:
            raise line_error(
                self.line,
                f"{name} {count} {format_value(self.count)} differs from the "
                f'le="+Inf" bucket {format_value(self.inf_count)}; they must be equal',
            )
        if (self.count is None) != (self.sum is None):
            raise line_error(self.line, f"{name} needs {count} and {total} together or neither")
        self._check_sum(name, gauge)

    def _check_sum(self, name: str, gauge: bool) -> None:
        if self.sum is None:
            return
        if not gauge and self.negative_buckets:
            raise line_error(self.line, f"{name} has negative buckets, so it must not have _sum")
        if gauge and self.sum < 0 and not self.negative_buckets:
            raise line_error(self.line, f"{name} _gsum is negative but no bucket is below zero")
