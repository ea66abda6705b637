"""Runner for the upstream PromQL test scripts (Prometheus promql/promqltest format).

Each script in ../shared/testdata/promql is parsed into commands (`script`, `series`); its data
goes into a fresh DuckDBStorage per section (the start of a file and every `clear`; `loader`),
every `eval` runs through our engine (`executor`) and is compared the way promqltest compares
(`compare`): relative tolerance 1e-6, NaN == NaN, instant results as sets of (labels, value)
unless `ordered`, range results point by point. `runner` runs whole files, `report` renders
the table and the docs/promql.md section.

Cases whose data holds native histograms (`{{...}}` literals, `load_with_nhcb`) are skipped
with the reason (`skips`); `expect warn`/`expect info` annotations are not checked (we produce
none yet) and such cases are counted. Used by tests/test_promql_conformance.py and from the
shell:

    .venv/bin/python -m tests.promql_conformance [--scope] [--match RE] [--line N]
        [--range-mode] [--skips] [--quiet] [--markdown | --write-docs] [file ...]
"""

from __future__ import annotations

from .compare import EPSILON, MIN_NORMAL, Matrix, Mismatch, Points, almost_equal
from .executor import (
    DEFAULT_CHECKS,
    CaseResult,
    Check,
    EngineMissingError,
    Status,
    check_case,
    check_range_mode,
    evaluate,
    load_engine,
    run_case,
)
from .loader import Section, StorageFactory
from .report import (
    DOCS_BEGIN,
    DOCS_END,
    docs_section,
    format_failure,
    format_report,
    format_table,
    markdown_table,
    write_docs,
)
from .runner import (
    BAR,
    IN_SCOPE,
    CaseFilter,
    FileReport,
    in_scope_bar_met,
    pass_rate,
    run_file,
    run_files,
    run_script,
)
from .script import (
    ENV_VAR,
    ClearCmd,
    Command,
    EvalCmd,
    Expectation,
    LoadCmd,
    Script,
    SeriesDef,
    parse_script,
    script_paths,
    suite_dir,
)
from .series import (
    NativeHistogram,
    ScriptError,
    SeqValue,
    expand_token,
    format_labels,
    parse_duration_ms,
    parse_number,
    parse_series_desc,
)
from .skips import SKIP_EXPECTED, SKIP_SECTION, SKIP_SELECTED, skip_reason

__all__ = [
    "BAR",
    "DEFAULT_CHECKS",
    "DOCS_BEGIN",
    "DOCS_END",
    "ENV_VAR",
    "EPSILON",
    "IN_SCOPE",
    "MIN_NORMAL",
    "SKIP_EXPECTED",
    "SKIP_SECTION",
    "SKIP_SELECTED",
    "CaseFilter",
    "CaseResult",
    "Check",
    "ClearCmd",
    "Command",
    "EngineMissingError",
    "EvalCmd",
    "Expectation",
    "FileReport",
    "LoadCmd",
    "Matrix",
    "Mismatch",
    "NativeHistogram",
    "Points",
    "Script",
    "ScriptError",
    "Section",
    "SeqValue",
    "SeriesDef",
    "Status",
    "StorageFactory",
    "almost_equal",
    "check_case",
    "check_range_mode",
    "docs_section",
    "evaluate",
    "expand_token",
    "format_failure",
    "format_labels",
    "format_report",
    "format_table",
    "in_scope_bar_met",
    "load_engine",
    "markdown_table",
    "parse_duration_ms",
    "parse_number",
    "parse_script",
    "parse_series_desc",
    "pass_rate",
    "run_case",
    "run_file",
    "run_files",
    "run_script",
    "script_paths",
    "skip_reason",
    "suite_dir",
    "write_docs",
]
