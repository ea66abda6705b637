"""Tokenising shared by the text 0.0.4 and OpenMetrics decoders: names, label sets, values.

Both formats spell metric names, label pairs and numbers alike; they differ in how strict they
are about blanks around them, so each parser passes its own label patterns to `label_set`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from opsmetrics.errors import BadDataError
from opsmetrics.model import METRIC_NAME

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: A double-quoted label value; group 1 is the text between the quotes, still escaped.
VALUE_PATTERN = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
QUOTED_RE = re.compile(VALUE_PATTERN)
REAL_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
INTEGER_RE = re.compile(r"[+-]?\d+")
LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}

_ESCAPE = re.compile(r"\\(.)")
_SPECIAL_FLOATS = {
    "inf": math.inf,
    "+inf": math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
    "nan": math.nan,
}


def line_error(line: int, message: str) -> BadDataError:
    return BadDataError(f"line {line}: {message}")


def show(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def unescape(raw: str, escapes: dict[str, str]) -> str:
    if "\\" not in raw:
        return raw
    # Unknown escapes stay as written, as Prometheus keeps them.
    return _ESCAPE.sub(lambda m: escapes.get(m.group(1), m.group(0)), raw)


def parse_float(text: str) -> float | None:
    if REAL_RE.fullmatch(text):
        return float(text)
    return _SPECIAL_FLOATS.get(text.lower())


def add_label(labels: dict[str, str], name: str, value: str, line: int) -> None:
    if name in labels:
        raise line_error(line, f'label "{name}" appears twice; send each label once')
    if name == METRIC_NAME:
        raise line_error(line, f'label name "{METRIC_NAME}" is reserved for the metric name')
    labels[name] = value


def label_problem(line: str, pos: int) -> str:
    """Why no `name="value"` pair starts at `pos`, for the error message."""
    name = LABEL_NAME_RE.match(line, pos)
    if name is None:
        return f"expected a label name at column {pos + 1} of {show(line)}"
    after = name.end()
    if not line.startswith("=", after):
        return f'expected "=" after label name "{name.group()}"'
    if not line.startswith('"', after + 1):
        return f'the value of label "{name.group()}" must be in double quotes'
    return f'the value of label "{name.group()}" has no closing quote'


LabelParser = Callable[[str, int, int], tuple[dict[str, str], int]]


def label_set(
    line: str,
    pos: int,
    number: int,
    whole: re.Pattern[str],
    pair: re.Pattern[str],
    step_by_step: LabelParser,
) -> tuple[dict[str, str], int]:
    """The label set starting with `{` at `pos`: one regex for the well-formed case, else the
    step-by-step parser that says what is wrong."""
    match = whole.match(line, pos)
    if match is None:
        return step_by_step(line, pos + 1, number)
    labels: dict[str, str] = {}
    for label in pair.finditer(line, pos, match.end()):
        add_label(labels, label.group(1), unescape(label.group(2), LABEL_ESCAPES), number)
    return labels, match.end()
