"""The KPI catalog: every `kpis/*.yaml` definition, checked as a whole (docs/kpis.md).

`load_catalog(config_dir)` returns the `Catalog` or raises ConfigError listing every problem as
`file:line: <kpi>.<field>: message`; `catalog_problems` lists them for `opsmetrics validate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from opsmetrics.catalog.kpi_build import build_kpi
from opsmetrics.catalog.kpi_checks import (
    did_you_mean,
    find_cycles,
    references,
    unknown_references,
)
from opsmetrics.catalog.kpi_files import Entry, Problem, kpi_files, read_kpi_file
from opsmetrics.catalog.kpi_lineage import (
    Dependent,
    DependentSource,
    InputKind,
    Lineage,
    LineageInput,
    formula_inputs,
)
from opsmetrics.catalog.kpi_model import KpiDefinition, SourceRef
from opsmetrics.errors import ConfigError, NotFoundError


@dataclass(frozen=True, slots=True)
class Catalog:
    """All KPIs by name (sorted), each with the file:line it was defined at."""

    kpis: Mapping[str, KpiDefinition]
    config_dir: Path | None = None

    def __iter__(self) -> Iterator[KpiDefinition]:
        return iter(self.kpis.values())

    def __len__(self) -> int:
        return len(self.kpis)

    def __contains__(self, name: object) -> bool:
        return name in self.kpis

    def names(self) -> list[str]:
        return list(self.kpis)

    def get(self, name: str) -> KpiDefinition:
        """The KPI called `name`; NotFoundError (with a suggestion) if there is none."""
        try:
            return self.kpis[name]
        except KeyError:
            hint = did_you_mean(name, self.kpis)
            raise NotFoundError(f"no KPI named {name!r}{hint}") from None

    def inputs(self, name: str) -> list[LineageInput]:
        """What the KPI reads directly: series selectors, events, views, other KPIs."""
        return formula_inputs(self.get(name).formula)

    def dependents(self, name: str) -> list[KpiDefinition]:
        """The KPIs that read `name` directly."""
        self.get(name)
        wanted = LineageInput(InputKind.KPI, name)
        return [kpi for kpi in self if wanted in formula_inputs(kpi.formula)]

    def lineage(self, name: str, users: Sequence[DependentSource] = ()) -> Lineage:
        """Inputs and dependents of a KPI; `users` add dashboards, alerts, reports…"""
        found = [Dependent("kpi", kpi.name, str(kpi.source)) for kpi in self.dependents(name)]
        for user in users:
            found += user.dependents_of(name)
        return Lineage(name, tuple(self.inputs(name)), tuple(found))


def load_catalog(config_dir: Path | None) -> Catalog:
    """The catalog of config_dir/kpis/*.yaml (empty without a config dir or kpis folder)."""
    catalog, problems = read_catalog(config_dir)
    if problems:
        raise ConfigError("\n".join(problems))
    return catalog


def catalog_problems(config_dir: Path) -> list[str]:
    return read_catalog(config_dir)[1]


def read_catalog(config_dir: Path | None) -> tuple[Catalog, list[str]]:
    """The KPIs that are valid, and every problem as a `file:line: field: message` line."""
    if config_dir is None:
        return Catalog({}), []
    entries: list[Entry] = []
    problems: list[Problem] = []
    for path in kpi_files(config_dir):
        file_entries, file_problems = read_kpi_file(path)
        entries += file_entries
        problems += file_problems
    unique = _unique(entries)
    _check_references(unique)
    for entry in entries:
        problems += entry.problems
    kpis = {
        e.model.name: build_kpi(e.model, SourceRef(e.file, e.line(("name",))), e.raw)
        for e in unique.values()
        if e.model is not None and not e.problems
    }
    problems.sort(key=lambda p: (p.file, p.line))
    return Catalog(dict(sorted(kpis.items())), config_dir), [p.text for p in problems]


def _unique(entries: list[Entry]) -> dict[str, Entry]:
    """The first entry of each name; later ones get a duplicate problem."""
    first: dict[str, Entry] = {}
    for entry in entries:
        name = entry.name
        if name is None:
            continue
        if name in first:
            where = f"{first[name].file}:{first[name].line(('name',))}"
            message = f"duplicate KPI name; first defined at {where}"
            entry.problems.append(entry.problem(("name",), message))
        else:
            first[name] = entry
    return first


def _check_references(unique: dict[str, Entry]) -> None:
    graph: dict[str, list[str]] = {}
    for name, entry in unique.items():
        if entry.model is None:
            continue
        refs = references(entry.model)
        for loc, message in unknown_references(refs, unique):
            entry.problems.append(entry.problem(loc, message))
        graph[name] = [ref for _, ref in refs if ref in unique]
    for cycle in find_cycles(graph):
        entry = unique[cycle[0]]
        assert entry.model is not None
        loc = next(loc for loc, ref in references(entry.model) if ref == cycle[1])
        message = f"cycle between derived KPIs: {' → '.join(cycle)}"
        entry.problems.append(entry.problem(loc, message))
