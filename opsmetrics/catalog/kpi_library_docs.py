"""docs/kpi-library.md, generated from the library's entries so the docs never drift.

Refresh with `python -m opsmetrics.catalog.kpi_library_docs`; tests/test_kpi_library.py fails
when the file is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from opsmetrics.catalog.kpi_library_base import Param, StandardKpi
from opsmetrics.catalog.kpi_library_business import BUSINESS
from opsmetrics.catalog.kpi_library_product import PRODUCT
from opsmetrics.catalog.kpi_library_tech import TECH

INTRO = """\
# The standard KPI library

`use: <name>` with `params:` defines a KPI from the library instead of writing its formula
(see [kpis.md](kpis.md)). Each entry checks its parameters (`opsmetrics validate` reports
unknown, missing and malformed ones at `file:line`) and expands to ordinary formulas — event
aggregations, PromQL, ratios, running totals, conversions, states, and arithmetic over them —
so it is evaluated, versioned and traced in lineage like any other KPI. The example catalog
(`examples/config/kpis/`, copied by `opsmetrics init`) uses most of them.

```yaml
- name: mrr
  title: Monthly recurring revenue
  owner: finance
  unit: currency
  currency: EUR
  direction: higher_is_better
  use: mrr
  params: {event: subscription_changed, recorded: change}
```

Conventions:

- Money in events is in minor units (cents), as ingest stores it; entries that return money
  divide by `minor_units` (100 by default; 1 when your values are already in major units).
- Subscription entries read `subscription_changed` events as the demo writes them: `value` is
  the change in MRR, `props.change` is `new`, `expansion`, `contraction` or `churn`, and
  contraction and churn carry negative values. "At period start" means the running total up
  to the start of the period: everything since the start of the data.
- Values are per period at the KPI's grain: "in the period" is the period being evaluated;
  PromQL entries are evaluated at the period's end over `window`, so set `window` to the grain
  (`1h` for hourly KPIs, `1d` for daily ones) to cover the whole period.
- Percent entries return fractions (0.35 is shown as 35 %).
- Where an entry's input comes from is a parameter of kind `field`: `value` (the event's
  value), `entity`, or `props.<name>` (a property). `nps` and `csat` read the score from
  `props.score` by default (as before); set `score: value` when responses carry the score as
  the event's value. They count only responses with a score on the scale (whole scores from a
  property, any number in range from the value): a response without a score is excluded and
  reported in `meta.excluded`, not counted as a passive, and a period whose every response
  lacks the score has no value rather than 0.
- Parameters without a default are required.

The worked examples are the fixtures of `tests/test_kpi_library.py`.
"""

GROUPS = (
    ("Revenue and customers", BUSINESS),
    ("Product and shop", PRODUCT),
    ("Service and operations", TECH),
)


def _param_row(p: Param) -> str:
    default = "required" if p.required else f"`{p.default}`" if p.default != "" else "none"
    choices = f" ({' / '.join(p.choices)})" if p.choices else ""
    return f"| `{p.name}` | {p.kind.value}{choices} | {default} | {p.help} |"


def entry_markdown(e: StandardKpi) -> str:
    rows = "\n".join(_param_row(p) for p in e.params)
    return f"""\
### `{e.name}` — {e.title}

Unit: {e.unit}. Formula: {e.formula}.

| parameter | kind | default | meaning |
|---|---|---|---|
{rows}

```yaml
use: {e.name}
params: {e.example}
```

Worked example: {e.worked}
"""


def library_markdown() -> str:
    parts = [INTRO]
    for title, entries in GROUPS:
        parts.append(f"## {title}\n")
        parts += [entry_markdown(e) for e in entries]
    parts.append("`funnel` is another name for `funnel_conversion`.\n")
    return "\n".join(parts)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/kpi-library.md")
    out.write_text(library_markdown())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
