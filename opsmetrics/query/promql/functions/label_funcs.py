"""label_replace, label_join and the sort family (all keep the metric name, as Prometheus)."""

from __future__ import annotations

import functools
import re

import numpy as np

from opsmetrics.model import Labels
from opsmetrics.query.promql.functions._common import (
    instant_arg,
    merge_same_labels,
    string_arg,
    with_label,
)
from opsmetrics.query.promql.values import (
    CallInfo,
    EvalContext,
    InstantVector,
    QueryError,
    Value,
    register,
)

_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_]+")


def compile_anchored(pattern: str) -> re.Pattern[str]:
    """A fully anchored regex with `.` matching newlines, as Prometheus's `^(?s:...)$`."""
    translated = pattern.replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!")
    try:
        return re.compile(translated, re.DOTALL)
    except re.error as exc:
        raise QueryError(
            f"invalid regular expression in label_replace(): {pattern}: {exc}"
        ) from exc


def expand_template(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.Expand: $1, ${1}, $name, ${name}; $$ is a literal dollar."""
    out: list[str] = []
    i = 0
    while i < len(template):
        if template[i] != "$":
            out.append(template[i])
            i += 1
        elif template.startswith("$$", i):
            out.append("$")
            i += 2
        else:
            name, end = _template_ref(template, i + 1)
            # A malformed reference leaves the dollar sign as plain text.
            out.append("$" if name is None else _group_text(match, name))
            i = i + 1 if name is None else end
    return "".join(out)


def _template_ref(template: str, start: int) -> tuple[str | None, int]:
    if start >= len(template):
        return None, start
    if template[start] == "{":
        close = template.find("}", start)
        name = template[start + 1 : close] if close > 0 else ""
        if close < 0 or not _TEMPLATE_NAME.fullmatch(name):
            return None, start
        return name, close + 1
    found = _TEMPLATE_NAME.match(template, start)
    if found is None:
        return None, start
    return found.group(0), found.end()


def _group_text(match: re.Match[str], name: str) -> str:
    """The text of a group; unknown or unmatched groups expand to nothing."""
    try:
        text = match.group(int(name) if name.isdigit() else name)
    except IndexError:
        return ""
    return text or ""


def _valid_label_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return name != ""


def _label_value(labels: Labels, name: str) -> str:
    return next((v for n, v in labels if n == name), "")


@register("label_replace", ("instant", "string", "string", "string", "string"))
def label_replace(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 0)
    dst, repl, src, pattern = (string_arg(args, i) for i in range(1, 5))
    regex = compile_anchored(pattern)
    if not _valid_label_name(dst):
        raise QueryError(f"invalid destination label name in label_replace(): {dst}")
    labels: list[Labels] = []
    for lab in vec.labels:
        match = regex.fullmatch(_label_value(lab, src))
        labels.append(lab if match is None else with_label(lab, dst, expand_template(repl, match)))
    return merge_same_labels(labels, vec.values.copy(), vec.present.copy())


@register("label_join", ("instant", "string", "string", "string"), variadic=True)
def label_join(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    vec = instant_arg(args, 0)
    dst, sep = string_arg(args, 1), string_arg(args, 2)
    sources = [string_arg(args, i) for i in range(3, len(args))]
    if not _valid_label_name(dst):
        raise QueryError(f"invalid destination label name in label_join(): {dst}")
    labels = [
        with_label(lab, dst, sep.join(_label_value(lab, s) for s in sources)) for lab in vec.labels
    ]
    return merge_same_labels(labels, vec.values.copy(), vec.present.copy())


def _reorder(vec: InstantVector, order: list[int]) -> InstantVector:
    ts = vec.sample_ts[order] if vec.sample_ts is not None else None
    return InstantVector([vec.labels[i] for i in order], vec.values[order], vec.present[order], ts)


def _sort_by_value(vec: InstantVector, descending: bool) -> InstantVector:
    """Order rows by their value at the first step; NaN and absent rows last (both directions)."""
    if len(vec) == 0 or vec.values.shape[1] == 0:
        return vec
    col = vec.values[:, 0]
    key = -col if descending else col
    missing = np.isnan(col) | ~vec.present[:, 0]
    order = np.lexsort((key, missing))
    return _reorder(vec, [int(i) for i in order])


@register("sort", ("instant",))
def sort(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _sort_by_value(instant_arg(args, 0), descending=False)


@register("sort_desc", ("instant",))
def sort_desc(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _sort_by_value(instant_arg(args, 0), descending=True)


_CHUNKS = re.compile(r"\d+|\D+")


def natural_key(value: str) -> tuple[tuple[int, int, str], ...]:
    """Digits compare as numbers, everything else as text (Prometheus's natural sort)."""
    return tuple(
        (0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk)
        for chunk in _CHUNKS.findall(value)
    )


def _compare_rows(names: list[str], a: Labels, b: Labels) -> int:
    for name in names:
        ka, kb = natural_key(_label_value(a, name)), natural_key(_label_value(b, name))
        if ka != kb:
            return -1 if ka < kb else 1
    return (a > b) - (a < b)


def _sort_by_labels(args: list[Value], descending: bool) -> InstantVector:
    vec = instant_arg(args, 0)
    names = [string_arg(args, i) for i in range(1, len(args))]

    def compare(i: int, j: int) -> int:
        return _compare_rows(names, vec.labels[i], vec.labels[j])

    order = sorted(range(len(vec)), key=functools.cmp_to_key(compare), reverse=descending)
    return _reorder(vec, order)


@register("sort_by_label", ("instant", "string"), variadic=True)
def sort_by_label(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _sort_by_labels(args, descending=False)


@register("sort_by_label_desc", ("instant", "string"), variadic=True)
def sort_by_label_desc(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    return _sort_by_labels(args, descending=True)
