"""The fields config files check alike, so they report problems in the same words: Prometheus
rule groups (rules.py) and KPI alert rules (kpi_alerts.py) take PromQL expressions and label
maps, scrape targets (scrape.py) label names. Use them as pydantic types (`PromQL`, `LabelMap`)
on a `ConfigModel`."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from opsmetrics.catalog.promql_text import parse_promql

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class ConfigModel(BaseModel):
    """A config file's record: unknown keys are errors, numbers may stand for strings."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


def promql_expression(value: object) -> object:
    """A PromQL expression; a bare number is one too (`expr: 1`), as in Prometheus."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a PromQL expression")
    try:
        parse_promql(value)
    except ValueError as exc:
        raise ValueError(f"invalid PromQL {value!r}: {exc}") from None
    return value


def label_names(value: object) -> object:
    """A mapping whose keys are valid label names."""
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str) or not LABEL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid label name")
    return value


def label_map(value: object) -> object:
    """Labels a rule adds: valid label names, and never `__name__` (the series' name)."""
    if isinstance(value, dict) and "__name__" in value:
        raise ValueError("'__name__' names the series and cannot be set as a label")
    return label_names(value)


PromQL = Annotated[str, BeforeValidator(promql_expression)]
LabelMap = Annotated[dict[str, str], BeforeValidator(label_map)]
