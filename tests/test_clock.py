"""The test-only server clock (OPSMETRICS_FAKE_NOW) and the check that keeps tests off the wall
clock (tests/clock_lint.py)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from opsmetrics.clock import (
    ALLOW_FAKE_NOW_ENV,
    FAKE_NOW_ENV,
    ShiftedClock,
    SystemClock,
    clock_from_env,
    pause,
)
from opsmetrics.errors import BadDataError, ConfigError
from tests.clock_lint import offenders

#: Monday 2026-12-07 00:46 UTC.
NOW = 1_796_604_360_000


def test_no_fake_now_is_the_system_clock() -> None:
    assert isinstance(clock_from_env({}), SystemClock)
    assert isinstance(clock_from_env({FAKE_NOW_ENV: "  "}), SystemClock)


def test_fake_now_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match=f"test-only.*{ALLOW_FAKE_NOW_ENV}=1"):
        clock_from_env({FAKE_NOW_ENV: "2026-12-07T00:46:00Z"})
    with pytest.raises(ConfigError):
        clock_from_env({FAKE_NOW_ENV: "2026-12-07T00:46:00Z", ALLOW_FAKE_NOW_ENV: "yes"})


def test_fake_now_starts_there_and_runs_at_real_speed() -> None:
    for text in ("2026-12-07T00:46:00Z", "1796604360"):
        clock = clock_from_env({FAKE_NOW_ENV: text, ALLOW_FAKE_NOW_ENV: "1"})
        assert isinstance(clock, ShiftedClock)
        first = clock.now_ms()
        assert NOW <= first < NOW + 5_000
        pause(0.05)
        assert clock.now_ms() - first >= 50


def test_a_bad_fake_now_names_the_variable() -> None:
    with pytest.raises(BadDataError, match=FAKE_NOW_ENV):
        clock_from_env({FAKE_NOW_ENV: "tomorrow", ALLOW_FAKE_NOW_ENV: "1"})


def test_pause_waits() -> None:
    started = time.monotonic()
    pause(0.05)
    assert time.monotonic() - started >= 0.05
    pause(-1)  # a negative wait is no wait, as with time.sleep(0)


def test_clock_lint_finds_unmarked_wall_clock_tests(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("import time\ndef stamp():\n    return time.time()\n")
    (tmp_path / "test_x.py").write_text(
        textwrap.dedent(
            """
            import datetime, time
            import pytest
            from tests.helpers import stamp

            @pytest.fixture
            def recent():
                return datetime.datetime.now()

            def via_helper():
                return stamp()

            def test_direct():
                assert time.time_ns()

            def test_fixture(recent):
                assert recent

            def test_helper_chain():
                assert via_helper()

            @pytest.mark.clock
            def test_marked():
                assert time.time()

            def test_monotonic_is_fine():
                assert time.monotonic()
            """
        )
    )
    found = {line.split(": ")[1].split()[0] for line in offenders(tmp_path)}
    assert found == {"test_direct", "test_fixture", "test_helper_chain"}


def test_clock_lint_accepts_a_module_mark(tmp_path: Path) -> None:
    (tmp_path / "test_y.py").write_text(
        "import time\nimport pytest\npytestmark = [pytest.mark.e2e, pytest.mark.clock]\n"
        "def test_a():\n    assert time.time()\n"
    )
    assert offenders(tmp_path) == []
