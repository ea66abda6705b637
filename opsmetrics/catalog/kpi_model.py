"""The KPI catalog's records: what a loaded, validated KPI definition is.

These are what the rest of opsmetrics reads (the evaluator compiles `Formula` variants to
storage queries); the YAML file models in kpi_schema.py only decode files into them.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import date

from opsmetrics.catalog.kpi_alerts import KpiAlertSpec
from opsmetrics.catalog.kpi_expr import Expr


class Level(enum.Enum):
    STRATEGIC = "strategic"
    TACTICAL = "tactical"
    OPERATIONAL = "operational"


class Indicator(enum.Enum):
    LEADING = "leading"
    LAGGING = "lagging"


class Unit(enum.Enum):
    PERCENT = "percent"  # stored as a fraction (0.035), shown as 3.5 %
    RATIO = "ratio"
    CURRENCY = "currency"  # amount in major units of `currency` (EUR 12.50)
    COUNT = "count"
    MS = "ms"
    SECONDS = "seconds"
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    BYTES = "bytes"
    SCORE = "score"
    PER_SECOND = "per_second"
    PER_MINUTE = "per_minute"


class Direction(enum.Enum):
    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"
    TARGET_IS_BEST = "target_is_best"


class Cadence(enum.Enum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"


class Grain(enum.Enum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


class EventAgg(enum.Enum):
    COUNT = "count"
    SUM = "sum"
    UNIQUE = "unique"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"

    @property
    def quantile(self) -> float | None:
        """0.95 for p95; None for the aggregations that are not percentiles."""
        return int(self.value[1:]) / 100 if self.value.startswith("p") else None


class StateAgg(enum.Enum):
    """How the per-entity states combine into one value (MRR: sum over customers)."""

    SUM = "sum"
    COUNT = "count"
    AVG = "avg"
    MIN = "min"
    MAX = "max"


class FilterOp(enum.Enum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EXISTS = "exists"


class FieldSource(enum.Enum):
    VALUE = "value"  # the event's numeric `value`
    ENTITY = "entity"  # the event's `entity` id
    PROP = "prop"  # one of the event's `props`


Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class EventField:
    """A field of an event: `value`, `entity` or `props.<name>`."""

    source: FieldSource
    prop: str | None = None

    def __str__(self) -> str:
        return f"props.{self.prop}" if self.source is FieldSource.PROP else self.source.value


@dataclass(frozen=True, slots=True)
class PropFilter:
    """`where` on an event property; `values` has one item except for in / not_in."""

    prop: str
    op: FilterOp
    values: tuple[Scalar, ...]


# --- formula variants -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromqlFormula:
    query: str


@dataclass(frozen=True, slots=True)
class ValueBound:
    """A bound (gt, gte, lt, lte) on the number an event formula reads from its `field`."""

    op: FilterOp
    value: float


@dataclass(frozen=True, slots=True)
class EventFormula:
    """Aggregate events named `name` that pass every `where` filter; `field` is what sum/avg/
    percentiles read (default `value`) or what `unique` counts (default `entity`).
    `value_where` keeps the events whose `field` read as a number passes every bound (the
    library builds it: `nps` with `score: value` counts responses by the event's value)."""

    name: str
    agg: EventAgg
    field: EventField | None = None
    where: tuple[PropFilter, ...] = ()
    value_where: tuple[ValueBound, ...] = ()


@dataclass(frozen=True, slots=True)
class KpiRef:
    """An operand that is another KPI of the catalog, by name."""

    name: str


@dataclass(frozen=True, slots=True)
class RatioFormula:
    numerator: Operand
    denominator: Operand


@dataclass(frozen=True, slots=True)
class ExprFormula:
    """Arithmetic over operands; a `Name` is looked up in `bindings` first, then the catalog.

    `bindings` holds formulas written in place (the standard library expands `nps` to
    `(promoters - detractors) / responses * 100` with each name bound to an event formula).
    """

    source: str
    expr: Expr
    bindings: tuple[tuple[str, Operand], ...] = ()


@dataclass(frozen=True, slots=True)
class CumulativeFormula:
    """A running total of `of` (window_ms None) or a moving total over the last window_ms."""

    of: Operand
    window_ms: int | None


@dataclass(frozen=True, slots=True)
class ConversionFormula:
    """Share of entities with a `from_event` followed by a `to_event` within `within_ms`.

    `entity` is the kind of thing the events' entity id names (user, customer…); when
    `entity_prop` is set the steps are joined on that property instead of the entity id.
    """

    from_event: str
    to_event: str
    within_ms: int
    entity: str = "entity"
    entity_prop: str | None = None


@dataclass(frozen=True, slots=True)
class StateFormula:
    """Each entity's latest `field` from `event` holds until the next one; combined by `agg`."""

    event: str
    field: EventField
    by: EventField
    agg: StateAgg = StateAgg.SUM


@dataclass(frozen=True, slots=True)
class SqlFormula:
    """A read-only SELECT; its first numeric column is the value (see docs/kpis.md)."""

    query: str


@dataclass(frozen=True, slots=True)
class ManualFormula:
    """Values entered by people (POST /api/v1/kpis/{name}/values)."""


@dataclass(frozen=True, slots=True)
class LibraryFormula:
    """`use: <standard KPI>` with its parameters; kpi_library.py expands it."""

    name: str
    params: tuple[tuple[str, Scalar], ...] = ()


Formula = (
    PromqlFormula
    | EventFormula
    | RatioFormula
    | ExprFormula
    | CumulativeFormula
    | ConversionFormula
    | StateFormula
    | SqlFormula
    | ManualFormula
    | LibraryFormula
)
Operand = KpiRef | Formula

#: The formula keys of a KPI definition; exactly one must be set.
FORMULA_KEYS = (
    "promql",
    "event",
    "ratio",
    "expr",
    "cumulative",
    "conversion",
    "state",
    "sql",
    "manual",
    "use",
)


# --- the definition ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetStep:
    """The target in force from `start` (inclusive) until the next step."""

    start: date
    value: float


@dataclass(frozen=True, slots=True)
class Target:
    """A constant target is one step from date.min."""

    steps: tuple[TargetStep, ...]

    def at(self, day: date) -> float | None:
        """The target in force on `day`; None before the first step."""
        current = None
        for step in self.steps:
            if step.start > day:
                break
            current = step.value
        return current

    def values(self) -> list[float]:
        return [s.value for s in self.steps]


@dataclass(frozen=True, slots=True)
class Thresholds:
    warning: float | None = None
    critical: float | None = None


@dataclass(frozen=True, slots=True)
class DisplayFormat:
    currency: str | None = None  # ISO 4217 code, with unit: currency
    decimals: int | None = None


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a definition was read: `file:line` of its `name` (or its list item)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class KpiDefinition:
    name: str
    title: str
    formula: Formula
    source: SourceRef
    #: The definition as written, as canonical JSON: what versions hash and diff.
    definition_json: str
    description: str = ""
    owner: str = ""
    level: Level = Level.OPERATIONAL
    indicator: Indicator = Indicator.LAGGING
    unit: Unit = Unit.COUNT
    display: DisplayFormat = field(default_factory=DisplayFormat)
    direction: Direction = Direction.HIGHER_IS_BETTER
    cadence: Cadence = Cadence.WEEKLY
    grain: Grain = Grain.DAY
    dimensions: tuple[str, ...] = ()
    target: Target | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    tags: tuple[str, ...] = ()
    #: Alert rules declared on the KPI (docs/kpi-alerts.md); not part of the version hash.
    alerts: tuple[KpiAlertSpec, ...] = ()

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON: the identity of this version of the definition."""
        return hashlib.sha256(self.definition_json.encode()).hexdigest()
