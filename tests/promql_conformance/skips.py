"""Deciding which cases to skip: those that need native histograms, which we do not store."""

from __future__ import annotations

import re
from typing import Any

from opsmetrics.model import METRIC_NAME, Labels

from .loader import Section
from .script import EvalCmd
from .series import NativeHistogram, format_labels


def _selectors(expr: str) -> list[list[tuple[str, str, str]]] | None:
    """Matcher lists (name, op, value) of every vector selector; None if it does not parse."""
    try:
        import promql_parser

        ast_root = promql_parser.parse(expr)
    except Exception:  # any parser failure: the caller falls back to a coarser rule
        return None
    found: list[list[tuple[str, str, str]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.extend(_matcher_groups(node))

    promql_parser.walk(ast_root, visit)
    return found


def _matcher_groups(node: Any) -> list[list[tuple[str, str, str]]]:
    name = [(METRIC_NAME, "Equal", node.name)] if node.name else []
    groups = [node.matchers.matchers, *(node.matchers.or_matchers or [])]
    return [name + [(m.name, str(m.op).rsplit(".", 1)[-1], m.value) for m in g] for g in groups]


def _matches(labels: Labels, matchers: list[tuple[str, str, str]]) -> bool:
    values = dict(labels)
    for name, op, want in matchers:
        have = values.get(name, "")
        try:
            hit = re.fullmatch(want, have) is not None if op.endswith("Re") else have == want
        except re.error:
            hit = True  # a regex Python cannot read: assume it may match
        if hit == op.startswith("Not"):
            return False
    return True


SKIP_EXPECTED = "native histograms in the expected result"
SKIP_SELECTED = "selects series holding native histograms"
SKIP_SECTION = "native histograms in the data (expression not checkable)"


def skip_reason(cmd: EvalCmd, section: Section) -> tuple[str, str] | None:
    """(category, detail) when the case needs native histograms, which we do not store."""
    if any(isinstance(v, NativeHistogram) for _, seq in cmd.series for v in seq):
        return SKIP_EXPECTED, ""
    if not section.histogram_series:
        return None
    groups = _selectors(cmd.expr)
    if groups is None:  # a syntax error needs no data; anything else may need the histograms
        return None if cmd.expecting("fail") else (SKIP_SECTION, "")
    for matchers in groups:
        for labels in sorted(section.histogram_series):
            if _matches(labels, matchers):
                return SKIP_SELECTED, format_labels(labels)
    return None
