"""Values and series descriptions of the promqltest format: `name{a="b"} 0+10x3 _ stale`."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from opsmetrics.model import METRIC_NAME, STALE_NAN, Labels


class ScriptError(Exception):
    """A line of a test script the runner cannot parse (a runner bug, not an engine failure)."""


@dataclass(frozen=True, slots=True)
class NativeHistogram:
    """A `{{...}}` literal: kept only so cases that need it are skipped."""

    text: str


#: One position of an expanded series: a float, None for `_` (no sample), or a histogram.
SeqValue = float | None | NativeHistogram

_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNIT_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
_FLOAT = r"(?:[iI]nf|NaN|nan|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_ITEM = re.compile(rf"^(?P<base>[+-]?{_FLOAT})(?:(?P<delta>[+-]{_FLOAT}))?(?:x(?P<times>\d+))?$")
_BLANK = re.compile(r"^_(?:x(?P<times>\d+))?$")
_HISTOGRAM = re.compile(r"\{\{.*?\}\}(?:[+-]\{\{.*?\}\})?(?:x(?P<times>\d+))?")
_VALUE_TOKEN = re.compile(r"\{\{.*?\}\}(?:[+-]\{\{.*?\}\})?(?:x\d+)?|\S+")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_TOKEN = re.compile(
    r"""\s*(?:[a-zA-Z_][a-zA-Z0-9_]*|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|[=,{}])"""
)


def parse_duration_ms(text: str) -> int:
    """A Prometheus duration (`1h30m`, `20s500ms`, `0`) in milliseconds."""
    match = _DURATION.match(text)
    if text and match is not None:
        return sum(int(g) * unit for g, unit in zip(match.groups(), _UNIT_MS, strict=True) if g)
    try:
        return round(float(text) * 1000)
    except ValueError:
        raise ScriptError(f"invalid duration {text!r}") from None


def expand_token(token: str) -> list[SeqValue]:
    """One item of the expanding notation: `_`, `_x3`, `stale`, `5`, `1x3`, `1+2x3`, `{{..}}`."""
    if token.startswith("{{"):
        hist = _HISTOGRAM.fullmatch(token)
        times = int(hist["times"]) + 1 if hist and hist["times"] else 1
        return [NativeHistogram(token)] * times
    if token == "stale":
        return [STALE_NAN]
    blank = _BLANK.match(token)
    if blank:
        return [None] * int(blank["times"] or 1)
    item = _ITEM.match(token)
    if item is None:
        raise ScriptError(f"invalid value {token!r}")
    return _arithmetic(float(item["base"]), float(item["delta"] or 0), item["times"])


def _arithmetic(base: float, delta: float, times: str | None) -> list[SeqValue]:
    if times is None:
        return [base]
    out: list[SeqValue] = []
    for _ in range(int(times) + 1):  # `axN` is N+1 values, accumulated as Prometheus does
        out.append(base)
        base += delta
    return out


def unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    if token[0] in "\"'":
        return str(ast.literal_eval(token))
    return token


def _next_label_token(line: str, pos: int) -> tuple[str, int]:
    match = _LABEL_TOKEN.match(line, pos)
    if match is None:
        raise ScriptError(f"cannot parse labels in {line!r} at column {pos}")
    return match.group().strip(), match.end()


def _parse_braces(line: str, pos: int, pairs: dict[str, str]) -> int:
    """Label pairs (and a quoted metric name) up to the closing brace; returns its end."""
    while True:
        token, pos = _next_label_token(line, pos)
        if token == "}":
            return pos
        if token == ",":
            continue
        name = unquote(token)
        op, after = _next_label_token(line, pos)
        if op == "=":
            value, pos = _next_label_token(line, after)
            pairs[name] = unquote(value)
        else:
            pairs[METRIC_NAME] = name


def parse_series_desc(line: str) -> tuple[Labels, list[SeqValue]]:
    """`name{label="value"} values...` → canonical labels and expanded values."""
    pairs: dict[str, str] = {}
    name = _METRIC_NAME.match(line)
    pos = 0
    if name:
        pairs[METRIC_NAME] = name.group()
        pos = name.end()
    if line.startswith("{", pos):
        pos = _parse_braces(line, pos + 1, pairs)
    elif not name:
        raise ScriptError(f"expected a series description, got {line!r}")
    values = [v for tok in _VALUE_TOKEN.findall(line[pos:]) for v in expand_token(tok)]
    return tuple(sorted((k, v) for k, v in pairs.items() if v != "")), values


def parse_number(text: str) -> float | None:
    """A bare number line (an expected scalar), as Go's ParseInt(base 0) then ParseFloat."""
    try:
        return float(int(text, 0))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def format_labels(labels: Labels) -> str:
    name = "".join(v for k, v in labels if k == METRIC_NAME)
    rest = ", ".join(f'{k}="{v}"' for k, v in labels if k != METRIC_NAME)
    return f"{name}{{{rest}}}"
