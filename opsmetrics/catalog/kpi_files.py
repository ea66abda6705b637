"""Reading `kpis/*.yaml`: each file is a YAML list of KPIs or `{kpis: [...]}`.

Every KPI is validated on its own, so one broken definition does not hide the problems of the
others; problems are `file:line: <kpi>.<field>: message`.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from opsmetrics.catalog.kpi_checks import Loc, did_you_mean, kpi_problems
from opsmetrics.catalog.kpi_schema import NAME_PATTERN, UNION_TAGS, KpiModel
from opsmetrics.catalog.yamlfile import LinePath, error_message, line_of, read_yaml
from opsmetrics.errors import ConfigError

KPIS_DIR = "kpis"


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    text: str  # the whole `file:line: field: message` line


@dataclass(slots=True)
class Entry:
    """One list item of a KPI file, valid or not."""

    file: str
    lines: dict[LinePath, int]
    base: LinePath  # where the item is in the document: (i,) or ("kpis", i)
    label: str  # the KPI name, or its position when it has no valid name
    raw: Any
    model: KpiModel | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        name = self.raw.get("name") if isinstance(self.raw, dict) else None
        return name if isinstance(name, str) and NAME_PATTERN.fullmatch(name) else None

    def line(self, loc: Loc = ()) -> int:
        return line_of(self.lines, (*self.base, *loc))

    def problem(self, loc: Loc, message: str) -> Problem:
        line = self.line(loc)
        text = f"{self.file}:{line}: {field_text(self.label, loc)}: {message}"
        return Problem(self.file, line, text)


def field_text(label: str, loc: Loc) -> str:
    return label + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def kpi_files(config_dir: Path) -> list[Path]:
    folder = config_dir / KPIS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def read_kpi_file(path: Path) -> tuple[list[Entry], list[Problem]]:
    """The file's entries, each validated alone, and the problems of the file as a whole."""
    source = str(path)
    try:
        data, lines = read_yaml(path.read_text(encoding="utf-8"), source)
    except ConfigError as exc:
        return [], [Problem(source, _line_in(exc.message), exc.message)]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(source, 1, f"{source}:1: (document): cannot read: {exc}")]
    items, base, problems = _items(data, source, lines)
    entries = [_entry(source, lines, (*base, i), item) for i, item in enumerate(items)]
    return entries, problems


def _line_in(message: str) -> int:
    parts = message.split(":")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1


def _items(
    data: Any, source: str, lines: dict[LinePath, int]
) -> tuple[list[Any], LinePath, list[Problem]]:
    if data is None:
        return [], (), []
    if isinstance(data, list):
        return data, (), []
    if isinstance(data, dict) and isinstance(data.get("kpis"), list):
        extra = [k for k in data if k != "kpis"]
        problems = [
            Problem(
                source,
                lines.get((str(k),), 1),
                f"{source}:{lines.get((str(k),), 1)}: "
                f"{k}: unknown field; a KPI file holds only `kpis:`",
            )
            for k in extra
        ]
        return data["kpis"], ("kpis",), problems
    message = "expected a list of KPIs, or `kpis:` with a list of KPIs"
    return [], (), [Problem(source, 1, f"{source}:1: (document): {message}")]


def _entry(source: str, lines: dict[LinePath, int], base: LinePath, raw: Any) -> Entry:
    position = field_text("kpis" if base[0] == "kpis" else "", base[-1:]) if len(base) else ""
    entry = Entry(source, lines, base, position, raw)
    entry.label = entry.name or position
    if not isinstance(raw, dict):
        entry.problems.append(entry.problem((), "expected a mapping with the fields of a KPI"))
        return entry
    try:
        entry.model = KpiModel.model_validate(raw)
    except ValidationError as exc:
        entry.problems += [_pydantic_problem(entry, err) for err in exc.errors()]
        return entry
    entry.problems += [entry.problem(loc, message) for loc, message in kpi_problems(entry.model)]
    return entry


def _pydantic_problem(entry: Entry, err: Any) -> Problem:
    loc: Loc = tuple(p for p in err["loc"] if p not in UNION_TAGS)
    return entry.problem(loc, _message(err, loc))


def _message(err: Any, loc: Loc) -> str:
    if err["type"] == "extra_forbidden" and loc:
        fields = fields_at(KpiModel, loc[:-1])
        hint = did_you_mean(str(loc[-1]), fields) or "; see docs/kpis.md for the fields"
        return f"unknown field{hint}"
    if err["type"] == "enum":
        expected = str(err["ctx"]["expected"]).replace("'", "")
        choices = [c.strip() for c in expected.replace(" or ", ", ").split(",")]
        hint = did_you_mean(str(err["input"]), choices)
        return f"{err['input']!r} is not one of {expected}{hint}"
    return error_message(err)


def fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names (YAML keys) allowed at `loc` inside `model`."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        info = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        current = _model_in(info.annotation) if info is not None else None
    return [] if current is None else [f.alias or n for n, f in current.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
