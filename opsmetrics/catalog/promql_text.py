"""Parsing PromQL text with promql-parser, after a check that it cannot crash the process.

The parser (Rust) recurses per level of the expression, and a stack overflow there is not an
exception: about 10,000 nested parentheses or chained operators (a 20 KB query) kill the whole
server with SIGSEGV (found by fuzzing). The evaluator recurses per level too and fails near a
thousand. So before parsing, a linear scan bounds the nesting: brackets open at once plus
binary operators, outside string literals, label matchers and comments. Real queries stay far
below it; the deepest in the Prometheus conformance suite needs about twenty.
"""

from __future__ import annotations

import promql_parser

#: Brackets open at once + binary operators: an upper bound of the expression tree's depth.
MAX_PROMQL_DEPTH = 128

_OPENING = {"(": ")", "[": "]"}
_OPERATOR_CHARS = frozenset("+-*/%^<>=!")
_OPERATOR_WORDS = frozenset({"and", "or", "unless", "atan2"})


def parse_promql(text: str) -> promql_parser.Expr:
    """promql_parser.parse, or a ValueError (as the parser raises) for too deep an expression."""
    check_promql_depth(text)
    return promql_parser.parse(text)


def check_promql_depth(text: str) -> None:
    depth = _Scan(text).depth()
    if depth > MAX_PROMQL_DEPTH:
        raise ValueError(
            f"the expression nests {depth} levels deep (brackets and operators), more than "
            f"{MAX_PROMQL_DEPTH}; split it into recording rules"
        )


class _Scan:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def depth(self) -> int:
        open_now = deepest = operators = 0
        in_operator = False
        while self.i < len(self.text):
            c = self.text[self.i]
            if c in "\"'`{#":
                self._skip(c)
                in_operator = False
                continue
            if c in _OPENING:
                open_now += 1
                deepest = max(deepest, open_now)
            elif c in ")]":
                open_now -= 1
            operators += 1 if c in _OPERATOR_CHARS and not in_operator else 0
            in_operator = c in _OPERATOR_CHARS
            operators += self._word()
        return deepest + operators

    def _word(self) -> int:
        """Count an operator word (`and`, `or`…) that starts here, and step past the word."""
        start = self.i
        while self.i < len(self.text) and (self.text[self.i].isalnum() or self.text[self.i] == "_"):
            self.i += 1
        if self.i == start:
            self.i += 1
            return 0
        return 1 if self.text[start : self.i].lower() in _OPERATOR_WORDS else 0

    def _skip(self, opener: str) -> None:
        """Step past a string literal, a `{…}` of label matchers, or a comment."""
        end = {"{": "}", "#": "\n"}.get(opener, opener)
        self.i += 1
        while self.i < len(self.text) and self.text[self.i] != end:
            if self.text[self.i] == "\\" and opener in "\"'":
                self.i += 1
            elif self.text[self.i] in "\"'" and opener == "{":
                self._skip(self.text[self.i])
                continue
            self.i += 1
        self.i += 1
