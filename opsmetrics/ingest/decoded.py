"""What every sample decoder returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from opsmetrics.model import MetricMetadata, SampleBatch


@dataclass(frozen=True, slots=True)
class DecodedSamples:
    batch: SampleBatch
    metadata: list[MetricMetadata] = field(default_factory=list)
    #: Delta-temporality points (OTLP); the pipeline adds each to the series' last value.
    deltas: SampleBatch = field(default_factory=SampleBatch.empty)
