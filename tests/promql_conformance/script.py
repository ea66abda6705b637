"""The test scripts: their files and their commands (`load`, `clear`, `eval` with expectations)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opsmetrics.model import Labels

from .series import (
    ScriptError,
    SeqValue,
    parse_duration_ms,
    parse_number,
    parse_series_desc,
    unquote,
)

ENV_VAR = "OPSMETRICS_CONFORMANCE_DIR"


def suite_dir() -> Path:
    root = os.environ.get(ENV_VAR)
    testdata = Path(root) if root else Path(__file__).resolve().parents[3] / "shared" / "testdata"
    return testdata / "promql"


SeriesDef = tuple[Labels, list[SeqValue]]


@dataclass(slots=True)
class LoadCmd:
    line: int
    interval_ms: int
    series: list[SeriesDef]
    with_nhcb: bool = False


@dataclass(slots=True)
class ClearCmd:
    line: int


@dataclass(slots=True)
class Expectation:
    """One `expect <kind> [msg|regex]: text` line (or its legacy `eval_<kind>` form)."""

    kind: str  # fail, warn, info, no_warn, no_info, ordered
    message: str | None = None
    regex: str | None = None

    def matches(self, text: str) -> bool:
        if self.message is not None:
            return text == self.message
        return self.regex is None or re.search(self.regex, text) is not None


@dataclass(slots=True)
class EvalCmd:
    line: int
    expr: str
    is_range: bool
    start_ms: int
    end_ms: int  # the evaluation time of an instant query
    step_ms: int = 0
    expects: list[Expectation] = field(default_factory=list)
    series: list[SeriesDef] = field(default_factory=list)
    scalar: float | None = None
    string: str | None = None

    def expecting(self, kind: str) -> list[Expectation]:
        return [e for e in self.expects if e.kind == kind]

    @property
    def ordered(self) -> bool:
        return bool(self.expecting("ordered"))

    @property
    def annotations_expected(self) -> bool:
        return bool(self.expecting("warn") or self.expecting("info"))


Command = LoadCmd | ClearCmd | EvalCmd


@dataclass(slots=True)
class Script:
    path: Path
    commands: list[Command]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def evals(self) -> list[EvalCmd]:
        return [c for c in self.commands if isinstance(c, EvalCmd)]


_LOAD = re.compile(r"^load(?:_(with_nhcb))?\s+(.+?)$")
_EVAL_INSTANT = re.compile(
    r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$"
)
_EVAL_RANGE = re.compile(
    r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$"
)
_EXPECT = re.compile(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
_EXPECT_RANGE = re.compile(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
_EXPECT_STRING = "expect string"


def _clean_lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.split("\n")]
    return ["" if line.startswith("#") else line for line in lines]


def _block(lines: list[str], i: int) -> list[tuple[int, str]]:
    """The lines after line i up to the next blank line, with their 0-based numbers."""
    out = []
    for j in range(i + 1, len(lines)):
        if not lines[j]:
            break
        out.append((j, lines[j]))
    return out


def _parse_load(lines: list[str], i: int) -> tuple[LoadCmd, int]:
    match = _LOAD.match(lines[i])
    if match is None:
        raise ScriptError(f"line {i + 1}: invalid load command {lines[i]!r}")
    cmd = LoadCmd(i + 1, parse_duration_ms(match[2]), [], with_nhcb=bool(match[1]))
    body = _block(lines, i)
    for _, text in body:
        if not text.split(maxsplit=1)[0].endswith("@st"):  # start timestamps: not supported
            cmd.series.append(parse_series_desc(text))
    return cmd, i + len(body)


def _eval_header(text: str, line: int) -> EvalCmd:
    instant = _EVAL_INSTANT.match(text)
    if instant:
        at_ms = parse_duration_ms(instant[2])
        cmd = EvalCmd(line, instant[3], False, at_ms, at_ms)
        legacy = instant[1]
    else:
        ranged = _EVAL_RANGE.match(text)
        if ranged is None:
            raise ScriptError(f"line {line}: invalid eval command {text!r}")
        start, end, step = (parse_duration_ms(ranged[k]) for k in (2, 3, 4))
        cmd = EvalCmd(line, ranged[5], True, start, end, step)
        legacy = ranged[1]
    if legacy:
        cmd.expects.append(Expectation(legacy))
    return cmd


def _parse_expect(cmd: EvalCmd, text: str) -> None:
    match = _EXPECT.match(text)
    if match is None:
        raise ScriptError(f"line {cmd.line}: invalid expect line {text!r}")
    if match[2] == "msg":
        cmd.expects.append(Expectation(match[1], message=match[3].strip()))
    elif match[2] == "regex":
        cmd.expects.append(Expectation(match[1], regex=match[3].strip()))
    else:
        cmd.expects.append(Expectation(match[1]))


def _parse_legacy_failure(cmd: EvalCmd, text: str) -> bool:
    for prefix, attr in (("expected_fail_message", "message"), ("expected_fail_regexp", "regex")):
        if text.startswith(prefix):
            for exp in cmd.expecting("fail"):
                setattr(exp, attr, text.removeprefix(prefix).strip())
            return True
    return False


def _parse_eval_line(cmd: EvalCmd, text: str) -> None:
    if _parse_legacy_failure(cmd, text):
        return
    ranged = _EXPECT_RANGE.match(text)
    if ranged:
        cmd.start_ms, cmd.end_ms, cmd.step_ms = (parse_duration_ms(ranged[k]) for k in (1, 2, 3))
    elif text.startswith(_EXPECT_STRING):
        cmd.string = unquote(text.removeprefix(_EXPECT_STRING).strip())
    elif text.split(" ")[0] == "expect":
        _parse_expect(cmd, text)
    elif (number := parse_number(text)) is not None:
        cmd.scalar = number
    else:
        cmd.series.append(parse_series_desc(text))


def _parse_eval(lines: list[str], i: int) -> tuple[EvalCmd, int]:
    cmd = _eval_header(lines[i], i + 1)
    body = _block(lines, i)
    for j, text in body:
        try:
            _parse_eval_line(cmd, text)
        except ScriptError as exc:
            raise ScriptError(f"line {j + 1}: {exc}") from None
    return cmd, i + len(body)


def parse_script(path: Path) -> Script:
    lines = _clean_lines(path.read_text(encoding="utf-8"))
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        word = lines[i].split(maxsplit=1)[0].lower() if lines[i] else ""
        cmd: Command | None = None
        if word == "clear":
            cmd = ClearCmd(i + 1)
        elif word.startswith("load"):
            cmd, i = _parse_load(lines, i)
        elif word.startswith("eval"):
            cmd, i = _parse_eval(lines, i)
        elif word:
            raise ScriptError(f"{path.name}:{i + 1}: invalid command {lines[i]!r}")
        if cmd is not None:
            commands.append(cmd)
        i += 1
    return Script(path, commands)


def script_paths(names: Sequence[str] = ()) -> list[Path]:
    """The named scripts (`functions`, `functions.test` or a path); all of them by default."""
    if not names:
        return sorted(suite_dir().glob("*.test"))
    paths = []
    for name in names:
        path = Path(name)
        if not path.exists():
            path = suite_dir() / (path.stem + ".test")
        paths.append(path)
    return paths
