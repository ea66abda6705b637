"""Decoders for the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.

OpenMetrics is strict: a target that claims OpenMetrics and breaks a rule of the spec is told
which line and which rule, so it gets fixed at the source. The 0.0.4 text format is lenient the
way Prometheus's own parser is: metadata is optional, comments and blank lines are free, and
timestamps are integer milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from opsmetrics.errors import BadDataError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.model import (
    METRIC_NAME,
    Labels,
    MetricMetadata,
    MetricType,
    SampleBatch,
    SampleBatchBuilder,
    make_labels,
)

OPENMETRICS_MEDIA_TYPE = "application/openmetrics-text"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Exemplar label sets may hold at most this many code points (names and values together).
MAX_EXEMPLAR_LABEL_CHARS = 128

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_VALUE = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_QUOTED = re.compile(_VALUE)
_OM_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=" + _VALUE)
_OM_LABEL_SET = re.compile(rf"\{{(?:{_OM_LABEL.pattern}(?:,{_OM_LABEL.pattern})*)?\}}")
_TEXT_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*" + _VALUE)
_TEXT_LABEL_SET = re.compile(
    rf"\{{[ \t]*(?:{_TEXT_LABEL.pattern}(?:[ \t]*,[ \t]*{_TEXT_LABEL.pattern})*[ \t]*,?)?[ \t]*\}}"
)
_REAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_ESCAPE = re.compile(r"\\(.)")
_OM_DESCRIPTOR = re.compile(r"# (HELP|TYPE|UNIT) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)")
_TEXT_DESCRIPTOR = re.compile(r"#[ \t]+(HELP|TYPE)[ \t]+([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)")
_UNIT = re.compile(r"[a-zA-Z0-9_:]*")
_SPECIAL_FLOATS = {
    "inf": math.inf,
    "+inf": math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
    "nan": math.nan,
}
_LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_TEXT_HELP_ESCAPES = {"\\": "\\", "n": "\n"}

_TEXT_TYPES = {
    "counter": MetricType.COUNTER,
    "gauge": MetricType.GAUGE,
    "histogram": MetricType.HISTOGRAM,
    "summary": MetricType.SUMMARY,
    "untyped": MetricType.UNKNOWN,
}
_OM_TYPES = {t.value: t for t in MetricType}
_HISTOGRAMS = (MetricType.HISTOGRAM, MetricType.GAUGE_HISTOGRAM)
#: The sample names a family of each type owns: family name + suffix.
_SUFFIXES: dict[MetricType, tuple[str, ...]] = {
    MetricType.COUNTER: ("_total", "_created"),
    MetricType.GAUGE: ("",),
    MetricType.HISTOGRAM: ("_bucket", "_count", "_sum", "_created"),
    MetricType.GAUGE_HISTOGRAM: ("_bucket", "_gcount", "_gsum"),
    MetricType.SUMMARY: ("", "_count", "_sum", "_created"),
    MetricType.INFO: ("_info",),
    MetricType.STATESET: ("",),
    MetricType.UNKNOWN: ("",),
}


def parse_exposition(body: bytes, content_type: str | None, default_ts_ms: int) -> DecodedSamples:
    """Decode a scrape or import body; `Content-Type` chooses OpenMetrics or text 0.0.4."""
    text = _decode_utf8(body)
    if is_openmetrics(content_type):
        return parse_openmetrics(text, default_ts_ms)
    return parse_prometheus_text(text, default_ts_ms)


def is_openmetrics(content_type: str | None) -> bool:
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == OPENMETRICS_MEDIA_TYPE


def parse_openmetrics(text: str, default_ts_ms: int) -> DecodedSamples:
    return _OpenMetricsParser(default_ts_ms).parse(text)


def parse_prometheus_text(text: str, default_ts_ms: int) -> DecodedSamples:
    return _TextParser(default_ts_ms).parse(text)


# --- shared lexing ------------------------------------------------------------------------


def _error(line: int, message: str) -> BadDataError:
    return BadDataError(f"line {line}: {message}")


def _decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise _error(line, "the body is not valid UTF-8; send UTF-8 text") from None


def _show(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _unescape(raw: str, escapes: dict[str, str]) -> str:
    if "\\" not in raw:
        return raw
    # Unknown escapes stay as written, as Prometheus keeps them.
    return _ESCAPE.sub(lambda m: escapes.get(m.group(1), m.group(0)), raw)


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def normalize_float_label(text: str) -> str:
    """`le`/`quantile` values in one spelling (`1` → `1.0`, `1000000` → `1e+06`), as Prometheus
    3 stores them, so the same bucket from different exporters is the same series."""
    value = _parse_float(text)
    if value is None:
        return text
    if math.isnan(value) or math.isinf(value):
        return _format_value(value)
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


def _parse_float(text: str) -> float | None:
    if _REAL.fullmatch(text):
        return float(text)
    return _SPECIAL_FLOATS.get(text.lower())


def _add_label(labels: dict[str, str], name: str, value: str, line: int) -> None:
    if name in labels:
        raise _error(line, f'label "{name}" appears twice; send each label once')
    if name == METRIC_NAME:
        raise _error(line, f'label name "{METRIC_NAME}" is reserved for the metric name')
    labels[name] = value


def _label_problem(line: str, pos: int) -> str:
    """Why no `name="value"` pair starts at `pos`, for the error message."""
    name = _LABEL_NAME.match(line, pos)
    if name is None:
        return f"expected a label name at column {pos + 1} of {_show(line)}"
    after = name.end()
    if not line.startswith("=", after):
        return f'expected "=" after label name "{name.group()}"'
    if not line.startswith('"', after + 1):
        return f'the value of label "{name.group()}" must be in double quotes'
    return f'the value of label "{name.group()}" has no closing quote'


_LabelParser = Callable[[str, int, int], tuple[dict[str, str], int]]


def _label_set(
    line: str,
    pos: int,
    number: int,
    whole: re.Pattern[str],
    pair: re.Pattern[str],
    step_by_step: _LabelParser,
) -> tuple[dict[str, str], int]:
    """The label set starting with `{` at `pos`: one regex for the well-formed case, else the
    step-by-step parser that says what is wrong."""
    match = whole.match(line, pos)
    if match is None:
        return step_by_step(line, pos + 1, number)
    labels: dict[str, str] = {}
    for label in pair.finditer(line, pos, match.end()):
        _add_label(labels, label.group(1), _unescape(label.group(2), _LABEL_ESCAPES), number)
    return labels, match.end()


class _Rows:
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


def _series_text(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v[:64]}"' for k, v in labels.items())
    return f"{name}{{{inner}}}" if inner else name


# --- Prometheus text format 0.0.4 -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TextSample:
    name: str
    labels: dict[str, str]
    value: float
    ts_ms: int | None


class _TextParser:
    def __init__(self, default_ts_ms: int) -> None:
        self._default_ts_ms = default_ts_ms
        self._rows = _Rows()
        self._types: dict[str, MetricType] = {}
        self._help: dict[str, str] = {}

    def parse(self, text: str) -> DecodedSamples:
        for number, raw in enumerate(text.split("\n"), 1):
            line = raw.strip(" \t\r")
            if line.startswith("#"):
                self._comment(line, number)
            elif line:
                self._sample(_parse_text_sample(line, number))
        return DecodedSamples(self._rows.build(), self._metadata())

    def _comment(self, line: str, number: int) -> None:
        match = _TEXT_DESCRIPTOR.fullmatch(line)
        if match is None:
            if re.match(r"#[ \t]+(HELP|TYPE)\b", line):
                raise _error(number, f"{line.split()[1]} needs a metric name: {_show(line)}")
            return  # any other comment is allowed
        kind, name, rest = match.groups()
        if rest and rest[0] not in " \t":
            raise _error(number, f"invalid metric name in {_show(line)}")
        if kind == "HELP":
            self._help[name] = _unescape(rest.lstrip(" \t"), _TEXT_HELP_ESCAPES)
            return
        kind_text = rest.strip(" \t")
        if kind_text not in _TEXT_TYPES:
            raise _error(
                number,
                f'unknown metric type "{kind_text}" for "{name}"; use counter, gauge, '
                "histogram, summary or untyped",
            )
        self._types[name] = _TEXT_TYPES[kind_text]

    def _sample(self, sample: _TextSample) -> None:
        labels = _series_labels(sample.name, sample.labels, self._float_label(sample.name))
        ts = self._default_ts_ms if sample.ts_ms is None else sample.ts_ms
        self._rows.add(labels, ts, sample.value)

    def _float_label(self, name: str) -> str | None:
        if self._types.get(name) is MetricType.SUMMARY:
            return "quantile"
        if name.endswith("_bucket") and self._types.get(name[: -len("_bucket")]) in _HISTOGRAMS:
            return "le"
        return None

    def _metadata(self) -> list[MetricMetadata]:
        names = dict.fromkeys([*self._types, *self._help])
        return [
            MetricMetadata(n, self._types.get(n, MetricType.UNKNOWN), self._help.get(n, ""))
            for n in names
        ]


def _parse_text_sample(line: str, number: int) -> _TextSample:
    match = _METRIC_NAME.match(line)
    if match is None:
        raise _error(number, f"expected a metric name at the start of {_show(line)}")
    name, pos = match.group(), _skip_blanks(line, match.end())
    labels: dict[str, str] = {}
    if line.startswith("{", pos):
        labels, pos = _label_set(line, pos, number, _TEXT_LABEL_SET, _TEXT_LABEL, _text_labels)
    elif pos == match.end() and pos < len(line):
        raise _error(number, f"invalid metric name in {_show(line)}")
    tokens = line[pos:].split()
    if not tokens:
        raise _error(number, f'sample "{name}" has no value')
    if len(tokens) > 2:
        raise _error(number, f"unexpected text {_show(tokens[2])} after the timestamp")
    value = _text_value(tokens[0], number)
    ts = _text_timestamp(tokens[1], number) if len(tokens) == 2 else None
    return _TextSample(name, labels, value, ts)


def _text_labels(line: str, pos: int, number: int) -> tuple[dict[str, str], int]:
    """Labels after `{`: blanks around tokens and a trailing comma are allowed."""
    labels: dict[str, str] = {}
    while True:
        pos = _skip_blanks(line, pos)
        if line.startswith("}", pos):
            return labels, pos + 1
        pos = _text_label_pair(line, pos, number, labels)
        pos = _skip_blanks(line, pos)
        if line.startswith(",", pos):
            pos += 1
        elif not line.startswith("}", pos):
            raise _error(number, f'expected "," or "}}" at column {pos + 1} of {_show(line)}')


def _text_label_pair(line: str, pos: int, number: int, labels: dict[str, str]) -> int:
    name = _LABEL_NAME.match(line, pos)
    if name is None:
        raise _error(number, _label_problem(line, pos))
    pos = _skip_blanks(line, name.end())
    if not line.startswith("=", pos):
        raise _error(number, f'expected "=" after label name "{name.group()}"')
    pos = _skip_blanks(line, pos + 1)
    value = _QUOTED.match(line, pos)
    if value is None:
        problem = "has no closing quote" if line.startswith('"', pos) else "must be quoted"
        raise _error(number, f'the value of label "{name.group()}" {problem}')
    _add_label(labels, name.group(), _unescape(value.group(1), _LABEL_ESCAPES), number)
    return value.end()


def _skip_blanks(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos


def _text_value(token: str, number: int) -> float:
    value = _parse_float(token)
    if value is None:
        raise _error(number, f"invalid value {_show(token)}; expected a number, +Inf, -Inf or NaN")
    return value


def _text_timestamp(token: str, number: int) -> int:
    if not _INTEGER.fullmatch(token):
        raise _error(
            number, f"invalid timestamp {_show(token)}; expected integer milliseconds since epoch"
        )
    ts = int(token)
    if not INT64_MIN <= ts <= INT64_MAX:
        raise _error(number, f"timestamp {token} is out of range")
    return ts


# --- OpenMetrics 1.0 text: lexing ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OMSample:
    name: str
    labels: dict[str, str]
    value: float
    ts: Decimal | None
    exemplar: bool


def _om_lines(text: str) -> list[str]:
    """The lines before `# EOF`, which must be the last line."""
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    try:
        eof = lines.index("# EOF")
    except ValueError:
        raise _error(len(lines), "OpenMetrics input must end with a '# EOF' line") from None
    if eof != len(lines) - 1:
        raise _error(eof + 2, "unexpected text after '# EOF'; it must be the last line")
    return lines[:-1]


def _parse_om_sample(line: str, number: int) -> _OMSample:
    match = _METRIC_NAME.match(line)
    if match is None:
        raise _error(number, f"expected a metric name at the start of {_show(line)}")
    name, pos = match.group(), match.end()
    labels: dict[str, str] = {}
    if line.startswith("{", pos):
        labels, pos = _label_set(line, pos, number, _OM_LABEL_SET, _OM_LABEL, _om_labels)
    if not line.startswith(" ", pos):
        raise _error(number, _missing_value_problem(line, pos))
    head, hash_sign, exemplar = line[pos + 1 :].partition(" # ")
    tokens = _om_tokens(head, number, "value and timestamp")
    if tokens[-1].startswith("#"):
        raise _error(number, "an exemplar must follow ' # ' and start with a label set")
    value = _om_value(tokens[0], number, "value")
    ts = _om_timestamp(tokens[1], number) if len(tokens) == 2 else None
    if hash_sign:
        _check_exemplar(exemplar, number)
    return _OMSample(name, labels, value, ts, bool(hash_sign))


def _missing_value_problem(line: str, pos: int) -> str:
    if pos < len(line) and not line.startswith("}", pos - 1):
        return (
            f"invalid character {line[pos]!r} in metric name {_show(line)}; names use "
            "letters, digits, _ and :"
        )
    return f"expected one space and then the value after {_show(line[:pos])}"


def _om_labels(line: str, pos: int, number: int) -> tuple[dict[str, str], int]:
    """Labels after `{`, in the strict OpenMetrics form `{a="1",b="2"}`."""
    labels: dict[str, str] = {}
    if line.startswith("}", pos):
        return labels, pos + 1
    while True:
        pair = _OM_LABEL.match(line, pos)
        if pair is None:
            raise _error(number, _label_problem(line, pos))
        _add_label(labels, pair.group(1), _unescape(pair.group(2), _LABEL_ESCAPES), number)
        pos = pair.end()
        if line.startswith("}", pos):
            return labels, pos + 1
        if not line.startswith(",", pos):
            raise _error(number, f'expected "," or "}}" at column {pos + 1} of {_show(line)}')
        pos += 1


def _om_tokens(text: str, number: int, what: str) -> list[str]:
    tokens = text.split(" ")
    if "" in tokens:
        raise _error(number, f"{what} must be separated by single spaces, with none at the end")
    if len(tokens) > 2:
        raise _error(number, f"unexpected text {_show(tokens[2])} after the {what}")
    return tokens


def _om_value(token: str, number: int, what: str) -> float:
    value = _parse_float(token)
    if value is None:
        raise _error(
            number,
            f"invalid {what} {_show(token)}; expected a decimal number, +Inf, -Inf or NaN",
        )
    return value


def _om_timestamp(token: str, number: int) -> Decimal:
    if not _REAL.fullmatch(token):
        raise _error(
            number,
            f"invalid timestamp {_show(token)}; OpenMetrics timestamps are Unix seconds "
            "such as 1700000000.125",
        )
    return Decimal(token)


def _seconds_to_ms(seconds: Decimal) -> int:
    # Truncate like Prometheus; stamps beyond int64 milliseconds saturate (and are then
    # rejected as out of bounds by ingest validation).
    if abs(seconds) >= 10**17:
        return INT64_MAX if seconds > 0 else INT64_MIN
    ms = int((seconds * 1000).to_integral_value(rounding=ROUND_DOWN))
    return max(INT64_MIN, min(INT64_MAX, ms))


def _check_exemplar(text: str, number: int) -> None:
    if not text.startswith("{"):
        raise _error(number, 'an exemplar must start with a label set such as {trace_id=".."}')
    labels, pos = _label_set(text, 0, number, _OM_LABEL_SET, _OM_LABEL, _om_labels)
    size = sum(len(k) + len(v) for k, v in labels.items())
    if size > MAX_EXEMPLAR_LABEL_CHARS:
        raise _error(
            number,
            f"exemplar labels have {size} characters, more than the "
            f"{MAX_EXEMPLAR_LABEL_CHARS} allowed",
        )
    if not text.startswith(" ", pos):
        raise _error(number, "expected one space and then the exemplar value")
    tokens = _om_tokens(text[pos + 1 :], number, "exemplar value and timestamp")
    _om_value(tokens[0], number, "exemplar value")
    if len(tokens) == 2:
        _om_timestamp(tokens[1], number)


# --- OpenMetrics 1.0 text: families and their rules -----------------------------------------


@dataclass(slots=True)
class _Family:
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
        return suffix if suffix in _SUFFIXES[self.type] else None

    def has_metadata(self) -> bool:
        return self.typed or self.help is not None or self.unit is not None

    def metadata(self) -> MetricMetadata:
        return MetricMetadata(self.name, self.type, self.help or "", self.unit or "")

    def describe(self) -> str:
        return f'{self.type.value} "{self.name}"'


def _counter_value(family: _Family, sample: _OMSample, number: int) -> None:
    if math.isnan(sample.value) or sample.value < 0:
        raise _error(
            number,
            f"{family.describe()} sample {sample.name} is {_format_value(sample.value)}; counts "
            "and sums "
            "must be non-negative numbers, not NaN",
        )


def _check_counter(family: _Family, suffix: str, sample: _OMSample, number: int) -> None:
    if suffix == "_total":
        _counter_value(family, sample, number)


def _check_histogram(family: _Family, suffix: str, sample: _OMSample, number: int) -> None:
    if suffix == "_bucket" and "le" not in sample.labels:
        raise _error(number, f'{family.describe()} bucket {sample.name} has no "le" label')
    if suffix == "_gsum" and math.isnan(sample.value):
        raise _error(number, f"{family.describe()} sample {sample.name} must not be NaN")
    if suffix in ("_bucket", "_count", "_gcount", "_sum"):
        _counter_value(family, sample, number)


def _check_summary(family: _Family, suffix: str, sample: _OMSample, number: int) -> None:
    if suffix in ("_count", "_sum"):
        _counter_value(family, sample, number)
    if suffix != "":
        return
    text = sample.labels.get("quantile")
    if text is None:
        raise _error(number, f'{family.describe()} sample has no "quantile" label')
    if not _REAL.fullmatch(text) or not 0 <= float(text) <= 1:
        raise _error(
            number, f'{family.describe()} quantile="{text}" must be a number between 0 and 1'
        )
    if sample.value < 0:
        raise _error(
            number, f"{family.describe()} quantile value {_format_value(sample.value)} is negative"
        )


def _check_info(family: _Family, suffix: str, sample: _OMSample, number: int) -> None:
    if sample.value != 1:
        raise _error(
            number, f"{family.describe()} value is {_format_value(sample.value)}; info values are 1"
        )


def _check_stateset(family: _Family, suffix: str, sample: _OMSample, number: int) -> None:
    if family.name not in sample.labels:
        raise _error(
            number, f'{family.describe()} sample needs a "{family.name}" label naming the state'
        )
    if sample.value not in (0, 1):
        raise _error(
            number,
            f"{family.describe()} value is {_format_value(sample.value)}; stateset values are 0 "
            "or 1",
        )


def _check_nothing(family: _Family, suffix: str, sample: _OMSample, number: int) -> None:
    return


_Rule = Callable[[_Family, str, _OMSample, int], None]
_RULES: dict[MetricType, _Rule] = {
    MetricType.COUNTER: _check_counter,
    MetricType.GAUGE: _check_nothing,
    MetricType.HISTOGRAM: _check_histogram,
    MetricType.GAUGE_HISTOGRAM: _check_histogram,
    MetricType.SUMMARY: _check_summary,
    MetricType.INFO: _check_info,
    MetricType.STATESET: _check_stateset,
    MetricType.UNKNOWN: _check_nothing,
}


def _check_exemplar_allowed(family: _Family, suffix: str, number: int) -> None:
    counter = family.type is MetricType.COUNTER and suffix == "_total"
    bucket = family.type in _HISTOGRAMS and suffix == "_bucket"
    if not (counter or bucket):
        raise _error(
            number,
            f"{family.describe()} sample {family.name}{suffix} cannot have an exemplar; "
            "only counter _total and histogram _bucket samples can",
        )


def _parse_le(text: str) -> float | None:
    if text == "+Inf":
        return math.inf
    return float(text) if _REAL.fullmatch(text) else None


@dataclass(slots=True)
class _HistogramPoint:
    """The samples of one histogram (labels minus `le`, timestamp), checked as a whole."""

    family: _Family
    ts: Decimal | None
    line: int = 0
    last_le: float | None = None
    last_le_text: str = ""
    last_count: float = 0.0
    inf_count: float | None = None
    negative_buckets: bool = False
    count: float | None = None
    sum: float | None = None

    def add(self, suffix: str, sample: _OMSample, number: int) -> None:
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
            raise _error(number, f'{name} bucket le="{le_text}" is not a number or "+Inf"')
        if self.last_le is not None and le <= self.last_le:
            raise _error(
                number,
                f'{name} bucket le="{le_text}" is not above the previous bucket '
                f'le="{self.last_le_text}"; buckets must be sorted by le',
            )
        if self.last_le is not None and value < self.last_count:
            raise _error(
                number,
                f'{name} bucket le="{le_text}" count {_format_value(value)} is lower than the '
                f"previous bucket's {_format_value(self.last_count)}; buckets must be "
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
            raise _error(self.line, f'{name} has no le="+Inf" bucket; every histogram needs one')
        if self.count is not None and self.count != self.inf_count:
            raise _error(
                self.line,
                f"{name} {count} {_format_value(self.count)} differs from the "
                f'le="+Inf" bucket {_format_value(self.inf_count)}; they must be equal',
            )
        if (self.count is None) != (self.sum is None):
            raise _error(self.line, f"{name} needs {count} and {total} together or neither")
        self._check_sum(name, gauge)

    def _check_sum(self, name: str, gauge: bool) -> None:
        if self.sum is None:
            return
        if not gauge and self.negative_buckets:
            raise _error(self.line, f"{name} has negative buckets, so it must not have _sum")
        if gauge and self.sum < 0 and not self.negative_buckets:
            raise _error(self.line, f"{name} _gsum is negative but no bucket is below zero")


@dataclass(slots=True)
class _Group:
    """The samples of one labelled metric in a family: all must be contiguous."""

    key: Labels
    point: _HistogramPoint | None = None


class _OpenMetricsParser:
    def __init__(self, default_ts_ms: int) -> None:
        self._default_ts_ms = default_ts_ms
        self._rows = _Rows()
        self._families: dict[str, _Family] = {}
        #: Sample name → the family that owns it, so families cannot clash.
        self._owners: dict[str, str] = {}
        self._family: _Family | None = None
        self._group: _Group | None = None
        self._seen_groups: set[Labels] = set()
        self._last_ts: dict[Labels, Decimal | None] = {}

    def parse(self, text: str) -> DecodedSamples:
        lines = _om_lines(text)
        for number, line in enumerate(lines, 1):
            if not line:
                raise _error(number, "blank lines are not allowed in OpenMetrics")
            if line.startswith("#"):
                self._descriptor(line, number)
            else:
                self._sample(_parse_om_sample(line, number), number)
        self._finish_family()
        metadata = [f.metadata() for f in self._families.values() if f.has_metadata()]
        return DecodedSamples(self._rows.build(), metadata, SampleBatch.empty())

    # --- metadata lines ---
    def _descriptor(self, line: str, number: int) -> None:
        match = _OM_DESCRIPTOR.fullmatch(line)
        if match is None:
            raise _error(number, _descriptor_problem(line))
        kind, name, rest = match.groups()
        family = self._family_for_metadata(name, number)
        if kind == "HELP":
            self._set_help(family, rest, number)
        elif kind == "TYPE":
            self._set_type(family, rest, number)
        else:
            self._set_unit(family, rest, number)

    def _family_for_metadata(self, name: str, number: int) -> _Family:
        family = self._family
        if family is None or family.name != name:
            return self._open_family(name, number)
        if family.sampled:
            raise _error(number, f'metadata for "{name}" must come before its samples')
        return family

    def _set_help(self, family: _Family, text: str, number: int) -> None:
        if family.help is not None:
            raise _error(number, f'second HELP line for "{family.name}"; give one')
        family.help = _unescape(text, _LABEL_ESCAPES)

    def _set_type(self, family: _Family, text: str, number: int) -> None:
        if family.typed:
            raise _error(number, f'second TYPE line for "{family.name}"; give one')
        if text not in _OM_TYPES:
            raise _error(
                number,
                f'unknown metric type "{text}" for "{family.name}"; use counter, gauge, '
                "histogram, gaugehistogram, summary, info, stateset or unknown",
            )
        family.type, family.typed = _OM_TYPES[text], True
        self._check_unit_allowed(family, number)
        self._claim(family, number)

    def _set_unit(self, family: _Family, unit: str, number: int) -> None:
        if family.unit is not None:
            raise _error(number, f'second UNIT line for "{family.name}"; give one')
        if not _UNIT.fullmatch(unit):
            raise _error(number, f"invalid unit {_show(unit)}; use letters, digits and _")
        if unit and not family.name.endswith("_" + unit):
            raise _error(
                number, f'metric "{family.name}" must end with "_{unit}" to have unit "{unit}"'
            )
        family.unit = unit
        self._check_unit_allowed(family, number)

    def _check_unit_allowed(self, family: _Family, number: int) -> None:
        if family.unit and family.type in (MetricType.INFO, MetricType.STATESET):
            raise _error(number, f"{family.describe()} cannot have a unit")

    # --- families ---
    def _open_family(self, name: str, number: int) -> _Family:
        if name in self._families:
            raise _error(
                number,
                f'metric family "{name}" appears again after other lines; keep each '
                "family's lines together",
            )
        self._finish_family()
        family = self._families[name] = self._family = _Family(name)
        self._claim(family, number)
        return family

    def _claim(self, family: _Family, number: int) -> None:
        for suffix in ("", *_SUFFIXES[family.type]):
            owner = self._owners.setdefault(family.name + suffix, family.name)
            if owner != family.name:
                raise _error(
                    number,
                    f'metric family "{family.name}" clashes with the earlier family "{owner}" '
                    f'over the name "{family.name + suffix}"; keep each family\'s samples '
                    "together and their names distinct",
                )

    def _finish_family(self) -> None:
        self._finish_group()
        self._seen_groups.clear()

    # --- samples ---
    def _sample(self, sample: _OMSample, number: int) -> None:
        family, suffix = self._family_for_sample(sample.name, number)
        _RULES[family.type](family, suffix, sample, number)
        if sample.exemplar:
            _check_exemplar_allowed(family, suffix, number)
        labels = _series_labels(sample.name, sample.labels, _float_label(family.type, suffix))
        self._track_group(family, suffix, sample, _group_key(family, labels), number)
        self._check_order(labels, sample, number)
        family.sampled = True
        ts = self._default_ts_ms if sample.ts is None else _seconds_to_ms(sample.ts)
        self._rows.add(labels, ts, sample.value)

    def _family_for_sample(self, name: str, number: int) -> tuple[_Family, str]:
        family = self._family
        suffix = None if family is None else family.suffix_of(name)
        if family is None or suffix is None:
            return self._open_family(name, number), ""
        return family, suffix

    def _track_group(
        self, family: _Family, suffix: str, sample: _OMSample, key: Labels, number: int
    ) -> None:
        group = self._group
        if group is None or group.key != key:
            if key in self._seen_groups:
                raise _error(
                    number,
                    f"samples of {family.describe()} with labels {dict(key)} are not "
                    "contiguous; keep the samples of one labelled metric together",
                )
            self._finish_group()
            group = self._group = _Group(key)
            self._seen_groups.add(key)
        if family.type in _HISTOGRAMS:
            point = group.point
            if point is None or point.ts != sample.ts:
                if point is not None:
                    point.finish()
                point = group.point = _HistogramPoint(family, sample.ts)
            point.add(suffix, sample, number)

    def _finish_group(self) -> None:
        if self._group is not None and self._group.point is not None:
            self._group.point.finish()
        self._group = None

    def _check_order(self, labels: Labels, sample: _OMSample, number: int) -> None:
        if labels in self._last_ts:
            previous = self._last_ts[labels]
            series = _series_text(sample.name, sample.labels)
            if previous is None or sample.ts is None:
                raise _error(
                    number,
                    f"second sample for {series}; repeated samples of a series need timestamps",
                )
            if sample.ts < previous:
                raise _error(
                    number,
                    f"timestamp {sample.ts} of {series} is before the previous one "
                    f"({previous}); timestamps must not go backwards",
                )
        self._last_ts[labels] = sample.ts


def _float_label(family_type: MetricType, suffix: str) -> str | None:
    """The label whose value is a number that Prometheus stores normalized, if any."""
    if family_type in _HISTOGRAMS and suffix == "_bucket":
        return "le"
    if family_type is MetricType.SUMMARY and suffix == "":
        return "quantile"
    return None


def _series_labels(name: str, labels: dict[str, str], float_label: str | None) -> Labels:
    pairs = {**labels, METRIC_NAME: name}
    if float_label is not None and float_label in pairs:
        pairs[float_label] = normalize_float_label(pairs[float_label])
    return make_labels(pairs)


def _group_key(family: _Family, labels: Labels) -> Labels:
    """The labels naming one metric of a family: without `le`, `quantile` or the state."""
    if family.type in _HISTOGRAMS:
        skip = "le"
    elif family.type is MetricType.SUMMARY:
        skip = "quantile"
    elif family.type is MetricType.STATESET:
        skip = family.name
    else:
        skip = METRIC_NAME
    return tuple(pair for pair in labels if pair[0] != METRIC_NAME and pair[0] != skip)


def _descriptor_problem(line: str) -> str:
    for kind, what in (("HELP", "help text"), ("TYPE", "type"), ("UNIT", "unit")):
        if line.startswith(f"# {kind}"):
            return f"malformed {kind} line {_show(line)}; expected '# {kind} <metric> <{what}>'"
    return (
        f"unexpected comment {_show(line)}; OpenMetrics allows only # HELP, # TYPE, # UNIT "
        "and # EOF lines"
    )
