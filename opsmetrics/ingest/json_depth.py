"""A cheap bound on JSON nesting, checked before a body is parsed.

Python's and msgspec's JSON decoders recurse once per level and give up with a RecursionError
(a crash, not a 400) somewhere near a thousand levels; protobuf's JSON parser does the same.
No body we take needs more than a few levels (OTLP JSON, the deepest, about fifteen), so a
body nested deeper than MAX_JSON_DEPTH is refused with a clear message instead.

The scan works on bytes in C-speed steps: escaped backslashes and quotes are dropped (in a
valid JSON prefix a backslash only ever starts an escape inside a string, and a decoder never
goes past the first syntax error), `translate` keeps only quotes and brackets, and numpy takes
the running depth of the brackets outside strings (an even number of quotes before them), a
slice at a time.
"""

from __future__ import annotations

import numpy as np

from opsmetrics.errors import BadDataError

MAX_JSON_DEPTH = 64
_NOT_KEPT = bytes(b for b in range(256) if b not in b'"[]{}')
_QUOTE = ord('"')
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1
_SLICE = 1 << 20


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data` (0 for a scalar)."""
    kept = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_KEPT)
    codes = np.frombuffer(kept, np.uint8)
    deepest, depth, quotes = 0, 0, 0
    for start in range(0, len(codes), _SLICE):
        part = codes[start : start + _SLICE]
        quoted = (np.cumsum(part == _QUOTE, dtype=np.int64) + quotes) % 2 == 1
        running = np.cumsum(np.where(quoted, 0, _STEP[part]), dtype=np.int64) + depth
        deepest = max(deepest, int(running.max()))
        depth, quotes = int(running[-1]), quotes + int(np.count_nonzero(part == _QUOTE))
    return deepest


def check_json_depth(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse (400) a body nested deeper than `max_depth` before any decoder sees it."""
    depth = json_depth(data)
    if depth > max_depth:
        raise BadDataError(
            f"JSON body is nested {depth} levels deep, more than the limit of {max_depth}; "
            "flatten it (no payload opsmetrics takes needs that many levels)",
            reason="too_deep",
        )
