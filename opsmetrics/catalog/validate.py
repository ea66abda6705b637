"""`opsmetrics validate`: check every file in a config directory, report every problem."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from opsmetrics.catalog.retention import FILE as RETENTION_FILE
from opsmetrics.catalog.retention import load_retention
from opsmetrics.catalog.rules import load_rule_file, rule_files
from opsmetrics.catalog.scrape import load_scrape_config
from opsmetrics.errors import ConfigError

SCRAPE_FILE = "scrape.yaml"


def validate_config_dir(config_dir: Path) -> list[str]:
    """Problems as `file:line: field: message` lines; empty when everything is valid."""
    if not config_dir.is_dir():
        return [f"{config_dir}: not a directory; create it with `opsmetrics init {config_dir}`"]
    problems: list[str] = []
    if (config_dir / RETENTION_FILE).exists():
        problems += _problems(lambda: load_retention(config_dir))
    if (config_dir / SCRAPE_FILE).exists():
        problems += _problems(lambda: load_scrape_config(config_dir / SCRAPE_FILE))
    for path in rule_files(config_dir):
        problems += _problems(partial(load_rule_file, path))
    return problems


def _problems(load: object) -> list[str]:
    assert callable(load)
    try:
        load()
    except ConfigError as exc:
        return exc.message.splitlines()
    return []


STARTER_FILES = {
    RETENTION_FILE: """\
# How long each data class is kept. Durations: 30d, 12w, 2y …
raw_samples: 90d
rollups: 2y
events: 2y
""",
    SCRAPE_FILE: """\
# Prometheus targets that opsmetrics scrapes itself (Prometheus scrape_configs format).
global:
  scrape_interval: 15s
  scrape_timeout: 10s
scrape_configs:
  - job_name: opsmetrics          # opsmetrics' own /metrics
    static_configs:
      - targets: ["127.0.0.1:8800"]
""",
}


def write_starter(config_dir: Path) -> list[Path]:
    """Write the starter files that do not exist yet; returns the files written."""
    config_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in STARTER_FILES.items():
        path = config_dir / name
        if not path.exists():
            path.write_text(text)
            written.append(path)
    return written
