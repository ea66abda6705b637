"""The one thing in an `sql:` KPI that no engine setting stops: ClickHouse's scalar `file()`.

`readonly = 1` refuses ClickHouse's table functions (`file`, `url`, `remote`…) but not the
scalar `file(path)`, which returns a file's contents (tried with chdb 26.9: it read /etc/passwd;
a real server reads only under its `user_files_path`). So the query text is searched for it
before it runs, without trusting any idea of where strings and comments are: ClickHouse has
backslash escapes, `#` comments and `$$` heredocs that another dialect's tokenizer would take
for the start of a string and so miss what follows. A call counts whatever whitespace or
comments stand before its parenthesis, and a quoted name called as a function (`"file"(…)`,
`` `\\x66ile`(…) ``) is refused as well, whatever it names. The cost: a string that reads like
such a call (`'file (1)'`) is refused too.
"""

from __future__ import annotations

import re

#: Whitespace or comments, as many as there are, between a name and its parenthesis.
_GAP = r"(?:\s|/\*.*?\*/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$))*"
_FILE_CALL = re.compile(rf"\bfile{_GAP}\(", re.IGNORECASE | re.DOTALL)
_QUOTED_CALL = re.compile(rf"[`\"]{_GAP}\(", re.DOTALL)


def file_function_refusal(query: str) -> str | None:
    """Why `query` is refused for calling file() or a quoted function name; None if not."""
    if _FILE_CALL.search(query):
        return "file() is refused: a KPI query reads the documented views only"
    if _QUOTED_CALL.search(query):
        return "a quoted function name is refused; write function names without quotes"
    return None
