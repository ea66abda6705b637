"""scrape.yaml: Prometheus scrape targets, in the `scrape_configs` format (a subset).

Every problem is reported as `file:line: field: message`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from opsmetrics.catalog.config_fields import ConfigModel, label_names
from opsmetrics.catalog.yamlfile import LinePath, parse_model, problem, read_config_text
from opsmetrics.durations import config_duration_ms
from opsmetrics.errors import ConfigError

_TARGET = re.compile(r"(?:[^/\s:@?#\[\]]+|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?")


def _duration(value: object) -> int:
    ms = config_duration_ms(value, "15s, 1m or 1h30m")
    if ms <= 0:
        raise ValueError("must be longer than 0s")
    return ms


DurationMs = Annotated[int, BeforeValidator(_duration)]


def _target(value: object) -> object:
    if isinstance(value, str) and not _TARGET.fullmatch(value):
        raise ValueError(
            f"{value!r} is not host:port; give the address without scheme or path, "
            "such as localhost:9100"
        )
    return value


class StaticConfig(ConfigModel):
    targets: list[Annotated[str, BeforeValidator(_target)]]
    labels: Annotated[dict[str, str], BeforeValidator(label_names)] = Field(default_factory=dict)


class GlobalConfig(ConfigModel):
    scrape_interval: DurationMs = 60_000
    scrape_timeout: DurationMs = 10_000


class JobConfig(ConfigModel):
    job_name: str = Field(min_length=1)
    scrape_interval: DurationMs | None = None
    scrape_timeout: DurationMs | None = None
    metrics_path: str = Field(default="/metrics", pattern=r"^/")
    scheme: Literal["http", "https"] = "http"
    honor_labels: bool = False
    #: 0 means no limit, as in Prometheus.
    sample_limit: int = Field(default=0, ge=0)
    label_limit: int = Field(default=0, ge=0)
    label_name_length_limit: int = Field(default=0, ge=0)
    label_value_length_limit: int = Field(default=0, ge=0)
    static_configs: list[StaticConfig] = Field(default_factory=list)


class ScrapeConfig(ConfigModel):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    scrape_configs: list[JobConfig] = Field(default_factory=list)

    def interval_ms(self, job: JobConfig) -> int:
        return job.scrape_interval or self.global_.scrape_interval

    def timeout_ms(self, job: JobConfig) -> int:
        # As Prometheus: an unset timeout is the global one, capped at the job's interval.
        if job.scrape_timeout is not None:
            return job.scrape_timeout
        return min(self.global_.scrape_timeout, self.interval_ms(job))


def load_scrape_config(path: Path) -> ScrapeConfig:
    text = read_config_text(path)
    return parse_scrape_config(text, str(path))


def parse_scrape_config(text: str, source: str = "scrape.yaml") -> ScrapeConfig:
    """Validate a scrape.yaml; every problem is reported as `file:line: field: message`."""
    config, lines = parse_model(text, source, ScrapeConfig)
    _check_jobs(config, source, lines)
    return config


def _check_jobs(config: ScrapeConfig, source: str, lines: dict[LinePath, int]) -> None:
    seen: set[str] = set()
    for i, job in enumerate(config.scrape_configs):
        loc: tuple[Any, ...] = ("scrape_configs", i)
        if job.job_name in seen:
            message = f"job_name {job.job_name!r} is used twice; job names must be unique"
            raise ConfigError(problem(source, lines, (*loc, "job_name"), message))
        seen.add(job.job_name)
        if config.timeout_ms(job) > config.interval_ms(job):
            message = "scrape_timeout must not be longer than scrape_interval"
            raise ConfigError(problem(source, lines, (*loc, "scrape_timeout"), message))
