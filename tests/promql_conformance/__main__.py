"""The command line: `python -m tests.promql_conformance [options] [file ...]`."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .executor import DEFAULT_CHECKS, check_range_mode
from .report import docs_section, format_report, write_docs
from .runner import IN_SCOPE, CaseFilter, in_scope_bar_met, run_files
from .script import EvalCmd, script_paths


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.promql_conformance",
        description="Run the upstream PromQL test scripts against the opsmetrics engine.",
    )
    parser.add_argument(
        "files", nargs="*", help="script names (functions, functions.test) or paths"
    )
    parser.add_argument("--scope", action="store_true", help="only the 12 files the bar covers")
    parser.add_argument("--match", help="only evals whose expression matches this regex")
    parser.add_argument("--line", type=int, action="append", help="only the eval at this line")
    parser.add_argument(
        "--range-mode",
        action="store_true",
        help="also re-run instant cases as range queries (Prometheus's extra check)",
    )
    parser.add_argument("--quiet", action="store_true", help="the table only, no failures")
    parser.add_argument("--skips", action="store_true", help="also list every skipped case")
    parser.add_argument("--markdown", action="store_true", help="print the docs section instead")
    parser.add_argument("--write-docs", action="store_true", help="refresh docs/promql.md")
    return parser.parse_args(argv)


def _case_filter(args: argparse.Namespace) -> CaseFilter:
    pattern = re.compile(args.match) if args.match else None
    lines = set(args.line or ())

    def wanted(cmd: EvalCmd) -> bool:
        return (not lines or cmd.line in lines) and (
            pattern is None or bool(pattern.search(cmd.expr))
        )

    return wanted


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    names = list(args.files) or (list(IN_SCOPE) if args.scope else [])
    started = time.perf_counter()
    checks = (*DEFAULT_CHECKS, check_range_mode) if args.range_mode else DEFAULT_CHECKS
    reports = run_files(script_paths(names), _case_filter(args), checks)
    if args.write_docs:
        write_docs(reports, Path(__file__).resolve().parents[2] / "docs" / "promql.md")
    if args.markdown:
        print(docs_section(reports))
    else:
        print(format_report(reports, failures=not args.quiet, skips=args.skips))
    print(f"{time.perf_counter() - started:.1f}s")
    return 0 if in_scope_bar_met(reports) else 1


if __name__ == "__main__":
    sys.exit(main())
