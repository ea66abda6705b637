"""Running whole scripts: every wanted case against the data loaded before it."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .executor import DEFAULT_CHECKS, CaseResult, Check, Status, run_case
from .loader import Section, StorageFactory
from .script import ClearCmd, EvalCmd, LoadCmd, Script, parse_script

#: The files the issue's bar applies to (classic PromQL: floats and classic histograms).
IN_SCOPE = (
    "aggregators",
    "at_modifier",
    "collision",
    "functions",
    "histograms",
    "literals",
    "operators",
    "range_queries",
    "selectors",
    "staleness",
    "subquery",
    "trig_functions",
)
BAR = 0.95

CaseFilter = Callable[[EvalCmd], bool]


def _everything(cmd: EvalCmd) -> bool:
    return True


def run_script(
    script: Script,
    storages: StorageFactory,
    wanted: CaseFilter = _everything,
    checks: Sequence[Check] = DEFAULT_CHECKS,
) -> list[CaseResult]:
    """Every wanted eval of the script, each against the data loaded before it."""
    results: list[CaseResult] = []
    section = Section(storages)
    try:
        for cmd in script.commands:
            if isinstance(cmd, ClearCmd):
                section.close()
                section = Section(storages)
            elif isinstance(cmd, LoadCmd):
                section.load(cmd)
            elif wanted(cmd):
                results.append(run_case(script.name, section, cmd, checks))
    finally:
        section.close()
    return results


@dataclass(slots=True)
class FileReport:
    name: str
    results: list[CaseResult]
    seconds: float = 0.0

    @property
    def in_scope(self) -> bool:
        return self.name in IN_SCOPE

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def unchecked(self) -> int:
        return sum(1 for r in self.results if r.annotations_unchecked)


def run_file(
    path: Path,
    storages: StorageFactory,
    wanted: CaseFilter = _everything,
    checks: Sequence[Check] = DEFAULT_CHECKS,
) -> FileReport:
    started = time.perf_counter()
    results = run_script(parse_script(path), storages, wanted, checks)
    return FileReport(path.stem, results, time.perf_counter() - started)


def run_files(
    paths: Sequence[Path],
    wanted: CaseFilter = _everything,
    checks: Sequence[Check] = DEFAULT_CHECKS,
) -> list[FileReport]:
    with tempfile.TemporaryDirectory(prefix="promql-conformance-") as tmp:
        storages = StorageFactory(Path(tmp))
        try:
            return [run_file(path, storages, wanted, checks) for path in paths]
        finally:
            storages.close()


def pass_rate(reports: Sequence[FileReport]) -> tuple[int, int]:
    """(passed, evaluated) over the reports; skipped cases are not evaluated."""
    passed = sum(r.count(Status.PASSED) for r in reports)
    return passed, passed + sum(r.count(Status.FAILED) for r in reports)


def in_scope_bar_met(reports: Sequence[FileReport]) -> bool:
    passed, evaluated = pass_rate([r for r in reports if r.in_scope])
    return evaluated > 0 and passed >= BAR * evaluated
