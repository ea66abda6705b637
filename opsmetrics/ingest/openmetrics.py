"""The strict OpenMetrics 1.0 text decoder.

A target that claims OpenMetrics and breaks a rule of the spec is told which line and which
rule, so it gets fixed at the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.exposition_lexer import LABEL_ESCAPES, line_error, show, unescape
from opsmetrics.ingest.exposition_series import HISTOGRAM_TYPES, SampleRows, series_labels
from opsmetrics.ingest.openmetrics_lexer import (
    OMSample,
    om_lines,
    parse_om_sample,
    seconds_to_ms,
)
from opsmetrics.ingest.openmetrics_rules import (
    RULES,
    SUFFIXES,
    Family,
    HistogramPoint,
    check_exemplar_allowed,
)
from opsmetrics.model import METRIC_NAME, Labels, MetricType, SampleBatch

_OM_DESCRIPTOR = re.compile(r"# (HELP|TYPE|UNIT) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)")
_UNIT = re.compile(r"[a-zA-Z0-9_:]*")
_OM_TYPES = {t.value: t for t in MetricType}


def parse_openmetrics(text: str, default_ts_ms: int) -> DecodedSamples:
    return _OpenMetricsParser(default_ts_ms).parse(text)


@dataclass(slots=True)
class _Group:
    """The samples of one labelled metric in a family: all must be contiguous."""

    key: Labels
    point: HistogramPoint | None = None


class _OpenMetricsParser:
    def __init__(self, default_ts_ms: int) -> None:
        self._default_ts_ms = default_ts_ms
        self._rows = SampleRows()
        self._families: dict[str, Family] = {}
        #: Sample name → the family that owns it, so families cannot clash.
        self._owners: dict[str, str] = {}
        self._family: Family | None = None
        self._group: _Group | None = None
        self._seen_groups: set[Labels] = set()
        self._last_ts: dict[Labels, Decimal | None] = {}

    def parse(self, text: str) -> DecodedSamples:
        lines = om_lines(text)
        for number, line in enumerate(lines, 1):
            if not line:
                raise line_error(number, "blank lines are not allowed in OpenMetrics")
            if line.startswith("#"):
                self._descriptor(line, number)
            else:
                self._sample(parse_om_sample(line, number), number)
        self._finish_family()
        metadata = [f.metadata() for f in self._families.values() if f.has_metadata()]
        return DecodedSamples(self._rows.build(), metadata, SampleBatch.empty())

    # --- metadata lines ---
    def _descriptor(self, line: str, number: int) -> None:
        match = _OM_DESCRIPTOR.fullmatch(line)
        if match is None:
            raise line_error(number, _descriptor_problem(line))
        kind, name, rest = match.groups()
        family = self._family_for_metadata(name, number)
        if kind == "HELP":
            self._set_help(family, rest, number)
        elif kind == "TYPE":
            self._set_type(family, rest, number)
        else:
            self._set_unit(family, rest, number)

    def _family_for_metadata(self, name: str, number: int) -> Family:
        family = self._family
        if family is None or family.name != name:
            return self._open_family(name, number)
        if family.sampled:
            raise line_error(number, f'metadata for "{name}" must come before its samples')
        return family

    def _set_help(self, family: Family, text: str, number: int) -> None:
        if family.help is not None:
            raise line_error(number, f'second HELP line for "{family.name}"; give one')
        family.help = unescape(text, LABEL_ESCAPES)

    def _set_type(self, family: Family, text: str, number: int) -> None:
        if family.typed:
            raise line_error(number, f'second TYPE line for "{family.name}"; give one')
        if text not in _OM_TYPES:
            raise line_error(
                number,
                f'unknown metric type "{text}" for "{family.name}"; use counter, gauge, '
                "histogram, gaugehistogram, summary, info, stateset or unknown",
            )
        family.type, family.typed = _OM_TYPES[text], True
        self._check_unit_allowed(family, number)
        self._claim(family, number)

    def _set_unit(self, family: Family, unit: str, number: int) -> None:
        if family.unit is not None:
            raise line_error(number, f'second UNIT line for "{family.name}"; give one')
        if not _UNIT.fullmatch(unit):
            raise line_error(number, f"invalid unit {show(unit)}; use letters, digits and _")
        if unit and not family.name.endswith("_" + unit):
            raise line_error(
                number, f'metric "{family.name}" must end with "_{unit}" to have unit "{unit}"'
            )
        family.unit = unit
        self._check_unit_allowed(family, number)

    def _check_unit_allowed(self, family: Family, number: int) -> None:
        if family.unit and family.type in (MetricType.INFO, MetricType.STATESET):
            raise line_error(number, f"{family.describe()} cannot have a unit")

    # --- families ---
    def _open_family(self, name: str, number: int) -> Family:
        if name in self._families:
            raise line_error(
                number,
                f'metric family "{name}" appears again after other lines; keep each '
                "family's lines together",
            )
        self._finish_family()
        family = self._families[name] = self._family = Family(name)
        self._claim(family, number)
        return family

    def _claim(self, family: Family, number: int) -> None:
        for suffix in ("", *SUFFIXES[family.type]):
            owner = self._owners.setdefault(family.name + suffix, family.name)
            if owner != family.name:
                raise line_error(
                    number,
                    f'metric family "{family.name}" clashes with the earlier family "{owner}" '
                    f'over the name "{family.name + suffix}"; keep each family\'s samples '
                    "together and their names distinct",
                )

    def _finish_family(self) -> None:
        self._finish_group()
        self._seen_groups.clear()

    # --- samples ---
    def _sample(self, sample: OMSample, number: int) -> None:
        family, suffix = self._family_for_sample(sample.name, number)
        RULES[family.type](family, suffix, sample, number)
        if sample.exemplar:
            check_exemplar_allowed(family, suffix, number)
        labels = series_labels(sample.name, sample.labels, _float_label(family.type, suffix))
        self._track_group(family, suffix, sample, _group_key(family, labels), number)
        self._check_order(labels, sample, number)
        family.sampled = True
        ts = self._default_ts_ms if sample.ts is None else seconds_to_ms(sample.ts)
        self._rows.add(labels, ts, sample.value)

    def _family_for_sample(self, name: str, number: int) -> tuple[Family, str]:
        family = self._family
        suffix = None if family is None else family.suffix_of(name)
        if family is None or suffix is None:
            return self._open_family(name, number), ""
        return family, suffix

    def _track_group(
        self, family: Family, suffix: str, sample: OMSample, key: Labels, number: int
    ) -> None:
        group = self._group
        if group is None or group.key != key:
            if key in self._seen_groups:
                raise line_error(
                    number,
                    f"samples of {family.describe()} with labels {dict(key)} are not "
                    "contiguous; keep the samples of one labelled metric together",
                )
            self._finish_group()
            group = self._group = _Group(key)
            self._seen_groups.add(key)
        if family.type in HISTOGRAM_TYPES:
            point = group.point
            if point is None or point.ts != sample.ts:
                if point is not None:
                    point.finish()
                point = group.point = HistogramPoint(family, sample.ts)
            point.add(suffix, sample, number)

    def _finish_group(self) -> None:
        if self._group is not None and self._group.point is not None:
            self._group.point.finish()
        self._group = None

    def _check_order(self, labels: Labels, sample: OMSample, number: int) -> None:
        if labels in self._last_ts:
            previous = self._last_ts[labels]
            series = _series_text(sample.name, sample.labels)
            if previous is None or sample.ts is None:
                raise line_error(
                    number,
                    f"second sample for {series}; repeated samples of a series need timestamps",
                )
            if sample.ts < previous:
                raise line_error(
                    number,
                    f"timestamp {sample.ts} of {series} is before the previous one "
                    f"({previous}); timestamps must not go backwards",
                )
        self._last_ts[labels] = sample.ts


def _float_label(family_type: MetricType, suffix: str) -> str | None:
    """The label whose value is a number that Prometheus stores normalized, if any."""
    if family_type in HISTOGRAM_TYPES and suffix == "_bucket":
        return "le"
    if family_type is MetricType.SUMMARY and suffix == "":
        return "quantile"
    return None


def _group_key(family: Family, labels: Labels) -> Labels:
    """The labels naming one metric of a family: without `le`, `quantile` or the state."""
    if family.type in HISTOGRAM_TYPES:
        skip = "le"
    elif family.type is MetricType.SUMMARY:
        skip = "quantile"
    elif family.type is MetricType.STATESET:
        skip = family.name
    else:
        skip = METRIC_NAME
    return tuple(pair for pair in labels if pair[0] != METRIC_NAME and pair[0] != skip)


def _descriptor_problem(line: str) -> str:
    for kind, what in (("HELP", "help text"), ("TYPE", "type"), ("UNIT", "unit")):
        if line.startswith(f"# {kind}"):
            return f"malformed {kind} line {show(line)}; expected '# {kind} <metric> <{what}>'"
    return (
        f"unexpected comment {show(line)}; OpenMetrics allows only # HELP, # TYPE, # UNIT "
        "and # EOF lines"
    )


def _series_text(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v[:64]}"' for k, v in labels.items())
    return f"{name}{{{inner}}}" if inner else name
