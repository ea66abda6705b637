"""What the data-quality monitors read from the stores (analysis/quality.py).

Counts per source and time bucket, the newest event per name, and the properties seen on
events with their JSON type. Types are normalised across backends to `string`, `number`,
`boolean` and `null` (an integer and a float are both a number: that is not a change of type).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROP_TYPES = ("string", "number", "boolean", "null")


@dataclass(frozen=True, slots=True)
class NameCount:
    """Rows of one source (an event name, a metric name) in the bucket starting at `bucket`."""

    name: str
    bucket: int
    count: int


@dataclass(frozen=True, slots=True)
class PropTypeCount:
    """Events named `name` whose property `prop` held a value of JSON type `kind`."""

    name: str
    prop: str
    kind: str
    count: int


@dataclass(frozen=True, slots=True)
class PropProfile:
    """Events per name in a window, and the properties they carried, by type."""

    totals: dict[str, int] = field(default_factory=dict)
    props: list[PropTypeCount] = field(default_factory=list)


def prop_kind(engine_type: str) -> str:
    """One of PROP_TYPES for the type name an engine gives a JSON value."""
    t = engine_type.upper()
    if t in ("VARCHAR", "STRING"):
        return "string"
    if t in ("BOOLEAN", "BOOL"):
        return "boolean"
    if t == "NULL":
        return "null"
    return "number"
