"""The standard KPI library behind `use: <name>` + `params: {...}`: the extension point.

Each entry checks its parameters and expands to an ordinary formula of kpi_model.py (event,
promql, ratio, cumulative, conversion, state, or an expr whose names are bound in place), so
the evaluator needs nothing library-specific. The entries live in kpi_library_business.py,
kpi_library_product.py and kpi_library_tech.py; docs/kpi-library.md is generated from them
(`python -m opsmetrics.catalog.kpi_library_docs`). Register more with `register(...)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from opsmetrics.catalog.kpi_library_base import StandardKpi
from opsmetrics.catalog.kpi_library_business import BUSINESS
from opsmetrics.catalog.kpi_library_product import PRODUCT
from opsmetrics.catalog.kpi_library_tech import TECH
from opsmetrics.catalog.kpi_model import Formula, Scalar


class LibraryKpi(Protocol):
    """One standard KPI: checks its parameters and expands to a formula."""

    @property
    def name(self) -> str: ...

    def check(self, params: Mapping[str, Scalar]) -> list[str]:
        """Problems with `params`, each naming the parameter; empty when they are fine."""
        ...

    def expand(self, params: Mapping[str, Scalar]) -> Formula | None:
        """The formula this KPI computes with `params`; None when they do not pass `check`."""
        ...


def _aliases(entries: tuple[StandardKpi, ...]) -> tuple[StandardKpi, ...]:
    """`funnel` is the same entry as `funnel_conversion`."""
    funnel = next(e for e in entries if e.name == "funnel_conversion")
    return (replace(funnel, name="funnel", title="Funnel conversion (alias)"),)


STANDARD: tuple[StandardKpi, ...] = (*BUSINESS, *PRODUCT, *TECH)

LIBRARY: dict[str, LibraryKpi] = {e.name: e for e in (*STANDARD, *_aliases(PRODUCT))}


def register(kpi: LibraryKpi) -> None:
    """Add or replace a standard KPI."""
    LIBRARY[kpi.name] = kpi
