"""The Prometheus text exposition format 0.0.4, decoded as leniently as Prometheus does.

Metadata is optional, comments and blank lines are free, blanks may surround label tokens, and
timestamps are integer milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.exposition_lexer import (
    INT64_MAX,
    INT64_MIN,
    INTEGER_RE,
    LABEL_ESCAPES,
    LABEL_NAME_RE,
    METRIC_NAME_RE,
    QUOTED_RE,
    VALUE_PATTERN,
    add_label,
    label_problem,
    label_set,
    line_error,
    parse_float,
    show,
    unescape,
)
from opsmetrics.ingest.exposition_series import HISTOGRAM_TYPES, SampleRows, series_labels
from opsmetrics.model import MetricMetadata, MetricType

_TEXT_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*" + VALUE_PATTERN)
_TEXT_LABEL_SET = re.compile(
    rf"\{{[ \t]*(?:{_TEXT_LABEL.pattern}(?:[ \t]*,[ \t]*{_TEXT_LABEL.pattern})*[ \t]*,?)?[ \t]*\}}"
)
_TEXT_DESCRIPTOR = re.compile(r"#[ \t]+(HELP|TYPE)[ \t]+([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)")
_TEXT_HELP_ESCAPES = {"\\": "\\", "n": "\n"}
_TEXT_TYPES = {
    "counter": MetricType.COUNTER,
    "gauge": MetricType.GAUGE,
    "histogram": MetricType.HISTOGRAM,
    "summary": MetricType.SUMMARY,
    "untyped": MetricType.UNKNOWN,
}


def parse_prometheus_text(text: str, default_ts_ms: int) -> DecodedSamples:
    return _TextParser(default_ts_ms).parse(text)


@dataclass(frozen=True, slots=True)
class _TextSample:
    name: str
    labels: dict[str, str]
    value: float
    ts_ms: int | None


class _TextParser:
    def __init__(self, default_ts_ms: int) -> None:
        self._default_ts_ms = default_ts_ms
        self._rows = SampleRows()
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
                raise line_error(number, f"{line.split()[1]} needs a metric name: {show(line)}")
            return  # any other comment is allowed
        kind, name, rest = match.groups()
        if rest and rest[0] not in " \t":
            raise line_error(number, f"invalid metric name in {show(line)}")
        if kind == "HELP":
            self._help[name] = unescape(rest.lstrip(" \t"), _TEXT_HELP_ESCAPES)
            return
        kind_text = rest.strip(" \t")
        if kind_text not in _TEXT_TYPES:
            raise line_error(
                number,
                f'unknown metric type "{kind_text}" for "{name}"; use counter, gauge, '
                "histogram, summary or untyped",
            )
        self._types[name] = _TEXT_TYPES[kind_text]

    def _sample(self, sample: _TextSample) -> None:
        labels = series_labels(sample.name, sample.labels, self._float_label(sample.name))
        ts = self._default_ts_ms if sample.ts_ms is None else sample.ts_ms
        self._rows.add(labels, ts, sample.value)

    def _float_label(self, name: str) -> str | None:
        if self._types.get(name) is MetricType.SUMMARY:
            return "quantile"
        bucket_of = name[: -len("_bucket")]
        if name.endswith("_bucket") and self._types.get(bucket_of) in HISTOGRAM_TYPES:
            return "le"
        return None

    def _metadata(self) -> list[MetricMetadata]:
        names = dict.fromkeys([*self._types, *self._help])
        return [
            MetricMetadata(n, self._types.get(n, MetricType.UNKNOWN), self._help.get(n, ""))
            for n in names
        ]


def _parse_text_sample(line: str, number: int) -> _TextSample:
    match = METRIC_NAME_RE.match(line)
    if match is None:
        raise line_error(number, f"expected a metric name at the start of {show(line)}")
    name, pos = match.group(), _skip_blanks(line, match.end())
    labels: dict[str, str] = {}
    if line.startswith("{", pos):
        labels, pos = label_set(line, pos, number, _TEXT_LABEL_SET, _TEXT_LABEL, _text_labels)
    elif pos == match.end() and pos < len(line):
        raise line_error(number, f"invalid metric name in {show(line)}")
    tokens = line[pos:].split()
    if not tokens:
        raise line_error(number, f'sample "{name}" has no value')
    if len(tokens) > 2:
        raise line_error(number, f"unexpected text {show(tokens[2])} after the timestamp")
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
            raise line_error(number, f'expected "," or "}}" at column {pos + 1} of {show(line)}')


def _text_label_pair(line: str, pos: int, number: int, labels: dict[str, str]) -> int:
    name = LABEL_NAME_RE.match(line, pos)
    if name is None:
        raise line_error(number, label_problem(line, pos))
    pos = _skip_blanks(line, name.end())
    if not line.startswith("=", pos):
        raise line_error(number, f'expected "=" after label name "{name.group()}"')
    pos = _skip_blanks(line, pos + 1)
    value = QUOTED_RE.match(line, pos)
    if value is None:
        problem = "has no closing quote" if line.startswith('"', pos) else "must be quoted"
        raise line_error(number, f'the value of label "{name.group()}" {problem}')
    add_label(labels, name.group(), unescape(value.group(1), LABEL_ESCAPES), number)
    return value.end()


def _skip_blanks(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos


def _text_value(token: str, number: int) -> float:
    value = parse_float(token)
    if value is None:
        raise line_error(
            number, f"invalid value {show(token)}; expected a number, +Inf, -Inf or NaN"
        )
    return value


def _text_timestamp(token: str, number: int) -> int:
    if not INTEGER_RE.fullmatch(token):
        raise line_error(
            number, f"invalid timestamp {show(token)}; expected integer milliseconds since epoch"
        )
    ts = int(token)
    if not INT64_MIN <= ts <= INT64_MAX:
        raise line_error(number, f"timestamp {token} is out of range")
    return ts
