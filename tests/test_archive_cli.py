"""`opsmetrics archive export|restore` end to end: the commands as subprocesses, a server on
the source data directory and one on the restored one answering the same queries over HTTP;
and a server with OPSMETRICS_ARCHIVE_BEFORE_RETENTION archiving before its retention deletes."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmetrics.cli.archive import export_range
from opsmetrics.errors import BadDataError
from opsmetrics.storage.archive import TimeRange
from opsmetrics.storage.archive_files import read_manifest
from opsmetrics.storage.base import DAY_MS
from tests.archive_data import DAYS, KPIS, NOW, T0, filled_store
from tests.server import ServerProcess, run_bounded, wait_until

QUERIES = [
    ("rate(http_requests_total[5m])", 300),
    ("max_over_time(http_requests_total[1h])", 3600),
    ("avg_over_time(queue_depth[1h])", 3600),
]
KPI_NAMES = ["orders", "revenue", "queue"]


def cli(*args: str) -> Any:
    done = run_bounded([sys.executable, "-m", "opsmetrics", "archive", *args], 120)
    return done


def answers(srv: ServerProcess) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        for expr, step in QUERIES:
            params = {"query": expr, "start": T0 / 1000, "end": (T0 + DAYS * DAY_MS) / 1000,
                      "step": step}  # fmt: skip
            out[expr] = http.get("/api/v1/query_range", params=params).json()
        for name in KPI_NAMES:
            params = {"from": T0 / 1000, "to": (T0 + DAYS * DAY_MS) / 1000}
            got = http.get(f"/api/v1/kpis/{name}/series", params=params).json()
            out[name] = [(p["t"], p["value"]) for p in got["data"]["points"]]
    return out


@dataclass
class Dirs:
    root: Path
    config: Path
    source: Path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> Dirs:
    root = tmp_path_factory.mktemp("archive-cli")
    (root / "config" / "kpis").mkdir(parents=True)
    (root / "config" / "kpis" / "shop.yaml").write_text(KPIS)
    filled_store(root / "source").close()
    return Dirs(root, root / "config", root / "source")


def serve(data: Path, config: Path, **env: str) -> ServerProcess:
    return ServerProcess(data, config_dir=config, now_ms=NOW, env=env).start()


@pytest.fixture(scope="module")
def before(dirs: Dirs) -> dict[str, Any]:
    """The source server's answers; it is stopped again, as the archive commands need."""
    srv = serve(dirs.source, dirs.config)
    try:
        return answers(srv)
    finally:
        srv.stop()


def test_export_then_restore_answers_the_same_over_http(dirs: Dirs, before: dict[str, Any]) -> None:
    archive, restored = dirs.root / "archive", dirs.root / "restored"
    done = cli("export", "--before", "2026-11-24", "--to", str(archive), "--data", str(dirs.source))
    assert done.returncode == 0, done.stderr
    assert "archive written to" in done.stdout
    assert len(read_manifest(archive).files) > 3 * DAYS - 1
    first = cli("restore", str(archive), "--data", str(restored))
    assert first.returncode == 0, first.stderr
    assert "events 160 added" in first.stdout
    second = cli("restore", str(archive), "--data", str(restored))
    assert "samples 0 added" in second.stdout and "events 0 added" in second.stdout
    srv = serve(restored, dirs.config)
    try:
        after = answers(srv)
    finally:
        srv.stop()
    assert after == before
    assert all(r["data"]["result"] for expr, r in before.items() if expr in dict(QUERIES))
    assert any(v for _, v in before["orders"])


def test_a_damaged_archive_is_refused_naming_the_file(dirs: Dirs) -> None:
    archive = dirs.root / "archive-2"
    done = cli("export", "--since", "2026-11-20", "--until", "2026-11-21", "--to", str(archive),
               "--data", str(dirs.source))  # fmt: skip
    assert done.returncode == 0, done.stderr
    victim = archive / "samples" / "day=2026-11-20" / "part-0.parquet"
    victim.write_bytes(victim.read_bytes()[:-10])
    refused = cli("restore", str(archive), "--data", str(dirs.root / "never"))
    assert refused.returncode == 2
    assert f"{victim}: checksum mismatch" in refused.stderr


def test_bad_ranges_are_refused_with_the_flag_named() -> None:
    with pytest.raises(BadDataError, match="--before and --until"):
        export_range("2026-11-24", None, "2026-11-24")
    with pytest.raises(BadDataError, match="--before: cannot parse 'yesterday'"):
        export_range("yesterday", None, None)
    with pytest.raises(BadDataError, match="--until must be later than --since"):
        export_range(None, "2026-11-24", "2026-11-20")
    assert export_range(None, "2026-11-20", "2026-11-21T12:00:00Z") == TimeRange(
        T0 + DAY_MS, T0 + 2 * DAY_MS + 12 * 3_600_000
    )


def test_a_server_archives_before_its_retention_deletes(dirs: Dirs, tmp_path: Path) -> None:
    data, config = tmp_path / "data", tmp_path / "config"
    shutil.copytree(dirs.source, data)
    shutil.copytree(dirs.config, config)
    (config / "retention.yaml").write_text("raw_samples: 3d\n")
    archives = tmp_path / "archives"
    env = {"OPSMETRICS_ARCHIVE_DIR": str(archives), "OPSMETRICS_ARCHIVE_BEFORE_RETENTION": "1",
           "OPSMETRICS_MAINTENANCE_INTERVAL": "1s"}  # fmt: skip
    srv = serve(data, config, **env)
    try:
        metric = 'opsmetrics_archive_runs_total{outcome="ok"} 1.0'
        wait_until(lambda: metric in httpx.get(srv.url + "/metrics").text, "an archive run")
        (run,) = list(archives.iterdir())
        days = sorted(
            {f.span.start_ms for f in read_manifest(run).files if f.kind.value == "samples"}
        )
        assert days == [T0, T0 + DAY_MS]  # older than NOW - 3d, cut at midnight
        params = {"query": "count_over_time(queue_depth[1d])", "time": (T0 + DAY_MS) / 1000}
        got = httpx.get(srv.url + "/api/v1/query", params=params).json()
        assert got["data"]["result"] == []  # deleted after it was archived
    finally:
        srv.stop()
    # The directory of retention's archives restores as a whole, each archive in turn.
    back = cli("restore", str(archives), "--data", str(tmp_path / "back"))
    assert back.returncode == 0, back.stderr
    assert f"{run}: " in back.stdout and "samples 7200 added" in back.stdout  # 3 + 2 series-days
