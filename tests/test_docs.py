"""Facts that live in code are checked against the docs, so the docs never drift."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from opsmetrics.clock import ALLOW_FAKE_NOW_ENV, FAKE_NOW_ENV
from opsmetrics.settings import env_names

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`(OPSMETRICS_[A-Z_]+)`", text))
    assert set(env_names()) <= documented, set(env_names()) - documented
    client_and_test_only = {
        "OPSMETRICS_CONFORMANCE_DIR",
        "OPSMETRICS_URL",
        "OPSMETRICS_TOKEN",
        FAKE_NOW_ENV,
        ALLOW_FAKE_NOW_ENV,
    }
    assert documented - client_and_test_only <= set(env_names())


def _figures(text: str) -> list[str]:
    """The decimal numbers between <!-- BENCHMARKS.md --> and <!-- /BENCHMARKS.md -->."""
    blocks = re.findall(r"<!-- BENCHMARKS\.md -->(.*?)<!-- /BENCHMARKS\.md -->", text, re.S)
    # ×1.35 and ±6 describe the data, not a measurement
    return [n for block in blocks for n in re.findall(r"(?<![\w.×±])\d+\.\d+(?![\w.])", block)]


def test_figures_quoted_from_benchmarks_match_it() -> None:
    """A figure the docs quote from BENCHMARKS.md is there, as written or rounded from it."""
    measured = [float(n) for n in re.findall(r"\d+\.\d+", (ROOT / "BENCHMARKS.md").read_text())]
    quoted = {p.name: _figures(p.read_text()) for p in [ROOT / "README.md", *DOCS.glob("*.md")]}
    assert sum(map(len, quoted.values())) >= 30, quoted  # the marked blocks are still there
    stale = {
        name: [n for n in numbers if not _is_rounding_of_one(n, measured)]
        for name, numbers in quoted.items()
    }
    assert {k: v for k, v in stale.items() if v} == {}


def _is_rounding_of_one(text: str, measured: list[float]) -> bool:
    places = len(text.split(".")[1])
    return any(round(m, places) == float(text) for m in measured)


def test_readme_names_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_every_http_route_is_documented(tmp_path: Path) -> None:
    from opsmetrics.clock import FakeClock
    from opsmetrics.services import open_services
    from opsmetrics.settings import Settings
    from opsmetrics.web.app import create_app

    services = open_services(Settings(data_dir=tmp_path), FakeClock())
    try:
        app = create_app(services)
        # FastAPI groups included routers in one route each: its OpenAPI schema lists them all
        # (GET+POST routes, as Prometheus has them, share an operation id: a warning only).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Duplicate Operation ID", UserWarning)
            paths = set(app.openapi()["paths"]) - {"/"}
    finally:
        services.close()
    assert len(paths) > 40  # the schema really lists the API
    text = (ROOT / "docs" / "api.md").read_text()
    assert {p for p in paths if f"`{p}" not in text and f" {p}`" not in text} == set()


def test_every_cli_command_is_documented() -> None:
    import typer.main

    from opsmetrics.cli.main import app

    docs = "\n".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    group = typer.main.get_command(app)
    names = list(group.commands)  # type: ignore[attr-defined]
    assert [n for n in names if f"opsmetrics {n}" not in docs] == []


def test_readme_kpi_example_is_valid(tmp_path: Path) -> None:
    from opsmetrics.catalog.validate import validate_config_dir

    text = (ROOT / "README.md").read_text()
    example = text.split("```yaml\n- name: checkout_conversion_rate", 1)[1].split("```", 1)[0]
    (tmp_path / "kpis").mkdir()
    (tmp_path / "kpis" / "readme.yaml").write_text("- name: checkout_conversion_rate" + example)
    assert validate_config_dir(tmp_path) == []


def test_readme_alert_example_is_valid(tmp_path: Path) -> None:
    from opsmetrics.catalog.validate import validate_config_dir

    text = (ROOT / "README.md").read_text()
    example = text.split("```yaml\n# config/rules/business.yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "business.yaml").write_text(example)
    assert "alert: RevenueBelowBaseline" in example
    assert validate_config_dir(tmp_path) == []
    (tmp_path / "rules" / "business.yaml").write_text(example.replace("for: 10m", "for: ten"))
    assert validate_config_dir(tmp_path) != []
