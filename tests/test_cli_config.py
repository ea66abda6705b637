"""`opsmetrics init` and `opsmetrics validate`, and the server refusing a broken config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from opsmetrics.catalog.retention import load_retention


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsmetrics", *args], capture_output=True, text=True, timeout=60
    )


def test_init_writes_a_valid_starter(tmp_path: Path) -> None:
    config = tmp_path / "config"
    assert cli("init", str(config)).returncode == 0
    assert (config / "retention.yaml").exists() and (config / "scrape.yaml").exists()
    res = cli("validate", str(config))
    assert res.returncode == 0, res.stdout + res.stderr
    assert load_retention(config).raw_ms == 90 * 86_400_000


def test_validate_lists_every_problem_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "retention.yaml").write_text("raw_samples: 30d\nevents: forever\nbogus: 1\n")
    (config / "scrape.yaml").write_text(
        "scrape_configs:\n  - job_name: x\n    scrape_interval: soon\n"
    )
    res = cli("validate", str(config))
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert any(line.startswith(f"{config}/retention.yaml:2: events:") for line in lines)
    assert any(
        line.startswith(f"{config}/retention.yaml:3: bogus: unknown field") for line in lines
    )
    assert any(
        line.startswith(f"{config}/scrape.yaml:3: scrape_configs[0].scrape_interval:")
        for line in lines
    )


def test_serve_refuses_a_broken_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "retention.yaml").write_text("raw_samples: never\n")
    res = cli("serve", "--config", str(config), "--data", str(tmp_path / "d"), "--port", "1")
    assert res.returncode == 2
    assert "retention.yaml:1: raw_samples" in res.stderr
