"""The read-only check for `sql:` KPIs: one SELECT (or WITH … SELECT) that cannot write.

A strict statement check, not a parser: comments and string literals are blanked out, then the
statement must start with SELECT/WITH, be a single statement, and name no keyword that writes or
changes state and no function that reads files or other databases. The evaluator still runs the
query in a read-only transaction; this check gives the author a `file:line` message first.
"""

from __future__ import annotations

import re

MAX_SQL_LENGTH = 20_000

_WRITES = frozenset(
    [
        "insert",
        "update",
        "delete",
        "merge",
        "upsert",
        "create",
        "drop",
        "alter",
        "truncate",
        "copy",
        "attach",
        "detach",
        "pragma",
        "install",
        "checkpoint",
        "vacuum",
        "grant",
        "revoke",
    ]
)
_FILE_READERS = re.compile(
    r"\b(read_\w+|glob|parquet_\w+|sniff_csv|query|query_table|sqlite_\w+|postgres_\w+|"
    r"mysql_\w+|iceberg_\w+|delta_scan|getenv|current_setting)\s*\(",
    re.IGNORECASE,
)
_LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.DOTALL)
_WORD = re.compile(r"[a-zA-Z_]+")


class SqlRefusedError(ValueError):
    """A query that is not a single read-only SELECT."""


def check_read_only(query: str) -> None:
    """Raise SqlRefusedError unless `query` is one read-only SELECT."""
    if len(query) > MAX_SQL_LENGTH:
        raise SqlRefusedError(f"query longer than {MAX_SQL_LENGTH} characters")
    bare = _strip_literals(query).strip().rstrip(";").strip()
    if not bare:
        raise SqlRefusedError("empty query; write a SELECT statement")
    if ";" in bare:
        raise SqlRefusedError("more than one statement; write a single SELECT")
    words = [w.lower() for w in _WORD.findall(bare)]
    if words[0] not in ("select", "with", "from"):
        raise SqlRefusedError(f"{words[0].upper()} is refused; only a SELECT is allowed")
    writes = sorted(set(words) & _WRITES)
    if writes:
        raise SqlRefusedError(
            f"{writes[0].upper()} is refused: a KPI query must only read (one SELECT)"
        )
    reader = _FILE_READERS.search(bare)
    if reader:
        raise SqlRefusedError(
            f"{reader.group(1)}() is refused: a KPI query reads the documented views only"
        )
    if _unbalanced(bare):
        raise SqlRefusedError("unbalanced parentheses")


def _strip_literals(query: str) -> str:
    """Blank out quoted text and comments so their words are not mistaken for SQL keywords."""
    if query.count("'") % 2 or query.count('"') % 2:
        raise SqlRefusedError("unterminated quoted string")
    return _LITERAL.sub(" '' ", query)


def _unbalanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return True
    return depth != 0
