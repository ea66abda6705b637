"""What every formula evaluation needs: storage, the catalog, the clock and the request."""

from __future__ import annotations

from dataclasses import dataclass

from opsmetrics.catalog.kpi_model import Grain
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.storage.base import Storage


@dataclass(frozen=True, slots=True)
class EvalContext:
    storage: Storage
    catalog: Catalog
    now_ms: int
    grain: Grain
    tz: str
    by: tuple[str, ...] = ()
