"""The early check for `sql:` KPIs: one SELECT (or WITH … SELECT) that cannot write.

A strict statement check, not a parser: comments and string literals are blanked out, then the
statement must start with SELECT/WITH, be a single statement, nest at most MAX_SQL_DEPTH
parentheses, and name no keyword that writes or changes state and no function that reads files
or other databases (DuckDB's and ClickHouse's). It gives the author a `file:line` message at
config load; the guard is the storage sandbox (storage/sql_sandbox.py, docs/security.md), which
also stops what this check cannot see, such as a file named as a quoted table.
"""

from __future__ import annotations

import re

from opsmetrics.storage.sql_sources import file_function_refusal

MAX_SQL_LENGTH = 20_000
MAX_SQL_DEPTH = 100

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
        "checkpoint",  # also the checkpoint() table function: on a full disk it invalidates
        "force_checkpoint",
        "vacuum",
        "grant",
        "revoke",
    ]
)
_FILE_READERS = re.compile(
    r"\b(read_\w+|glob|parquet_\w+|sniff_csv|query|query_table|sqlite_\w+|postgres_\w+|"
    r"mysql_\w+|iceberg_\w+|delta_scan|getenv|current_setting|"
    # ClickHouse's table functions, which readonly=1 refuses (file(): storage/sql_sources.py)
    r"fileCluster|url|urlCluster|remote|remoteSecure|cluster|clusterAllReplicas|s3|"
    r"s3Cluster|gcs|azureBlobStorage|hdfs|mysql|postgresql|jdbc|odbc|sqlite|mongodb|redis|"
    r"executable|input|python|deltaLake|iceberg|hudi)\s*\(",
    re.IGNORECASE,
)
#: ClickHouse's server tables (queries of others, users, settings) and DuckDB's catalog.
_SYSTEM_TABLES = re.compile(r"\b(system|information_schema)\s*\.", re.IGNORECASE)
_LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.DOTALL)
_WORD = re.compile(r"[a-zA-Z_]+")


class SqlRefusedError(ValueError):
    """A query that is not a single read-only SELECT."""


def check_read_only(query: str) -> None:
    """Raise SqlRefusedError unless `query` is one read-only SELECT."""
    if len(query) > MAX_SQL_LENGTH:
        raise SqlRefusedError(
            f"query of {len(query)} characters, longer than {MAX_SQL_LENGTH}; shorten it"
        )
    bare = _strip_literals(query).strip().rstrip(";").strip()
    if not bare:
        raise SqlRefusedError("empty query; write a SELECT statement")
    if ";" in bare:
        raise SqlRefusedError("more than one statement; write a single SELECT")
    _check_words(bare)
    _check_sources(query, bare)
    _check_parentheses(bare)


def _check_words(bare: str) -> None:
    words = [w.lower() for w in _WORD.findall(bare)]
    if words[0] not in ("select", "with", "from"):
        raise SqlRefusedError(f"{words[0].upper()} is refused; only a SELECT is allowed")
    writes = sorted(set(words) & _WRITES)
    if writes:
        raise SqlRefusedError(
            f"{writes[0].upper()} is refused: a KPI query must only read (one SELECT)"
        )


def _check_sources(query: str, bare: str) -> None:
    refusal = file_function_refusal(query)
    if refusal:
        raise SqlRefusedError(refusal)
    reader = _FILE_READERS.search(bare)
    if reader:
        raise SqlRefusedError(
            f"{reader.group(1)}() is refused: a KPI query reads the documented views only"
        )
    system = _SYSTEM_TABLES.search(bare)
    if system:
        raise SqlRefusedError(
            f"{system.group(1)}.* tables are refused: a KPI query reads the documented views only"
        )


def _strip_literals(query: str) -> str:
    """Blank out quoted text and comments so their words are not mistaken for SQL keywords."""
    if query.count("'") % 2 or query.count('"') % 2:
        raise SqlRefusedError("unterminated quoted string")
    return _LITERAL.sub(" '' ", query)


def _check_parentheses(text: str) -> None:
    depth = deepest = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
        if depth < 0:
            break
    if depth != 0:
        raise SqlRefusedError("unbalanced parentheses")
    if deepest > MAX_SQL_DEPTH:
        raise SqlRefusedError(
            f"parentheses nested {deepest} deep, more than {MAX_SQL_DEPTH}; flatten the query "
            "(name subqueries with WITH … AS)"
        )
