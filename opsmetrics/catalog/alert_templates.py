"""Alert label and annotation templates: the Go text/template subset Prometheus rules use.

    {{ $value }}  {{ $labels.instance }}  {{ .Value }}  {{ .Labels.job }}  {{ $externalLabels.x }}
    {{ $value | humanizePercentage }}  {{ printf "%.2f" $value }}  {{- trims -}}
    {{ if gt $value 0.5 }}high{{ else if eq $labels.env "prod" }}prod{{ else }}low{{ end }}

`parse` checks a template once (rule files are validated at load time); `Template.render`
expands it against one alert's data. Output follows Go's formatting (the functions are in
`template_funcs`). Errors are `TemplateError` with Go-like text; the alerting rule shows them
as the annotation text, as Prometheus does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opsmetrics.catalog.alert_template_funcs import FUNCS, TemplateError, go_text, truthy

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[|()])
    )""",
    re.X,
)
_UNSUPPORTED = {"range", "with", "define", "template", "block", "break", "continue"}
_VARIABLES = {"labels": "Labels", "value": "Value", "externalLabels": "ExternalLabels"}


# --- syntax tree ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Operand:
    """A literal, a variable or field chain, a function name, or a parenthesised pipeline."""

    kind: str  # "lit" | "var" | "field" | "func" | "pipe"
    value: Any
    path: tuple[str, ...] = ()


Command = list[Operand]
Pipeline = list[Command]


@dataclass(slots=True)
class Branch:
    condition: Pipeline | None  # None: the `else` branch
    body: list[Node] = field(default_factory=list)


@dataclass(slots=True)
class Node:
    text: str | None = None
    action: Pipeline | None = None
    branches: list[Branch] | None = None


# --- parsing --------------------------------------------------------------------------------
def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _pieces(text: str) -> list[tuple[str, str, int]]:
    """("text", s, line) and ("action", s, line) pieces with {{- -}} trimming applied."""
    pieces: list[tuple[str, str, int]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        chunk = chunk.lstrip() if trim_next else chunk
        pieces.append(("text", chunk.rstrip() if m.group(1) else chunk, 0))
        pieces.append(("action", m.group(2), _line_of(text, m.start())))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = text[pos:]
    if "{{" in tail:
        raise TemplateError(f"{_line_of(text, pos + tail.index('{{'))}: unclosed action")
    pieces.append(("text", tail.lstrip() if trim_next else tail, 0))
    return [p for p in pieces if p[0] == "action" or p[1]]


def _unquote(token: str) -> str:
    body = token[1:-1]
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), "\\" + m.group(1)), body)


def _tokens(source: str, line: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    source = source.rstrip()
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f"{line}: unexpected {source[pos:].strip()[:20]!r} in command")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], line: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.line = line

    def fail(self, message: str) -> TemplateError:
        return TemplateError(f"{self.line}: {message}")

    def pipeline(self, closing: str | None = None) -> Pipeline:
        commands: Pipeline = [[]]
        while self.i < len(self.tokens):
            kind, text = self.tokens[self.i]
            self.i += 1
            if text == ")" and kind == "punct":
                if closing != ")":
                    raise self.fail("unexpected right paren")
                return self._checked(commands)
            if text == "|" and kind == "punct":
                commands.append([])
                continue
            commands[-1].append(self.operand(kind, text))
        if closing is not None:
            raise self.fail("unclosed left paren")
        return self._checked(commands)

    def _checked(self, commands: Pipeline) -> Pipeline:
        if any(not c for c in commands):
            raise self.fail("missing value for command")
        return commands

    def operand(self, kind: str, text: str) -> Operand:
        if kind == "str":
            return Operand("lit", _unquote(text))
        if kind == "raw":
            return Operand("lit", text[1:-1])
        if kind == "num":
            return Operand("lit", float(text) if re.search(r"[.eE]", text) else int(text))
        if kind == "var":
            name, *path = text[1:].split(".")
            return Operand("var", name, tuple(path))
        if kind == "field":
            return Operand("field", None, tuple(p for p in text.split(".") if p))
        if kind == "punct":  # "("
            return Operand("pipe", self.pipeline(")"))
        if text in ("true", "false"):
            return Operand("lit", text == "true")
        if text not in FUNCS:
            raise self.fail(f'function "{text}" not defined')
        return Operand("func", text)


def _keyword(action: str) -> tuple[str, str]:
    word, _, rest = action.strip().partition(" ")
    return word, rest


def parse(text: str, name: str = "template") -> Template:
    """Parse a template; TemplateError names the line and what is wrong."""
    try:
        return Template(_parse_nodes(_pieces(text)), name)
    except TemplateError as exc:
        raise TemplateError(f"template: {name}:{exc.message}") from None
    except RecursionError:  # the parser recurses per nested `(`, `if` and pipeline
        raise TemplateError(f"template: {name}: nested too deeply; flatten it") from None


def _parse_nodes(pieces: list[tuple[str, str, int]]) -> list[Node]:
    root: list[Node] = []
    stack: list[tuple[list[Branch], int]] = []  # open if-blocks
    for kind, text, line in pieces:
        target = stack[-1][0][-1].body if stack else root
        if kind == "text":
            target.append(Node(text=text))
            continue
        word, rest = _keyword(text)
        if word in _UNSUPPORTED:
            raise TemplateError(f"{line}: {word!r} is not supported in alert templates")
        if word == "if":
            branches = [Branch(_parse_pipe(rest, line))]
            target.append(Node(branches=branches))
            stack.append((branches, line))
        elif word in ("else", "end"):
            _close_or_switch(stack, word, rest, line)
        elif text.strip().startswith("/*"):
            continue  # a comment
        else:
            target.append(Node(action=_parse_pipe(text, line)))
    if stack:
        raise TemplateError(f"{stack[-1][1]}: unexpected EOF: `if` without `end`")
    return root


def _close_or_switch(
    stack: list[tuple[list[Branch], int]], word: str, rest: str, line: int
) -> None:
    if not stack:
        raise TemplateError(f"{line}: unexpected {{{{{word}}}}}")
    branches = stack[-1][0]
    if word == "end":
        stack.pop()
        return
    if branches[-1].condition is None:
        raise TemplateError(f"{line}: expected end; found {{{{else}}}}")
    nested, more = _keyword(rest)
    if nested == "if":
        branches.append(Branch(_parse_pipe(more, line)))
    elif rest.strip():
        raise TemplateError(f"{line}: unexpected {rest.strip()!r} after else")
    else:
        branches.append(Branch(None))


def _parse_pipe(source: str, line: int) -> Pipeline:
    tokens = _tokens(source, line)
    if not tokens:
        raise TemplateError(f"{line}: missing value for command")
    return _Parser(tokens, line).pipeline()


# --- evaluation -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertData:
    """What a template can see: the alert's labels and the expression's value."""

    labels: Mapping[str, str]
    value: float
    external_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""

    def dot(self) -> dict[str, Any]:
        return _Struct(
            Labels=dict(self.labels),
            Value=self.value,
            ExternalLabels=dict(self.external_labels),
            ExternalURL=self.external_url,
        )


class _Struct(dict[str, Any]):
    """The template's dot: a missing field is an error (a missing map key is "")."""


@dataclass(frozen=True, slots=True)
class Template:
    nodes: list[Node]
    name: str

    def render(self, data: AlertData) -> str:
        """Expand; TemplateError carries Go-like text (`template: name:1:...`)."""
        out: list[str] = []
        try:
            _render(self.nodes, data.dot(), out)
        except TemplateError as exc:
            raise TemplateError(f"template: {self.name}:{exc.message}") from None
        except RecursionError:
            raise TemplateError(f"template: {self.name}: nested too deeply; flatten it") from None
        return "".join(out)


def expand(text: str, name: str, data: AlertData) -> str:
    """Render, or the error text in Prometheus's words when the template fails."""
    try:
        template = parse(text, name)
    except TemplateError as exc:
        return f"<error expanding template: error parsing template {name}: {exc.message}>"
    try:
        return template.render(data)
    except TemplateError as exc:
        return f"<error expanding template: error executing template {name}: {exc.message}>"


def _render(nodes: list[Node], dot: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        if node.text is not None:
            out.append(node.text)
        elif node.action is not None:
            out.append(go_text(_run(node.action, dot)))
        elif node.branches is not None:
            for branch in node.branches:
                if branch.condition is None or truthy(_run(branch.condition, dot)):
                    _render(branch.body, dot, out)
                    break


def _run(pipeline: Pipeline, dot: dict[str, Any]) -> Any:
    result: Any = None
    for n, command in enumerate(pipeline):
        extra = [result] if n else []
        result = _call(command, dot, extra)
    return result


def _call(command: Command, dot: dict[str, Any], extra: list[Any]) -> Any:
    head, *args = command
    if head.kind != "func":
        if args or extra:
            raise TemplateError("1: can't give argument to non-function")
        return _value(head, dot)
    func: Callable[..., Any] = FUNCS[str(head.value)]
    values = [_value(a, dot) for a in args] + extra
    try:
        return func(*values)
    except TemplateError as exc:
        raise TemplateError(f"1: error calling {head.value}: {exc.message}") from None
    except TypeError:
        raise TemplateError(f"1: wrong number of args for {head.value}") from None


def _value(operand: Operand, dot: dict[str, Any]) -> Any:
    if operand.kind == "lit":
        return operand.value
    if operand.kind == "pipe":
        return _run(operand.value, dot)
    if operand.kind == "func":
        return _call([operand], dot, [])
    if operand.kind == "field":
        return _walk(dot, operand.path)
    name = str(operand.value)
    if name == "":
        return _walk(dot, operand.path)
    if name not in _VARIABLES and name != "externalURL":
        raise TemplateError(f'1: undefined variable "${name}"')
    start = dot["ExternalURL"] if name == "externalURL" else dot[_VARIABLES[name]]
    return _walk(start, operand.path)


#: What a missing map key gives: Prometheus sets missingkey=zero, so a missing label is "".
MISSING = ""


def _walk(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(value, dict):
            raise TemplateError(f"1: can't evaluate field {part} in type {type(value).__name__}")
        if part not in value:
            if not isinstance(value, _Struct):
                return MISSING
            raise TemplateError(f"1: can't evaluate field {part} in type *template.tmplData")
        value = value[part]
    return value
