"""Dashboards as code: every `dashboards/*.yaml|yml|json` file, checked against the catalog.

`load_dashboards(config_dir, catalog)` returns the `DashboardSet` or raises ConfigError listing
every problem as `file:line: field: message`; `dashboard_problems` lists them for `opsmetrics
validate`. The name of a dashboard is its file stem. The seed's JSON form
(`{"dashboard_config": {...}}`) is translated to the same schema first (docs/dashboards.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from opsmetrics.catalog.dashboard_schema import (
    WIDGET_TYPES,
    DashboardModel,
    ExperimentWidget,
    FunnelWidget,
    ScatterWidget,
)
from opsmetrics.catalog.dashboard_seed import SEED_KEY, translate_seed
from opsmetrics.catalog.kpi_checks import did_you_mean
from opsmetrics.catalog.kpi_lineage import Dependent
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.catalog.yamlfile import error_message, problem, read_yaml
from opsmetrics.errors import ConfigError, NotFoundError

DASHBOARDS_DIR = "dashboards"
SUFFIXES = (".yaml", ".yml", ".json")
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Dashboard:
    """One dashboard: its name (file stem), where it was read, its spec and widget ids."""

    name: str
    file: str
    spec: DashboardModel
    #: The id of each widget, by (section, index).
    ids: Mapping[tuple[int, int], str]

    @property
    def title(self) -> str:
        return self.spec.title or self.name.replace("_", " ").replace("-", " ").capitalize()

    def widgets(self) -> Iterator[tuple[str, Any]]:
        """(id, widget) of every widget, in order."""
        for i, section in enumerate(self.spec.sections):
            for j, widget in enumerate(section.widgets):
                yield self.ids[(i, j)], widget

    def kpis(self) -> list[str]:
        """The KPIs any widget reads, each once."""
        found = [name for _, widget in self.widgets() for _, name in widget_kpis(widget)]
        return list(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class DashboardSet:
    """All dashboards by name (sorted); a DependentSource for KPI lineage."""

    dashboards: Mapping[str, Dashboard]

    def __iter__(self) -> Iterator[Dashboard]:
        return iter(self.dashboards.values())

    def __len__(self) -> int:
        return len(self.dashboards)

    def get(self, name: str) -> Dashboard:
        try:
            return self.dashboards[name]
        except KeyError:
            hint = did_you_mean(name, self.dashboards)
            raise NotFoundError(f"no dashboard named {name!r}{hint}") from None

    def dependents_of(self, kpi: str) -> list[Dependent]:
        return [Dependent("dashboard", d.name, d.file) for d in self if kpi in d.kpis()]


def widget_kpis(widget: Any) -> list[tuple[Loc, str]]:
    """(location inside the widget, KPI name) of every KPI a widget reads."""
    found: list[tuple[Loc, str]] = []
    if isinstance(widget, ScatterWidget):
        found += [((axis,), getattr(widget, axis).kpi) for axis in ("x", "y")]
        return [(loc + ("kpi",), name) for loc, name in found if name]
    if getattr(widget, "kpi", None):
        found.append((("kpi",), widget.kpi))
    for i, name in enumerate(getattr(widget, "kpis", None) or []):
        found.append((("kpis", i), name))
    return found


def dashboard_files(config_dir: Path) -> list[Path]:
    folder = config_dir / DASHBOARDS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def load_dashboards(config_dir: Path | None, catalog: Catalog) -> DashboardSet:
    """The dashboards of config_dir/dashboards (none without a config dir or folder)."""
    found, problems = read_dashboards(config_dir, catalog)
    if problems:
        raise ConfigError("\n".join(problems))
    return found


def dashboard_problems(config_dir: Path, catalog: Catalog | None) -> list[str]:
    return read_dashboards(config_dir, catalog)[1]


def read_dashboards(
    config_dir: Path | None, catalog: Catalog | None
) -> tuple[DashboardSet, list[str]]:
    """Valid dashboards, and every problem; `catalog=None` skips the KPI name checks."""
    if config_dir is None:
        return DashboardSet({}), []
    dashboards: dict[str, Dashboard] = {}
    problems: list[str] = []
    for path in dashboard_files(config_dir):
        if path.stem in dashboards:
            first = dashboards[path.stem].file
            problems.append(f"{path}:1: (document): duplicate dashboard name; see {first}")
            continue
        dashboard, found = read_dashboard_file(path, catalog)
        problems += found
        if dashboard is not None:
            dashboards[path.stem] = dashboard
    return DashboardSet(dict(sorted(dashboards.items()))), problems


def read_dashboard_file(path: Path, catalog: Catalog | None) -> tuple[Dashboard | None, list[str]]:
    source = str(path)
    try:
        data, lines = read_yaml(path.read_text(encoding="utf-8"), source)
    except ConfigError as exc:
        return None, exc.message.splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{source}:1: (document): cannot read: {exc}"]
    if isinstance(data, dict) and SEED_KEY in data:
        data, lines = translate_seed(data, lines)
    try:
        spec = DashboardModel.model_validate({} if data is None else data)
    except ValidationError as exc:
        errors = [(_error_loc(err), _message(err)) for err in exc.errors()]
        return None, _sorted([problem(source, lines, loc, msg) for loc, msg in errors])
    found, ids = _checks(spec, catalog)
    problems = [problem(source, lines, loc, message) for loc, message in found]
    if problems:
        return None, _sorted(problems)
    return Dashboard(path.stem, f"{source}:1", spec, ids), []


def _sorted(problems: list[str]) -> list[str]:
    def line(text: str) -> int:
        parts = text.split(":")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    return sorted(problems, key=line)


def _error_loc(err: Any) -> Loc:
    loc = _loc(err["loc"])
    return (*loc, "type") if err["type"] == "union_tag_invalid" else loc


def _loc(loc: tuple[Any, ...]) -> Loc:
    """pydantic's location without the widget-type tags of the discriminated union."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and part in WIDGET_TYPES and out and isinstance(out[-1], int):
            continue
        out.append(part)
    return tuple(out)


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "union_tag_invalid":
        tag = str(err["ctx"]["tag"])
        hint = did_you_mean(tag, WIDGET_TYPES)
        return f"unknown widget type {tag!r}{hint}; valid types: {', '.join(WIDGET_TYPES)}"
    if kind == "union_tag_not_found":
        return f"every widget needs `type:`, one of {', '.join(WIDGET_TYPES)}"
    if kind == "extra_forbidden":
        return "unknown field; see docs/dashboards.md for the keys of each widget type"
    if kind == "literal_error":
        return f"{err['input']!r} is not one of {err['ctx']['expected']}"
    return error_message(err)


def _checks(
    spec: DashboardModel, catalog: Catalog | None
) -> tuple[list[tuple[Loc, str]], dict[tuple[int, int], str]]:
    """Problems that need the whole file or the catalog; and the widget ids."""
    found: list[tuple[Loc, str]] = []
    ids: dict[tuple[int, int], str] = {}
    seen: set[str] = set()
    for i, section in enumerate(spec.sections):
        for j, widget in enumerate(section.widgets):
            at: Loc = ("sections", i, "widgets", j)
            wid = widget.id or f"s{i}w{j}"
            if wid in seen:
                found.append(((*at, "id"), f"duplicate widget id {wid!r}"))
            seen.add(wid)
            ids[(i, j)] = wid
            if catalog is not None:
                found += [((*at, *loc), msg) for loc, msg in _kpi_problems(widget, catalog)]
            if isinstance(widget, ExperimentWidget) and catalog is not None:
                found += [((*at, "experiment"), m) for m in _experiment_problems(widget, catalog)]
    return found, ids


def _experiment_problems(widget: ExperimentWidget, catalog: Catalog) -> list[str]:
    """An unknown experiment name; nothing when the experiment files do not load (validate
    reports those on their own)."""
    from opsmetrics.catalog.experiments import load_experiments

    try:
        names = list(load_experiments(catalog.config_dir))
    except ConfigError:
        return []
    if widget.experiment in names:
        return []
    hint = did_you_mean(widget.experiment, names) or f"; experiments: {', '.join(names) or 'none'}"
    return [f"unknown experiment {widget.experiment!r}{hint}"]


def _kpi_problems(widget: Any, catalog: Catalog) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    for loc, name in widget_kpis(widget):
        if name not in catalog:
            hint = did_you_mean(name, catalog.names()) or "; see `opsmetrics kpi list`"
            found.append((loc, f"unknown KPI {name!r}{hint}"))
        elif isinstance(widget, FunnelWidget) and conversion_steps(catalog, name) is None:
            found.append((loc, f"KPI {name!r} is not a conversion KPI; give `steps:` instead"))
    return found


def conversion_steps(catalog: Catalog, name: str) -> tuple[list[str], int] | None:
    """The (from, to) events and window of a conversion KPI, or None for other kinds."""
    from opsmetrics.catalog.kpi_library import LIBRARY
    from opsmetrics.catalog.kpi_model import ConversionFormula, LibraryFormula

    formula: Any = catalog.get(name).formula
    if isinstance(formula, LibraryFormula):
        entry = LIBRARY.get(formula.name)
        formula = entry.expand(dict(formula.params)) if entry is not None else None
    if isinstance(formula, ConversionFormula):
        return [formula.from_event, formula.to_event], formula.within_ms
    return None
