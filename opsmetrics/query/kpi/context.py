"""What every formula evaluation needs: storage, the catalog, the clock and the request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opsmetrics.catalog.kpi_model import Grain
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.query.kpi.model import Period, Values
from opsmetrics.storage.base import Storage

#: Get-or-compute by key: lets callers that evaluate many KPIs at once (a dashboard) compute a
#: KPI's values for a list of periods once, however many formulas read it.
SharedValues = Callable[[Any, Callable[[], Values]], Values]


@dataclass(frozen=True, slots=True)
class EvalContext:
    storage: Storage
    catalog: Catalog
    now_ms: int
    grain: Grain
    tz: str
    by: tuple[str, ...] = ()
    shared: SharedValues | None = None

    def kpi_values(
        self, name: str, periods: Sequence[Period], compute: Callable[[], Values]
    ) -> Values:
        """KPI `name`'s values for `periods`, through `shared` when there is one."""
        if self.shared is None:
            return compute()
        spans = tuple((p.start_ms, p.end_ms) for p in periods)
        return self.shared(("kpi-values", name, spans, self.grain, self.tz, self.by), compute)
