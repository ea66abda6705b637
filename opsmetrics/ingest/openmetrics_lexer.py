"""OpenMetrics 1.0 text, line by line: the `# EOF` frame and the strict sample-line grammar.

A sample line is `name{a="1",b="2"} value [timestamp] [# {exemplar labels} value [timestamp]]`
with single spaces and no blanks inside the label set; anything else is an error that says
which rule it broke.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from opsmetrics.ingest.exposition_lexer import (
    INT64_MAX,
    INT64_MIN,
    LABEL_ESCAPES,
    METRIC_NAME_RE,
    REAL_RE,
    VALUE_PATTERN,
    add_label,
    label_problem,
    label_set,
    line_error,
    parse_float,
    show,
    unescape,
)

#: Exemplar label sets may hold at most this many code points (names and values together).
MAX_EXEMPLAR_LABEL_CHARS = 128

_OM_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=" + VALUE_PATTERN)
_OM_LABEL_SET = re.compile(rf"\{{(?:{_OM_LABEL.pattern}(?:,{_OM_LABEL.pattern})*)?\}}")


@dataclass(frozen=True, slots=True)
class OMSample:
    name: str
    labels: dict[str, str]
    value: float
    ts: Decimal | None
    exemplar: bool


def om_lines(text: str) -> list[str]:
    """The lines before `# EOF`, which must be the last line."""
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    try:
        eof = lines.index("# EOF")
    except ValueError:
        raise line_error(len(lines), "OpenMetrics input must end with a '# EOF' line") from None
    if eof != len(lines) - 1:
        raise line_error(eof + 2, "unexpected text after '# EOF'; it must be the last line")
    return lines[:-1]


def parse_om_sample(line: str, number: int) -> OMSample:
    match = METRIC_NAME_RE.match(line)
    if match is None:
        raise line_error(number, f"expected a metric name at the start of {show(line)}")
    name, pos = match.group(), match.end()
    labels: dict[str, str] = {}
    if line.startswith("{", pos):
        labels, pos = label_set(line, pos, number, _OM_LABEL_SET, _OM_LABEL, _om_labels)
    if not line.startswith(" ", pos):
        raise line_error(number, _missing_value_problem(line, pos))
    head, hash_sign, exemplar = line[pos + 1 :].partition(" # ")
    tokens = _om_tokens(head, number, "value and timestamp")
    if tokens[-1].startswith("#"):
        raise line_error(number, "an exemplar must follow ' # ' and start with a label set")
    value = _om_value(tokens[0], number, "value")
    ts = _om_timestamp(tokens[1], number) if len(tokens) == 2 else None
    if hash_sign:
        _check_exemplar(exemplar, number)
    return OMSample(name, labels, value, ts, bool(hash_sign))


def seconds_to_ms(seconds: Decimal) -> int:
    # Truncate like Prometheus; stamps beyond int64 milliseconds saturate (and are then
    # rejected as out of bounds by ingest validation).
    # adjusted(), the exponent, and not a comparison: comparing `59221e3098081` with 10**17
    # raises decimal.Overflow (found by fuzzing).
    if seconds and seconds.adjusted() >= 17:
        return INT64_MAX if seconds > 0 else INT64_MIN
    ms = int((seconds * 1000).to_integral_value(rounding=ROUND_DOWN))
    return max(INT64_MIN, min(INT64_MAX, ms))


def _missing_value_problem(line: str, pos: int) -> str:
    if pos < len(line) and not line.startswith("}", pos - 1):
        return (
            f"invalid character {line[pos]!r} in metric name {show(line)}; names use "
            "letters, digits, _ and :"
        )
    return f"expected one space and then the value after {show(line[:pos])}"


def _om_labels(line: str, pos: int, number: int) -> tuple[dict[str, str], int]:
    """Labels after `{`, in the strict OpenMetrics form `{a="1",b="2"}`."""
    labels: dict[str, str] = {}
    if line.startswith("}", pos):
        return labels, pos + 1
    while True:
        pair = _OM_LABEL.match(line, pos)
        if pair is None:
            raise line_error(number, label_problem(line, pos))
        add_label(labels, pair.group(1), unescape(pair.group(2), LABEL_ESCAPES), number)
        pos = pair.end()
        if line.startswith("}", pos):
            return labels, pos + 1
        if not line.startswith(",", pos):
            raise line_error(number, f'expected "," or "}}" at column {pos + 1} of {show(line)}')
        pos += 1


def _om_tokens(text: str, number: int, what: str) -> list[str]:
    tokens = text.split(" ")
    if "" in tokens:
        raise line_error(number, f"{what} must be separated by single spaces, with none at the end")
    if len(tokens) > 2:
        raise line_error(number, f"unexpected text {show(tokens[2])} after the {what}")
    return tokens


def _om_value(token: str, number: int, what: str) -> float:
    value = parse_float(token)
    if value is None:
        raise line_error(
            number,
            f"invalid {what} {show(token)}; expected a decimal number, +Inf, -Inf or NaN",
        )
    return value


def _om_timestamp(token: str, number: int) -> Decimal:
    if not REAL_RE.fullmatch(token):
        raise line_error(
            number,
            f"invalid timestamp {show(token)}; OpenMetrics timestamps are Unix seconds "
            "such as 1700000000.125",
        )
    try:
        return Decimal(token)
    except InvalidOperation:  # an exponent past what Decimal holds at all (found by fuzzing)
        raise line_error(number, f"timestamp {show(token)} is out of range") from None


def _check_exemplar(text: str, number: int) -> None:
    if not text.startswith("{"):
        raise line_error(number, 'an exemplar must start with a label set such as {trace_id=".."}')
    labels, pos = label_set(text, 0, number, _OM_LABEL_SET, _OM_LABEL, _om_labels)
    size = sum(len(k) + len(v) for k, v in labels.items())
    if size > MAX_EXEMPLAR_LABEL_CHARS:
        raise line_error(
            number,
            f"exemplar labels have {size} characters, more than the "
            f"{MAX_EXEMPLAR_LABEL_CHARS} allowed",
        )
    if not text.startswith(" ", pos):
        raise line_error(number, "expected one space and then the exemplar value")
    tokens = _om_tokens(text[pos + 1 :], number, "exemplar value and timestamp")
    _om_value(tokens[0], number, "exemplar value")
    if len(tokens) == 2:
        _om_timestamp(tokens[1], number)
