"""Versions of KPI definitions: a new version whenever a definition's content hash changes.

`record_versions` runs at server start. Each new version stores the canonical JSON, a unified
diff (YAML) against the previous version, the author (from git when the config dir is a git
repository, else the OS user) and the time; a changed definition also becomes an annotation so
charts show when the definition changed.
"""

from __future__ import annotations

import difflib
import getpass
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from opsmetrics.catalog.kpi_model import KpiDefinition
from opsmetrics.catalog.kpis import Catalog
from opsmetrics.model import Annotation
from opsmetrics.storage.base import KpiVersion, Storage, WriteBatch

#: Who changed a file: git's last author of it, else the OS user.
AuthorOf = Callable[[Path], str]


@dataclass(frozen=True, slots=True)
class VersionChange:
    kpi: str
    version: KpiVersion
    previous: KpiVersion | None


def record_versions(
    catalog: Catalog, storage: Storage, now_ms: int, author: AuthorOf | None = None
) -> list[VersionChange]:
    """Record a version for each KPI that is new or whose definition changed; returns them."""
    author_of = author or git_author
    changes = []
    for kpi in catalog:
        history = storage.kpi_versions(kpi.name)
        previous = history[-1] if history else None
        if previous is not None and previous.hash == kpi.hash:
            continue
        version = new_version(kpi, previous, author_of(Path(kpi.source.file)), now_ms)
        try:
            storage.record_kpi_version(version)
        except ValueError:
            # Another node sharing the state store recorded this version as we started.
            latest = storage.kpi_versions(kpi.name)
            if not latest or latest[-1].hash != kpi.hash:
                raise
            continue
        changes.append(VersionChange(kpi.name, version, previous))
    annotations = [change_annotation(c) for c in changes if c.previous is not None]
    if annotations:
        storage.write(WriteBatch(annotations=annotations))
    return changes


def new_version(
    kpi: KpiDefinition, previous: KpiVersion | None, author: str, now_ms: int
) -> KpiVersion:
    before = _as_yaml(previous.definition) if previous is not None else ""
    label = f"{kpi.name} v{previous.version}" if previous is not None else "/dev/null"
    number = previous.version + 1 if previous is not None else 1
    after = _as_yaml(kpi.definition_json)
    diff = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=label,
        tofile=f"{kpi.name} v{number}",
    )
    return KpiVersion(
        kpi.name, number, kpi.hash, kpi.definition_json, "".join(diff), author, now_ms
    )


def _as_yaml(definition_json: str) -> str:
    text: str = yaml.safe_dump(
        json.loads(definition_json), sort_keys=True, allow_unicode=True, width=100
    )
    return text


def change_annotation(change: VersionChange) -> Annotation:
    v = change.version
    return Annotation(
        id=f"kpi-version:{v.name}:{v.version}",
        ts=v.recorded_ms,
        title=f"KPI {v.name} definition changed (v{v.version}, by {v.author})",
        tags=["kpi-definition", f"kpi:{v.name}"],
        text=v.diff,
    )


def git_author(path: Path) -> str:
    """`git log -1 --format=%an -- FILE` when the file is in a git work tree, else the OS user."""
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%an", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return os_user()
    name = done.stdout.strip()
    return name if done.returncode == 0 and name else os_user()


def os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
