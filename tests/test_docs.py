"""Facts that live in code are checked against the docs, so the docs never drift."""

from __future__ import annotations

import re
from pathlib import Path

from opsmetrics.settings import env_names

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`(OPSMETRICS_[A-Z_]+)`", text))
    assert set(env_names()) <= documented, set(env_names()) - documented
    assert documented - {"OPSMETRICS_CONFORMANCE_DIR", "OPSMETRICS_URL", "OPSMETRICS_TOKEN"} <= set(
        env_names()
    )


def test_readme_names_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
