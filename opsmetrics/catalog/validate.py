"""`opsmetrics validate`: check every file in a config directory, report every problem."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from opsmetrics.catalog.dashboards import read_dashboards
from opsmetrics.catalog.experiments import experiment_problems
from opsmetrics.catalog.initiatives import read_initiatives
from opsmetrics.catalog.kpi_alert_files import read_kpi_alert_rules
from opsmetrics.catalog.kpis import read_catalog
from opsmetrics.catalog.notify import NotifyConfig, load_notify
from opsmetrics.catalog.probes import FILE as PROBES_FILE
from opsmetrics.catalog.probes import load_probes_config
from opsmetrics.catalog.protocols import read_protocols
from opsmetrics.catalog.quality import FILE as QUALITY_FILE
from opsmetrics.catalog.quality import load_quality_config
from opsmetrics.catalog.reports import References, read_reports
from opsmetrics.catalog.retention import FILE as RETENTION_FILE
from opsmetrics.catalog.retention import load_retention
from opsmetrics.catalog.rules import load_rule_file, rule_files
from opsmetrics.catalog.scrape import load_scrape_config
from opsmetrics.catalog.sources import read_sources
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
    if (config_dir / PROBES_FILE).exists():
        problems += _problems(lambda: load_probes_config(config_dir / PROBES_FILE))
    if (config_dir / QUALITY_FILE).exists():
        problems += _problems(lambda: load_quality_config(config_dir))
    for path in rule_files(config_dir):
        problems += _problems(partial(load_rule_file, path))
    problems += _problems(lambda: load_notify(config_dir))
    catalog, found = read_catalog(config_dir)
    problems += found
    problems += read_kpi_alert_rules(catalog, config_dir)[1]
    dashboards, found = read_dashboards(config_dir, catalog)
    problems += found
    problems += experiment_problems(config_dir)
    problems += read_protocols(config_dir, catalog.names())[1]
    problems += read_initiatives(config_dir, set(catalog.names()))[1]
    problems += read_sources(config_dir)[1]
    problems += read_reports(config_dir, References(catalog, dashboards, _notify(config_dir)))[1]
    return problems


def _notify(config_dir: Path) -> NotifyConfig | None:
    """notify.yaml for checking report channels; None when it has problems of its own."""
    try:
        return load_notify(config_dir)
    except ConfigError:
        return None


def _problems(load: object) -> list[str]:
    assert callable(load)
    try:
        load()
    except ConfigError as exc:
        return exc.message.splitlines()
    return []


#: The example catalog (shop, SaaS, infrastructure, operations) that `opsmetrics init` copies
#: and `opsmetrics demo` serves; the repository's examples/config links here.
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "demo" / "config"


def example_files() -> list[Path]:
    """The example catalog's files, relative to EXAMPLE_CONFIG, in a stable order."""
    return sorted(
        p.relative_to(EXAMPLE_CONFIG) for p in EXAMPLE_CONFIG.rglob("*.yaml") if p.is_file()
    )


def write_starter(config_dir: Path) -> list[Path]:
    """Copy the example catalog's files that do not exist yet; returns the files written."""
    config_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rel in example_files():
        path = config_dir / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text((EXAMPLE_CONFIG / rel).read_text())
            written.append(path)
    return written
