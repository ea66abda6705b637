"""retention.yaml: how long each data class is kept.

raw_samples: 90d     # raw samples
rollups: 2y          # 5m / 1h rollups (PromQL issue)
events: 2y           # business events
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from opsmetrics.durations import parse_duration_ms
from opsmetrics.errors import BadDataError, ConfigError
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
            raise ValueError(exc.message) from None
        return str(value)


def load_retention(config_dir: Path | None) -> RetentionPolicy:
    """The policy from config_dir/retention.yaml, or the defaults if there is none."""
    if config_dir is None or not (config_dir / FILE).exists():
        return RetentionPolicy()
    path = config_dir / FILE
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        parsed = _RetentionFile.model_validate(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {field}: {err['msg']}") from None
    return RetentionPolicy(
        raw_ms=parse_duration_ms(parsed.raw_samples),
        rollups_ms=parse_duration_ms(parsed.rollups),
        events_ms=parse_duration_ms(parsed.events),
    )
