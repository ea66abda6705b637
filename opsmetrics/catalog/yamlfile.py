"""Config files in YAML, validated by pydantic models, with `file:line: field: message` errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from opsmetrics.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_config_text(path: Path) -> str:
    """A config file's text; ConfigError (`file:line:`) if it cannot be read or is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}:{line}: (document): not valid UTF-8 (byte {exc.start}); save the file as UTF-8"
        ) from None


def parse_model(text: str, source: str, model: type[M]) -> tuple[M, dict[LinePath, int]]:
    """Parse and validate; on failure raise ConfigError listing every problem, one per line."""
    data, lines = read_yaml(text, source)
    try:
        parsed = model.model_validate({} if data is None else data)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda err: line_of(lines, err["loc"]))
        problems = [problem(source, lines, err["loc"], error_message(err)) for err in errors]
        raise ConfigError("\n".join(problems)) from None
    return parsed, lines


def read_yaml(text: str, source: str) -> tuple[Any, dict[LinePath, int]]:
    """The document's data and the line of each of its nodes; ConfigError if it is not YAML."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_shape(node, source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        what = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}:{line}: (document): invalid YAML: {what}") from None
    except RecursionError:  # PyYAML's composer recurses per level of nesting
        raise ConfigError(_too_deep(source, 1)) from None
    return data, _node_lines(node)


#: No config file nests deeper than about ten levels; PyYAML, the line map and the validators
#: recurse per level and fail near a thousand.
MAX_YAML_DEPTH = 64
#: Nodes once aliases are expanded: `&a [*b, *b, …]` chains grow exponentially ("billion
#: laughs"), and validating the expansion took minutes (found by fuzzing).
MAX_YAML_NODES = 100_000


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_shape(root: yaml.Node, source: str) -> None:
    """Refuse documents nested too deeply, too large once aliases are expanded, or that
    contain themselves; every node is visited once (an alias shares its anchor's node)."""
    done: dict[int, tuple[int, int]] = {}  # id(node) → (depth, expanded size)
    open_ids: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            done[id(node)] = _shape_of(node, done, source)
            open_ids.discard(id(node))
        elif id(node) in open_ids:
            line = node.start_mark.line + 1
            raise ConfigError(f"{source}:{line}: (document): an alias refers to its own anchor")
        elif id(node) not in done:
            open_ids.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node) if id(c) not in done)


def _shape_of(node: yaml.Node, done: dict[int, tuple[int, int]], source: str) -> tuple[int, int]:
    kids = [done[id(c)] for c in _children(node)]
    depth = 1 + max((d for d, _ in kids), default=0)
    size = 1 + sum(n for _, n in kids)
    if depth > MAX_YAML_DEPTH:
        raise ConfigError(_too_deep(source, node.start_mark.line + 1))
    if size > MAX_YAML_NODES:
        raise ConfigError(
            f"{source}:{node.start_mark.line + 1}: (document): aliases (*name) expand this "
            f"document to more than {MAX_YAML_NODES:,} values; write the values out instead"
        )
    return depth, size


def _too_deep(source: str, line: int) -> str:
    return (
        f"{source}:{line}: (document): nested more than {MAX_YAML_DEPTH} levels deep; "
        "a config file needs about ten"
    )


LinePath = tuple[str | int, ...]


def _node_lines(node: yaml.Node | None, path: LinePath = ()) -> dict[LinePath, int]:
    """The line of every key and list item, by its path in the document."""
    if node is None:
        return {}
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines.update(_node_lines(value, (*path, str(key.value))))
            lines[(*path, str(key.value))] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_node_lines(item, (*path, i)))
    return lines


def line_of(lines: dict[LinePath, int], loc: tuple[Any, ...]) -> int:
    """The line of the nearest node to `loc` that exists (a missing field: its parent)."""
    path: LinePath = tuple(p for p in loc if isinstance(p, str | int))
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def problem(source: str, lines: dict[LinePath, int], loc: tuple[Any, ...], message: str) -> str:
    return f"{source}:{line_of(lines, loc)}: {_field_name(loc)}: {message}"


def _field_name(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(document)"


def error_message(err: Any) -> str:
    """A pydantic error as a short message for `file:line: field: message`."""
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field; check the spelling (see docs/configuration.md)"
    if kind == "missing":
        return "required field is missing"
    if kind == "model_type":
        return "expected a mapping of fields"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    return str(err["msg"])
