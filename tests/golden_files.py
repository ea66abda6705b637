"""Golden files: rendered output (API JSON, validation messages) compared with a file under
tests/golden/. This is the one helper and `OPSMETRICS_UPDATE_GOLDEN=1` the one flag: run
`OPSMETRICS_UPDATE_GOLDEN=1 pytest` (or just the test file) to rewrite the files from what the
code renders now, then review the diff by hand. Without the flag a missing or different file
fails the test."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).parent / "golden"
REFRESH_FLAG = "OPSMETRICS_UPDATE_GOLDEN"


def refreshing() -> bool:
    """Whether this run rewrites golden files instead of comparing with them."""
    return os.environ.get(REFRESH_FLAG) == "1"


def assert_golden(path: Path, actual: str) -> None:
    """`actual` equals the text of `path`; with the refresh flag, `path` is rewritten."""
    if refreshing():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"{path} is missing; run with {REFRESH_FLAG}=1 to create it"
    assert actual == path.read_text(), f"{path.name} differs; {REFRESH_FLAG}=1 rewrites it"


def assert_golden_json(path: Path, data: Any) -> None:
    """`data` rendered as JSON (two-space indent, keys in their order) equals `path`."""
    assert_golden(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
