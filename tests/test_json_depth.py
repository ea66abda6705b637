"""The JSON depth pre-scan agrees with the real nesting of any JSON document, whatever its
strings hold (brackets, quotes, backslashes), and refuses past the limit with the number."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsmetrics.errors import BadDataError
from opsmetrics.ingest.json_depth import MAX_JSON_DEPTH, check_json_depth, json_depth

#: Strings made of the characters that could fool a scan: brackets, quotes, backslashes.
TRICKY = st.text(alphabet='[]{}"\\ab\n\u00e9', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=30,
)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@given(JSON_VALUES, st.booleans())
def test_the_scan_finds_the_real_depth(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert json_depth(text.encode()) == depth_of(value)


def test_strings_do_not_hide_or_add_depth() -> None:
    hidden = b'["' + b"]" * 100 + b'",' + b"[" * 70 + b"]" * 70 + b"]"
    assert json_depth(hidden) == 71
    assert json_depth(b'{"a": "\\\\", "b": "[[[[\\"[["}') == 1
    assert json_depth(b"[" * 3 * (1 << 20) + b"]" * 3 * (1 << 20)) == 3 << 20  # several slices


def test_past_the_limit_is_refused_naming_it() -> None:
    check_json_depth(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    with pytest.raises(BadDataError, match="nested 65 levels deep, more than the limit of 64"):
        check_json_depth(b"[" * 65 + b"]" * 65)
