"""retention.yaml: how long each data class is kept.

raw_samples: 90d     # raw samples
rollups: 2y          # 5m / 1h rollups (PromQL issue)
events: 2y           # business events
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from opsmetrics.catalog.yamlfile import parse_model, read_config_text
from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import BadDataError
from opsmetrics.storage.base import RetentionPolicy

FILE = "retention.yaml"


class _RetentionFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    raw_samples: str = "90d"
    rollups: str = "2y"
    events: str = "2y"

    @field_validator("raw_samples", "rollups", "events")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            if parse_duration_ms(str(value)) <= 0:
                raise ValueError("must be longer than 0")
        except BadDataError as exc:
            raise ValueError(exc.message.removeprefix("duration: ")) from None
        return str(value)


def load_retention(config_dir: Path | None) -> RetentionPolicy:
    """The policy from config_dir/retention.yaml, or the defaults if there is none."""
    if config_dir is None or not (config_dir / FILE).exists():
        return RetentionPolicy()
    path = config_dir / FILE
    parsed, _ = parse_model(read_config_text(path), str(path), _RetentionFile)
    return RetentionPolicy(
        raw_ms=parse_duration_ms(parsed.raw_samples),
        rollups_ms=parse_duration_ms(parsed.rollups),
        events_ms=parse_duration_ms(parsed.events),
    )
