"""Machine facts for the BENCHMARKS.md sections (imported by the bench scripts)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import duckdb
import numpy as np

PROMETHEUS = "/usr/bin/prometheus"


def machine_facts(load_note: str) -> list[str]:
    """CPU, RAM, versions, the reference Prometheus, and the load when the run started."""
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    ram = f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?"
    return [
        f"- CPU: {cpu.group(1) if cpu else '?'}, {os.cpu_count()} CPUs (nproc); RAM {ram}",
        f"- Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
        f"numpy {np.__version__}, {platform.platform()}",
        f"- Reference: {_prometheus_version()}",
        f"- Load average when the run started: {os.getloadavg()[0]:.1f}{load_note}",
    ]


def write_section(path: Path, heading: str, part: str) -> None:
    """Replace the `## heading` section of BENCHMARKS.md with `part` (or append it)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = re.search(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", text, re.S | re.M)
    if section is None:
        text = text.rstrip("\n") + "\n\n" + part
    else:
        text = text[: section.start()] + part + "\n" + text[section.end() :]
    path.write_text(text)


def _prometheus_version() -> str:
    """Debian's prometheus (`apt-get install prometheus`), or a note that it is not installed."""
    try:
        out = subprocess.run([PROMETHEUS, "--version"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return f"none ({PROMETHEUS} is not installed)"
    return out.splitlines()[0] if out else "prometheus ?"
