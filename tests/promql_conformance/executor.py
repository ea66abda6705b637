"""Running one case through the engine and judging it: passed, failed or skipped."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from opsmetrics.errors import UserError
from opsmetrics.storage.duckdb import DuckDBStorage

from .compare import (
    Mismatch,
    compare_instant,
    compare_range,
    compare_scalar,
    compare_vector,
    result_kind,
    step_times,
    stepped_matrix,
)
from .loader import Section
from .script import EvalCmd
from .skips import skip_reason


class Status(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class CaseResult:
    file: str
    line: int
    expr: str
    status: Status
    #: Short category (failure kind or skip reason); the detail says expected vs got.
    reason: str = ""
    detail: str = ""
    annotations_unchecked: bool = False


class EngineMissingError(Exception):
    """opsmetrics.query.promql.engine cannot be imported yet."""


def load_engine() -> ModuleType:
    try:
        import opsmetrics.query.promql.engine as engine
    except ImportError as exc:
        raise EngineMissingError(f"opsmetrics.query.promql.engine: {exc}") from exc
    return engine


def evaluate(storage: DuckDBStorage, cmd: EvalCmd) -> Any:
    engine = load_engine()
    if cmd.is_range:
        return engine.evaluate_range(storage, cmd.expr, cmd.start_ms, cmd.end_ms, cmd.step_ms)
    return engine.evaluate_instant(storage, cmd.expr, cmd.end_ms)


def _check_error(cmd: EvalCmd, exc: UserError) -> None:
    failing = cmd.expecting("fail")
    message = getattr(exc, "message", str(exc))
    if not failing:
        raise Mismatch(f"unexpected error ({type(exc).__name__})", message)
    if not failing[0].matches(message):
        want = failing[0].message or failing[0].regex
        raise Mismatch("error message differs", f"want {want!r}\n  got  {message!r}")


def check_case(storage: DuckDBStorage, cmd: EvalCmd) -> None:
    """Raise Mismatch unless the engine does what the case expects."""
    try:
        value = evaluate(storage, cmd)
    except UserError as exc:
        _check_error(cmd, exc)
        return
    except EngineMissingError as exc:
        raise Mismatch("engine not available", str(exc)) from None
    except Exception as exc:  # an engine bug: report it as this case's failure, keep going
        raise Mismatch(f"crash: {type(exc).__name__}", f"{exc!r}") from None
    if cmd.expecting("fail"):
        raise Mismatch("expected an error", f"got a result of type {result_kind(value)}")
    if cmd.is_range:
        compare_range(cmd, value)
    else:
        compare_instant(cmd, value)


Check = Callable[[DuckDBStorage, EvalCmd], None]


_QUERY_CONTEXT = re.compile(r"\b(?:start|end|range|step)\(\)")


def check_range_mode(storage: DuckDBStorage, cmd: EvalCmd) -> None:
    """Prometheus's extra check of instant cases: the middle step of a range query over
    [t-1m, t+1m] gives the same result (catches steps evaluated differently)."""
    exempt = cmd.is_range or cmd.step_ms or cmd.ordered or cmd.string is not None
    if exempt or cmd.expecting("fail") or _QUERY_CONTEXT.search(cmd.expr):
        return
    t = cmd.end_ms
    ranged = EvalCmd(cmd.line, cmd.expr, True, t - 60_000, t + 60_000, 60_000)
    try:
        value = evaluate(storage, ranged)
        matrix = stepped_matrix(value, step_times(ranged))
        rows = [(labels, v) for labels, points in matrix for ts, v in points if ts == t]
        if cmd.scalar is not None:
            compare_scalar(cmd, rows)
        else:
            compare_vector(cmd, rows)
    except Mismatch as exc:
        raise Mismatch(f"range mode: {exc.category}", exc.detail) from None
    except Exception as exc:  # the range query failed where the instant query did not
        raise Mismatch("range mode: error", f"{type(exc).__name__}: {exc}") from None


#: What every case must satisfy; the CLI's --range-mode adds check_range_mode.
DEFAULT_CHECKS: tuple[Check, ...] = (check_case,)


def run_case(script: str, section: Section, cmd: EvalCmd, checks: Sequence[Check]) -> CaseResult:
    base = CaseResult(script, cmd.line, cmd.expr, Status.PASSED)
    skip = skip_reason(cmd, section)
    if skip is not None:
        return replace(base, status=Status.SKIPPED, reason=skip[0], detail=skip[1])
    try:
        for check in checks:
            check(section.storage, cmd)
    except Mismatch as exc:
        return replace(base, status=Status.FAILED, reason=exc.category, detail=exc.detail)
    return replace(base, annotations_unchecked=cmd.annotations_expected)
