"""`opsmetrics storage migrate` end to end: a DuckDB data directory to ClickHouse (through
tests/chshim.py) and its state to PostgreSQL, with the real CLI; run twice, the second run
adds nothing. (Resuming after an interruption: tests/test_migrate.py.)"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import clickhouse_connect
import pytest

from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.postgres import PostgresStateStore
from opsmetrics.storage.token_records import Scope, TokenRecord
from tests.chshim import start_process, stop_process
from tests.postgres_server import pg_state_url, postgres_url  # noqa: F401 - fixtures
from tests.server import run_bounded
from tests.storage_contract import NOW, T0
from tests.test_migrate import DAYS, fill

pytestmark = pytest.mark.e2e


def test_migrate_duckdb_to_clickhouse_and_postgresql(
    tmp_path: Path,
    pg_state_url: str,  # noqa: F811 - a fixture
) -> None:
    src = DuckDBStorage(tmp_path / "src", now_ms=NOW)
    samples, events = fill(src)
    src.save_token(TokenRecord("tok1", "ci", Scope.INGEST, "sha256-x", T0))
    src.close()
    proc, port = start_process(tmp_path / "ch")
    try:
        db = "mig_" + uuid.uuid4().hex[:8]
        ch = clickhouse_connect.get_client(host="127.0.0.1", port=port, compress=False)
        ch.command(f"CREATE DATABASE {db}")
        args = [
            sys.executable, "-m", "opsmetrics", "storage", "migrate",
            "--from", f"duckdb://{tmp_path / 'src'}",
            "--to", f"clickhouse://default:@127.0.0.1:{port}/{db}",
            "--state-from", f"duckdb://{tmp_path / 'src'}", "--state-to", pg_state_url,
            "--since", "2025-12-31T00:00:00Z", "--until", "2026-01-07T00:00:00Z",
            "--checkpoint", str(tmp_path / "cp.json"),
        ]  # fmt: skip
        first = run_bounded(args, 300)
        assert first.returncode == 0, first.stderr
        assert "verified: every day's sample and event counts match" in first.stderr
        assert f"copied {samples} samples of 3 series and {events} events" in first.stderr
        assert not (tmp_path / "cp.json").exists()  # done: the checkpoint is gone
        again = run_bounded(args, 300)
        assert again.returncode == 0, again.stderr
        counts = ch.query(
            f"SELECT (SELECT count() FROM {db}.samples FINAL), "
            f"(SELECT count() FROM {db}.events FINAL), (SELECT count() FROM {db}.series FINAL)"
        ).result_rows
        assert counts == [(samples, events, 3)]  # twice copied, stored once
        state = PostgresStateStore(pg_state_url, now_ms=NOW)
        try:
            assert [t.id for t in state.tokens()] == ["tok1"]
        finally:
            state.close()
        assert samples == DAYS * 3 * 144
    finally:
        stop_process(proc)
