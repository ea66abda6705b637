"""Two opsmetrics server processes on one ClickHouse and one PostgreSQL.

ClickHouse is its own engine (chdb) behind tests/chshim.py, our HTTP front, which one process
runs so that both servers reach the same engine through clickhouse-connect's HTTP transport;
PostgreSQL is Debian's, started by tests/postgres_server.py. Both servers get interleaved
remote_write, the same events and the same alert rules; afterwards every series has one id,
every event is stored once, every alert was notified once, and both answer queries alike.
Then the node holding the alerting lease is killed: the other takes over, notifies what is new,
and repeats nothing.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import cramjam
import httpx
import msgspec
import pytest

from opsmetrics.clock import pause
from opsmetrics.ingest.proto import remote_pb2 as pb
from opsmetrics.storage.lease import RENEW_MS, TTL_MS
from opsmetrics.storage.series_id import series_id
from tests.chshim import start_process, stop_process
from tests.conftest import FIXED_NOW
from tests.postgres_server import pg_state_url, postgres_url  # noqa: F401 - fixtures
from tests.receivers import Receiver, receiver
from tests.server import ServerProcess, run_bounded, wait_until

pytestmark = pytest.mark.e2e

RULES = """
groups:
  - name: two_nodes
    interval: 1s
    rules:
      - alert: AlwaysOn
        expr: vector(1) > 0
        labels: {severity: critical}
      - alert: BothUp
        expr: both_up_probe > 0
        labels: {severity: critical}
      - alert: ProbeUp
        expr: failover_probe > 0
        labels: {severity: critical}
"""
NOTIFY = """
channels:
  - {name: hook, type: webhook, url: "%s/hook"}
routes:
  - match: {severity: critical}
    channels: [hook]
    group_by: [alertname]
    group_wait: 0s
    group_interval: 1s
"""
RW_HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}
SERIES = 40
STEPS = 30
#: Both servers' clocks start at FIXED_NOW; the samples sit in the hour before it. The
#: retention is long because ClickHouse's TTLs measure age by its own (real) clock.
T0 = FIXED_NOW - 3_600_000
RETENTION = "raw_samples: 100y\nrollups: 100y\nevents: 100y\n"


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    proc, port = start_process(tmp_path_factory.mktemp("ch"))
    yield port
    stop_process(proc)


@pytest.fixture
def ch_url(clickhouse: int) -> Iterator[str]:
    name = "nodes_" + uuid.uuid4().hex[:10]
    admin = clickhouse_connect.get_client(host="127.0.0.1", port=clickhouse, compress=False)
    admin.command(f"CREATE DATABASE {name}")
    yield f"clickhouse://default:@127.0.0.1:{clickhouse}/{name}"
    admin.command(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


def query_ch(url: str, sql: str) -> Any:
    host_port, database = url.rsplit("@", 1)[1].split("/")
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=int(host_port.split(":")[1]), database=database, compress=False
    )
    try:
        return client.query(sql).result_rows
    finally:
        client.close()


def nodes(
    tmp_path: Path, ch: str, pg: str, hook: Receiver, names: tuple[str, ...] = ("a", "b")
) -> list[ServerProcess]:
    config = tmp_path / "config"
    (config / "rules").mkdir(parents=True, exist_ok=True)
    (config / "rules" / "two_nodes.yaml").write_text(RULES)
    (config / "notify.yaml").write_text(NOTIFY % hook.url)
    (config / "retention.yaml").write_text(RETENTION)
    out = []
    for name in names:  # one after the other: the first creates the schemas
        env = {
            "OPSMETRICS_STORAGE_URL": ch,
            "OPSMETRICS_STATE_URL": pg,
            "OPSMETRICS_NODE_NAME": f"node-{name}",
        }
        srv = ServerProcess(tmp_path / f"data-{name}", config_dir=config, env=env, now_ms=FIXED_NOW)
        out.append(srv.start())
    return out


def remote_write(url: str, first_step: int, steps: int) -> None:
    request = pb.WriteRequest()
    for i in range(SERIES):
        series = request.timeseries.add()
        for name, value in (("__name__", "two_node_metric"), ("i", str(i)), ("job", "nodes")):
            series.labels.add(name=name, value=value)
        for step in range(first_step, first_step + steps):
            series.samples.add(value=float(i * 1000 + step), timestamp=T0 + step * 15_000)
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    response = httpx.post(url + "/api/v1/write", content=body, headers=RW_HEADERS, timeout=30)
    assert response.status_code == 204, response.text


def post_events(url: str) -> None:
    lines = [
        msgspec.json.encode(
            {"name": "signup", "ts": T0 + k * 1000, "entity": f"u{k}", "id": f"ev-{k}"}
        )
        for k in range(25)
    ]
    response = httpx.post(
        url + "/api/v1/events",
        content=b"\n".join(lines),
        headers={"content-type": "application/x-ndjson"},
        timeout=30,
    )
    assert response.status_code in (200, 202, 204), response.text


def notified(hook: Receiver, alertname: str) -> int:
    return sum(
        1
        for r in hook.requests
        for a in r.json()["alerts"]
        if a["labels"]["alertname"] == alertname and a["status"] == "firing"
    )


def test_two_nodes_share_one_clickhouse_and_postgresql(
    tmp_path: Path,
    ch_url: str,
    pg_state_url: str,  # noqa: F811 - a fixture
) -> None:
    with receiver() as hook:
        a, b = nodes(tmp_path, ch_url, pg_state_url, hook)
        try:
            # Interleaved, overlapping writes: steps 0-19 to a, 10-29 to b, at the same time;
            # steps 10-19 reach both (a retry through another node).
            writers = [
                threading.Thread(target=remote_write, args=(a.url, 0, 20)),
                threading.Thread(target=remote_write, args=(b.url, 10, 20)),
                threading.Thread(target=post_events, args=(a.url,)),
                threading.Thread(target=post_events, args=(b.url,)),
            ]
            for t in writers:
                t.start()
            for t in writers:
                t.join(60)
            _check_one_copy_of_everything(ch_url)
            _check_both_nodes_answer_alike(a, b)
            # Both nodes are up and evaluate the same rules; only the lease holder notifies.
            write_probe(b, "both_up_probe")
            wait_until(lambda: notified(hook, "BothUp") >= 1, "BothUp notified", 30)
            _wait_quiet(hook, 3.0)
            assert notified(hook, "BothUp") == 1
            assert notified(hook, "AlwaysOn") == 1
            _check_failover(a, b, hook)
        except AssertionError:
            print(a.log()[-4000:], b.log()[-4000:])
            raise
        finally:
            a.kill()
            b.kill()


def _check_one_copy_of_everything(ch: str) -> None:
    mine = "metric = 'two_node_metric'"  # the rules' ALERTS series are there too
    [(series, distinct_ids)] = query_ch(
        ch, f"SELECT count(), uniqExact(id) FROM series FINAL WHERE {mine}"
    )
    assert series == distinct_ids == SERIES
    expected = {series_id((("__name__", "two_node_metric"), ("i", str(i)), ("job", "nodes")))
                for i in range(SERIES)}  # fmt: skip
    stored = {int(r[0]) for r in query_ch(ch, f"SELECT id FROM series FINAL WHERE {mine}")}
    assert stored == expected  # the documented hash, the same on both nodes
    [(samples,)] = query_ch(ch, f"SELECT count() FROM samples FINAL WHERE {mine}")
    assert samples == SERIES * STEPS
    [(events,)] = query_ch(ch, "SELECT count() FROM events FINAL")
    assert events == 25


def _check_both_nodes_answer_alike(a: ServerProcess, b: ServerProcess) -> None:
    params = {
        "query": "sum by (job) (two_node_metric)",
        "start": str(T0 / 1000),
        "end": str((T0 + (STEPS - 1) * 15_000) / 1000),
        "step": "15",
    }
    answers = [httpx.get(n.url + "/api/v1/query_range", params=params).json() for n in (a, b)]
    assert answers[0] == answers[1]
    [result] = answers[0]["data"]["result"]
    assert len(result["values"]) == STEPS
    first = sum(i * 1000 for i in range(SERIES))
    assert float(result["values"][0][1]) == first
    events = [
        httpx.get(n.url + "/api/v1/events", params={"name": "signup", "start": "0"}).json()
        for n in (a, b)
    ]
    assert events[0] == events[1]


def _wait_quiet(hook: Receiver, seconds: float) -> None:
    """Let a second notifier, if there were one, have its chance."""
    pause(seconds)


def _check_failover(a: ServerProcess, b: ServerProcess, hook: Receiver) -> None:
    leader, standby = a, b
    leader.kill()  # SIGKILL: no release; the lease runs out
    write_probe(standby, "failover_probe")
    limit = (TTL_MS + 2 * RENEW_MS) / 1000 + 15
    wait_until(lambda: notified(hook, "ProbeUp") >= 1, "ProbeUp notified by the standby", limit)
    _wait_quiet(hook, 3.0)
    assert notified(hook, "ProbeUp") == 1  # the standby took over: it evaluates and notifies
    # It read what the leader had notified: no repeat of AlwaysOn or BothUp.
    assert (notified(hook, "AlwaysOn"), notified(hook, "BothUp")) == (1, 1)


def write_probe(node: ServerProcess, metric: str) -> None:
    request = pb.WriteRequest()
    series = request.timeseries.add()
    series.labels.add(name="__name__", value=metric)
    now = node.clock_ms()
    for k in range(0, 90):  # samples up to a minute ahead: the rule sees one at any moment
        series.samples.add(value=1.0, timestamp=now - 30_000 + k * 1000)
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    response = httpx.post(node.url + "/api/v1/write", content=body, headers=RW_HEADERS, timeout=30)
    assert response.status_code == 204, response.text


def test_a_token_created_elsewhere_reaches_a_running_node(
    tmp_path: Path,
    ch_url: str,
    pg_state_url: str,  # noqa: F811 - a fixture
) -> None:
    with receiver() as hook:
        (node,) = nodes(tmp_path, ch_url, pg_state_url, hook, names=("a",))
        try:
            assert httpx.get(node.url + "/api/v1/query", params={"query": "1"}).status_code == 200
            env = {
                **os.environ,
                "OPSMETRICS_STORAGE_URL": ch_url,
                "OPSMETRICS_STATE_URL": pg_state_url,
            }
            made = run_bounded(
                [sys.executable, "-m", "opsmetrics", "token", "create", "--scope", "read",
                 "--data", str(tmp_path / "cli-data")],
                120,
                env,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            secret = made.stdout.strip()
            # The node takes up the new token: auth is on, and the token works.
            wait_until(
                lambda: (
                    httpx.get(node.url + "/api/v1/query", params={"query": "1"}).status_code == 401
                ),
                "auth switched on by the new token",
                60,
            )
            ok = httpx.get(
                node.url + "/api/v1/query",
                params={"query": "1"},
                headers={"authorization": f"Bearer {secret}"},
            )
            assert ok.status_code == 200, ok.text
        finally:
            node.kill()
