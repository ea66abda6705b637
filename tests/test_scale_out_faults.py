"""Faults with remote stores, through the real server.

ClickHouse down: writes are acknowledged only once spooled durably on the node, drain in order
when it is back, and get 503 + Retry-After when the spool is full; /readyz and /metrics show
the spool. PostgreSQL down: ingest keeps working, state changes fail with a clear 503, and
nothing is half-written.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import cramjam
import httpx
import pytest

from opsmetrics.clock import pause
from opsmetrics.ingest.proto import remote_pb2 as pb
from tests.chshim import stop_process
from tests.conftest import FIXED_NOW
from tests.postgres_server import PostgresServer, create_database
from tests.server import ServerProcess, free_port, wait_until

pytestmark = pytest.mark.e2e
RW_HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}
CHSHIM = Path(__file__).with_name("chshim.py")
RETENTION = "raw_samples: 100y\nrollups: 100y\nevents: 100y\n"


class Shim:
    """chshim on a fixed port, so it can be stopped and started again where it was."""

    def __init__(self, path: Path) -> None:
        self.path, self.port = path, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Shim:
        args = [sys.executable, str(CHSHIM), "--path", str(self.path), "--port", str(self.port)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._up, "chshim answering /ping", 60)
        return self

    def _up(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/ping", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)

    def client(self, database: str = "default") -> clickhouse_connect.driver.client.Client:
        return clickhouse_connect.get_client(
            host="127.0.0.1", port=self.port, database=database, compress=False
        )


@pytest.fixture
def shim(tmp_path: Path) -> Iterator[Shim]:
    s = Shim(tmp_path / "ch").start()
    yield s
    s.stop()


def write(url: str, metric: str, start: int, n: int) -> httpx.Response:
    request = pb.WriteRequest()
    series = request.timeseries.add()
    series.labels.add(name="__name__", value=metric)
    for k in range(n):
        series.samples.add(value=float(start + k), timestamp=FIXED_NOW - 600_000 + start + k)
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    return httpx.post(url + "/api/v1/write", content=body, headers=RW_HEADERS, timeout=30)


def config(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    d.mkdir(exist_ok=True)
    (d / "retention.yaml").write_text(RETENTION)  # ClickHouse's TTLs use its real clock
    return d


def spool(url: str) -> dict[str, float]:
    ready = httpx.get(url + "/readyz", timeout=5).json()
    return ready.get("spool", {})


def test_clickhouse_down_spools_then_drains_in_order(tmp_path: Path, shim: Shim) -> None:
    db = "spool_" + uuid.uuid4().hex[:8]
    shim.client().command(f"CREATE DATABASE {db}")
    env = {"OPSMETRICS_STORAGE_URL": f"clickhouse://default:@127.0.0.1:{shim.port}/{db}"}
    srv = ServerProcess(tmp_path / "data", config(tmp_path), env, now_ms=FIXED_NOW).start()
    try:
        assert write(srv.url, "spooled", 0, 10).status_code == 204
        assert spool(srv.url)["batches"] == 0
        shim.stop()
        for k in range(1, 4):  # acknowledged while ClickHouse is down: spooled on the node
            response = write(srv.url, "spooled", k * 10, 10)
            assert response.status_code == 204, response.text
        waiting = spool(srv.url)
        assert waiting["batches"] == 3 and waiting["bytes"] > 0
        assert waiting["oldestAgeSeconds"] is not None
        metrics = httpx.get(srv.url + "/metrics", timeout=10).text
        assert 'opsmetrics_spool{kind="batches"} 3.0' in metrics
        files = list((tmp_path / "data" / "spool").glob("*.batch"))
        assert len(files) == 3  # on disk, fsynced, before the 204
        shim.start()
        wait_until(lambda: spool(srv.url)["batches"] == 0, "the spool drained", 60)
        rows = (
            shim.client(db)
            .query("SELECT ts, value FROM samples FINAL WHERE metric = 'spooled' ORDER BY ts")
            .result_rows
        )
        assert [v for _, v in rows] == [float(i) for i in range(40)]  # all, once, in order
        got = httpx.get(srv.url + "/api/v1/query", params={"query": "count_over_time(spooled[1h])"})
        assert got.json()["data"]["result"][0]["value"][1] == "40"
    except AssertionError:
        print(srv.log()[-4000:])
        raise
    finally:
        srv.kill()


def test_a_full_spool_answers_503_with_retry_after(tmp_path: Path, shim: Shim) -> None:
    db = "full_" + uuid.uuid4().hex[:8]
    shim.client().command(f"CREATE DATABASE {db}")
    env = {
        "OPSMETRICS_STORAGE_URL": f"clickhouse://default:@127.0.0.1:{shim.port}/{db}",
        "OPSMETRICS_MAX_SPOOL_BYTES": "1500",
    }
    srv = ServerProcess(tmp_path / "data", config(tmp_path), env, now_ms=FIXED_NOW).start()
    try:
        shim.stop()
        statuses = [write(srv.url, "full", k * 20, 20) for k in range(6)]
        codes = [r.status_code for r in statuses]
        assert 204 in codes and codes[-1] == 503, codes
        refused = statuses[-1]
        assert refused.headers["retry-after"] == "1"
        assert "spool is full" in refused.json()["error"]
        assert httpx.get(srv.url + "/readyz", timeout=5).status_code == 503
        accepted = codes.count(204)
        shim.start()
        wait_until(lambda: spool(srv.url)["batches"] == 0, "the spool drained", 60)
        [(count,)] = (
            shim.client(db)
            .query("SELECT count() FROM samples FINAL WHERE metric = 'full'")
            .result_rows
        )
        assert count == 20 * accepted  # what was acknowledged, and nothing refused
    except AssertionError:
        print(srv.log()[-4000:])
        raise
    finally:
        srv.kill()


def test_postgresql_down_ingest_goes_on_state_changes_get_503(tmp_path: Path) -> None:
    pg = PostgresServer().init().start()
    try:
        state = create_database(pg.url())
        env = {"OPSMETRICS_STATE_URL": state}
        srv = ServerProcess(tmp_path / "data", config(tmp_path), env, now_ms=FIXED_NOW).start()
        try:
            silence = {
                "matchers": [{"name": "alertname", "value": "X", "isRegex": False}],
                "startsAt": "2020-01-01T00:00:00Z",
                "endsAt": "2999-01-01T00:00:00Z",
                "createdBy": "t",
                "comment": "before",
            }
            assert httpx.post(srv.url + "/api/v1/silences", json=silence).status_code == 200
            pg.stop()
            assert write(srv.url, "during_outage", 0, 10).status_code == 204
            # The state store waits a few seconds for PostgreSQL before it gives up (docs).
            refused = httpx.post(
                srv.url + "/api/v1/silences", json={**silence, "comment": "x"}, timeout=60
            )
            assert refused.status_code == 503, refused.text
            assert f"127.0.0.1:{pg.port}" in refused.json()["error"]
            assert refused.headers["retry-after"] == "1"
            pg.start()
            pause(0.5)
            listed = wait_until(
                lambda: _silences(srv.url), "silences readable again after the restart", 30
            )
            assert [s["comment"] for s in listed] == ["before"]  # the refused one left nothing
            got = httpx.get(
                srv.url + "/api/v1/query", params={"query": "count_over_time(during_outage[1h])"}
            )
            assert got.json()["data"]["result"][0]["value"][1] == "10"
        except AssertionError:
            print(srv.log()[-4000:])
            raise
        finally:
            srv.kill()
    finally:
        pg.remove()


def _silences(url: str) -> list[dict[str, object]] | None:
    response = httpx.get(url + "/api/v1/silences", timeout=10)
    return response.json()["data"] if response.status_code == 200 else None
