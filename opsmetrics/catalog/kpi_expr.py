"""Arithmetic over KPI names (`ltv / cac`, `(a + b) * 100`), parsed safely with `ast`.

Only numbers, names, `+ - * /`, unary minus/plus and parentheses are accepted: anything else
(calls, attributes, subscripts, comparisons, `**`, strings…) is refused. Nothing is ever
evaluated here; the KPI evaluator walks the tree.
"""

from __future__ import annotations

import ast
import enum
import re
from dataclasses import dataclass
from math import isfinite

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_EXPR_LENGTH = 2000


class ExprError(ValueError):
    """An expression that is not plain arithmetic over KPI names and numbers."""


class BinaryOp(enum.Enum):
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"


@dataclass(frozen=True, slots=True)
class Number:
    value: float


@dataclass(frozen=True, slots=True)
class Name:
    """A reference to another KPI by name."""

    id: str


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary:
    op: BinaryOp
    left: Expr
    right: Expr


Expr = Number | Name | Negate | Binary

_BINARY_OPS: dict[type[ast.operator], BinaryOp] = {
    ast.Add: BinaryOp.ADD,
    ast.Sub: BinaryOp.SUB,
    ast.Mult: BinaryOp.MUL,
    ast.Div: BinaryOp.DIV,
}


def parse_expr(text: str) -> Expr:
    """Parse `text`; raise ExprError saying what is not allowed."""
    if not text.strip():
        raise ExprError("empty expression; write arithmetic over KPI names, e.g. 'ltv / cac'")
    if len(text) > MAX_EXPR_LENGTH:
        raise ExprError(f"expression longer than {MAX_EXPR_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"cannot parse {_short(text)}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ExprError(f"cannot parse {_short(text)}") from None
    try:
        return _convert(tree.body)
    except RecursionError:
        raise ExprError(f"{_short(text)} is nested too deeply") from None


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _convert(node: ast.expr) -> Expr:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        return Binary(_BINARY_OPS[type(node.op)], _convert(node.left), _convert(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _convert(node.operand)
        return Negate(inner) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.Name) and _NAME.fullmatch(node.id):
        return Name(node.id)
    if isinstance(node, ast.Constant) and _is_number(node.value):
        assert isinstance(node.value, int | float)
        return Number(float(node.value))
    raise ExprError(
        f"{_describe(node)} is not allowed; use only KPI names, numbers, + - * / and parentheses"
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and isfinite(value)


def _describe(node: ast.expr) -> str:
    if isinstance(node, ast.BinOp):
        return f"operator {ast.unparse(node).strip()!r}"
    return f"{type(node).__name__.lower()} {_short(ast.unparse(node))}"


def names_in(expr: Expr) -> list[str]:
    """The KPI names an expression reads, in order of first appearance."""
    found: dict[str, None] = {}
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Name):
            found.setdefault(node.id, None)
        elif isinstance(node, Negate):
            stack.append(node.operand)
        elif isinstance(node, Binary):
            stack += [node.right, node.left]
    return list(found)
