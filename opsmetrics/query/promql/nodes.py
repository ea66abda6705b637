"""Reading promql_parser's AST: parsing, durations, `offset`, `@` and label matchers.

The node classes are typed by the stubs that promql-parser ships (promql_parser/__init__.pyi);
`call_args` and `aggregate_param` type the two children those stubs leave untyped.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import promql_parser as pp

from opsmetrics.catalog.promql_text import parse_promql
from opsmetrics.model import METRIC_NAME, Matcher, MatchOp
from opsmetrics.query.promql.values import QueryError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MATCH_OPS = {
    "MatchOp.Equal": MatchOp.EQ,
    "MatchOp.NotEqual": MatchOp.NE,
    "MatchOp.Re": MatchOp.RE,
    "MatchOp.NotRe": MatchOp.NRE,
}
# The node's own `at` field sits at the first indentation level of its Debug text.
_AT_DEBUG = re.compile(
    r"^        at: Some\(\s*At\(\s*SystemTime \{\s*tv_sec: (-?\d+),\s*tv_nsec: (\d+)", re.M
)


#: ±2^62 ms, some 146 million years either side of 1970.
MAX_AT_MS = 2**62

#: The nodes that carry `offset` and `@` modifiers.
TimedNode = pp.VectorSelector | pp.SubqueryExpr


def parse_expr(text: str) -> pp.Expr:
    """Parse a PromQL expression; a syntax error becomes a QueryError with the parser's text."""
    try:
        return parse_promql(text)
    except ValueError as exc:
        raise QueryError(f"parse error: {exc}") from None


def call_args(node: pp.Call) -> list[pp.Expr]:
    """The argument nodes of a function call."""
    args: list[pp.Expr] = list(node.args)
    return args


def aggregate_param(node: pp.AggregateExpr) -> pp.Expr | None:
    """The parameter node of `topk(k, …)`, `quantile(φ, …)`, `count_values("label", …)`."""
    param: pp.Expr | None = node.param
    return param


def duration_ms(td: timedelta | None) -> int:
    if td is None:
        return 0
    return td // _MS


def offset_ms(node: TimedNode) -> int:
    return duration_field_ms(node, "offset")


def duration_field_ms(node: object, field: str) -> int:
    """A node's duration field (`range`, `step`, `offset`) in ms. The binding cannot hand over
    durations past timedelta's ±2.7 million years and raises ValueError on reading them."""
    try:
        value = getattr(node, field)
    except (ValueError, OverflowError):
        raise QueryError(f"the {field} of the expression is too long a duration") from None
    return duration_ms(value)


def at_ms(node: TimedNode, start_ms: int, end_ms: int) -> int | None:
    """The `@` timestamp of a selector or subquery node, with start()/end() resolved."""
    at = node.at
    if at is None:
        return None
    if at.type == pp.AtModifierType.Start:
        return start_ms
    if at.type == pp.AtModifierType.End:
        return end_ms
    ms = _at_timestamp(node, at)
    # Room is left below int64 for the ranges and offsets the evaluator adds to it.
    if abs(ms) > MAX_AT_MS:
        raise QueryError(f"@ timestamp {ms / 1000:.0f} is out of range; use Unix seconds")
    return ms


def _at_timestamp(node: TimedNode, at: pp.AtModifier) -> int:
    try:
        moment = at.at
    except BaseException:  # noqa: B036 - the binding panics on timestamps before 1970
        moment = None
    if moment is not None:
        return (moment - _EPOCH) // _MS
    found = _AT_DEBUG.search(repr(node))
    if found is None:
        raise QueryError("cannot read the @ timestamp of the expression")
    return int(found.group(1)) * 1000 + int(found.group(2)) // 1_000_000


def matcher_groups(selector: pp.VectorSelector) -> list[list[Matcher]]:
    """The selector's matchers; several groups when it uses `or` inside the braces."""
    groups = selector.matchers.or_matchers or [selector.matchers.matchers]
    out = []
    for group in groups:
        matchers = [_matcher(m) for m in group]
        if selector.name:
            matchers.insert(0, Matcher.of(METRIC_NAME, MatchOp.EQ, selector.name))
        out.append(matchers)
    return out


def _matcher(m: pp.Matcher) -> Matcher:
    op = _MATCH_OPS[str(m.op)]
    value = scoped_flags(m.value) if op in (MatchOp.RE, MatchOp.NRE) else m.value
    try:
        return Matcher.of(m.name, op, value)
    except re.error as exc:
        raise QueryError(f"invalid regular expression {m.value!r}: {exc}") from None


_FLAG_GROUP = re.compile(r"\(\?([imsU-]+)\)")


def scoped_flags(pattern: str) -> str:
    """Turn RE2's mid-pattern flag groups `(?i)` into Python's scoped `(?i:…)` groups.

    In RE2 a flag group applies up to the end of the enclosing group; Python only accepts
    flags at the very start, so the rest of the enclosing group is wrapped instead.
    """
    out: list[str] = []
    closers = [0]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
        elif c == "[":
            end = _class_end(pattern, i)
            out.append(pattern[i:end])
            i = end
        elif (flags := _FLAG_GROUP.match(pattern, i)) is not None:
            out.append(f"(?{flags.group(1).replace('U', '')}:")
            closers[-1] += 1
            i = flags.end()
        else:
            if c == "(":
                closers.append(0)
            elif c == ")" and len(closers) > 1:
                out.append(")" * closers.pop())
            out.append(c)
            i += 1
    out.append(")" * closers[-1])
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """Index just past the character class that opens at `start`."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return min(i + 1, len(pattern))


def unwrap_parens(node: pp.Expr) -> pp.Expr:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node
