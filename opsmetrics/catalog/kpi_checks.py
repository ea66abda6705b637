"""What the file models cannot check alone: one formula per definition, thresholds against the
target for the direction, display format, `use:` names; and, over the whole catalog, references
to unknown KPIs and cycles between derived KPIs.

Each check returns `(loc, message)` pairs; loc is the path inside one KPI's mapping.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from opsmetrics.catalog.kpi_build import formula_keys_set
from opsmetrics.catalog.kpi_expr import names_in, parse_expr
from opsmetrics.catalog.kpi_library import LIBRARY
from opsmetrics.catalog.kpi_model import FORMULA_KEYS, Direction, Unit
from opsmetrics.catalog.kpi_schema import InlineFormulaModel, KpiModel

Loc = tuple[str | int, ...]
Found = list[tuple[Loc, str]]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def kpi_problems(model: KpiModel) -> Found:
    """Problems of one definition that passed the file model."""
    return [
        *formula_problems(model, ()),
        *_library_problems(model),
        *_display_problems(model),
        *_target_problems(model),
        *_threshold_problems(model),
    ]


def formula_problems(model: InlineFormulaModel, loc: Loc) -> Found:
    """Exactly one formula here and in every formula written inline inside it."""
    keys = formula_keys_set(model)
    if not keys:
        allowed = FORMULA_KEYS if isinstance(model, KpiModel) else FORMULA_KEYS[:-2]
        return [(loc, f"no formula; set exactly one of {', '.join(allowed)}")]
    if len(keys) > 1:
        message = f"more than one formula ({', '.join(keys)}); keep exactly one"
        return [((*loc, keys[1]), message)]
    found: Found = []
    for sub_loc, inline in _inline_formulas(model, loc):
        found += formula_problems(inline, sub_loc)
    if model.cumulative is not None:
        found += _cumulative_problems(model, (*loc, "cumulative"))
    return found


def _inline_formulas(model: InlineFormulaModel, loc: Loc) -> list[tuple[Loc, InlineFormulaModel]]:
    operands: list[tuple[Loc, object]] = []
    if model.ratio is not None:
        operands += [
            ((*loc, "ratio", "numerator"), model.ratio.numerator),
            ((*loc, "ratio", "denominator"), model.ratio.denominator),
        ]
    if model.cumulative is not None:
        operands.append(((*loc, "cumulative", "of"), model.cumulative.of))
    return [(sub, op) for sub, op in operands if isinstance(op, InlineFormulaModel)]


def _cumulative_problems(model: InlineFormulaModel, loc: Loc) -> Found:
    assert model.cumulative is not None
    window, running = model.cumulative.window, model.cumulative.running
    if window is not None and running:
        return [((*loc, "running"), "set either window or running: true, not both")]
    if window is None and not running:
        return [(loc, "set window (e.g. 30d) for a moving total or running: true")]
    return []


def _library_problems(model: KpiModel) -> Found:
    if model.use is None:
        return [(("params",), "params are only read with `use:`")] if model.params else []
    entry = LIBRARY.get(model.use)
    if entry is None:
        hint = did_you_mean(model.use, LIBRARY) or "; see docs/kpis.md for the library"
        return [(("use",), f"unknown standard KPI {model.use!r}{hint}")]
    return [(("params",), message) for message in entry.check(model.params)]


def _display_problems(model: KpiModel) -> Found:
    if model.unit is Unit.CURRENCY and model.currency is None:
        return [(("unit",), "unit currency needs `currency:` with its code, e.g. currency: EUR")]
    if model.unit is not Unit.CURRENCY and model.currency is not None:
        return [
            (("currency",), f"currency is only for unit: currency (unit is {model.unit.value})")
        ]
    return []


def _target_problems(model: KpiModel) -> Found:
    if not isinstance(model.target, list):
        return []
    if not model.target:
        return [(("target",), "empty list; give a number or steps {from: YYYY-MM-DD, value: …}")]
    found: Found = []
    for i in range(1, len(model.target)):
        if model.target[i].from_ <= model.target[i - 1].from_:
            message = "steps must be in increasing `from` order, one per date"
            found.append((("target", i, "from"), message))
    return found


def _threshold_problems(model: KpiModel) -> Found:
    warning, critical = model.thresholds.warning, model.thresholds.critical
    targets = _target_values(model)
    if model.direction is Direction.TARGET_IS_BEST:
        return _tolerance_problems(warning, critical, targets)
    sign = 1 if model.direction is Direction.HIGHER_IS_BETTER else -1
    word = "≤" if sign == 1 else "≥"
    rule = f"{model.direction.value} needs critical {word} warning {word} target"
    if warning is not None and critical is not None and sign * (warning - critical) < 0:
        return [
            (
                ("thresholds", "critical"),
                f"critical {critical:g} is on the wrong side of warning {warning:g}; {rule}",
            )
        ]
    for name, value in (("warning", warning), ("critical", critical)):
        bad = [t for t in targets if value is not None and sign * (t - value) < 0]
        if bad:
            return [
                (
                    ("thresholds", name),
                    f"{name} {value:g} is on the wrong side of the target {bad[0]:g}; {rule}",
                )
            ]
    return []


def _tolerance_problems(
    warning: float | None, critical: float | None, targets: list[float]
) -> Found:
    found: Found = []
    if (warning is not None or critical is not None) and not targets:
        found.append(
            (
                ("thresholds",),
                "target_is_best needs a target; thresholds are the allowed distance from it",
            )
        )
    for name, value in (("warning", warning), ("critical", critical)):
        if value is not None and value < 0:
            found.append(
                (("thresholds", name), f"{name} is a distance from the target; use a number ≥ 0")
            )
    if warning is not None and critical is not None and critical < warning:
        found.append(
            (
                ("thresholds", "critical"),
                "target_is_best needs warning ≤ critical (distances from the target)",
            )
        )
    return found


def _target_values(model: KpiModel) -> list[float]:
    if model.target is None:
        return []
    if isinstance(model.target, list):
        return [step.value for step in model.target]
    return [float(model.target)]


# --- across the catalog ---------------------------------------------------------------------


def references(model: InlineFormulaModel, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """Every KPI this definition reads by name, with where it is named."""
    found: list[tuple[Loc, str]] = []
    if model.expr is not None:
        found += [((*loc, "expr"), name) for name in names_in(parse_expr(model.expr))]
    operands: list[tuple[Loc, object]] = []
    if model.ratio is not None:
        operands += [
            ((*loc, "ratio", "numerator"), model.ratio.numerator),
            ((*loc, "ratio", "denominator"), model.ratio.denominator),
        ]
    if model.cumulative is not None:
        operands.append(((*loc, "cumulative", "of"), model.cumulative.of))
    for sub, operand in operands:
        if isinstance(operand, str):
            found.append((sub, operand))
        elif isinstance(operand, InlineFormulaModel):
            found += references(operand, sub)
    return found


def unknown_references(refs: list[tuple[Loc, str]], known: Iterable[str]) -> Found:
    names = set(known)
    return [
        (loc, f"unknown KPI {name!r}{did_you_mean(name, names)}")
        for loc, name in refs
        if name not in names
    ]


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each cycle once, as [a, b, …, a], starting from its smallest name."""
    cycles: dict[tuple[str, ...], list[str]] = {}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                ring = path[path.index(nxt) :]
                start = ring.index(min(ring))
                ring = ring[start:] + ring[:start]
                cycles.setdefault(tuple(ring), [*ring, ring[0]])
            elif nxt in graph and nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return [cycles[key] for key in sorted(cycles)]
