"""`opsmetrics import` against a real server: exactly once, also across interruptions."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest
from typer.testing import CliRunner

from opsmetrics.cli.main import app
from opsmetrics.client.fileformats import (
    ImportFormat,
    Position,
    ReadContext,
    add_timestamp,
    csv_event_chunks,
    detect_format,
)
from opsmetrics.client.fileimport import ImportState, state_path
from opsmetrics.clock import ALLOW_FAKE_NOW_ENV, FAKE_NOW_ENV
from opsmetrics.model import Event
from tests.server import ServerProcess
from tests.stores import open_store

runner = CliRunner()


def cli_clock(at_ms: int) -> dict[str, str]:
    """The environment that starts the CLI's clock at `at_ms`, like a server's `now_ms`."""
    return {FAKE_NOW_ENV: str(at_ms / 1000), ALLOW_FAKE_NOW_ENV: "1"}


def run_import(srv: ServerProcess, path: Path, *args: str, at_ms: int | None = None) -> str:
    """Import `path`; the CLI's clock (which stamps samples that have no timestamp) starts at
    `at_ms`, by default where the server's did: a moment in the server's past."""
    env = cli_clock(srv.now_ms if at_ms is None else at_ms)
    result = runner.invoke(app, ["import", str(path), "--url", srv.url, *args], env=env)
    assert result.exit_code == 0, (result.output, result.exception, srv.log())
    return result.stdout


def stored_events(srv: ServerProcess) -> list[Event]:
    """Kill the server (it owns the file; a 2xx answer is durable) and read its DuckDB file."""
    srv.kill()
    storage = open_store(srv.data_dir, srv.clock_ms())
    try:
        return storage.read_events(None, 0, 2**62)
    finally:
        storage.close()


def points(srv: ServerProcess, expr: str) -> dict[str, list[float]]:
    params = {"query": f"{expr}[2h]", "time": str(srv.clock_ms() / 1000 + 1)}
    body = httpx.get(srv.url + "/api/v1/query", params=params).json()
    assert body["status"] == "success", body
    return {
        ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items()) if k != "__name__"): [
            float(v) for _, v in r["values"]
        ]
        for r in body["data"]["result"]
    }


def write_events_ndjson(path: Path, n: int, now_ms: int) -> None:
    t = now_ms - 60_000
    lines = []
    for i in range(n):
        event: dict[str, object] = {"name": "purchase", "entity": f"u{i % 3}", "value": i}
        if i % 2:
            event["ts"] = t + i
        if i == 4:
            event["id"] = "given-id"
        lines.append(msgspec.json.encode(event).decode())
    path.write_text("\n".join(lines[:5]) + "\n\n" + "\n".join(lines[5:]) + "\n")


# --- readers, no server -------------------------------------------------------------------
def test_add_timestamp_only_where_missing() -> None:
    assert add_timestamp(b'up{job="a b"} 1', "99") == b'up{job="a b"} 1 99'
    assert add_timestamp(b"up 1 5", "99") == b"up 1 5"
    assert add_timestamp(b'x{l="}{ \\" "} 2', "7") == b'x{l="}{ \\" "} 2 7'
    assert add_timestamp(b'c_total 3 # {id="1"} 1', "7") == b'c_total 3 7 # {id="1"} 1'


def test_detect_format(tmp_path: Path) -> None:
    cases = {
        "a.csv": "name,ts\n",
        "b.prom": "up 1\n",
        "c.json": '[{"name": "x", "value": 1}]',
        "d.ndjson": '{"name": "purchase", "entity": "u1"}\n',
        "e.ndjson": '{"name": "up", "labels": {}, "value": 1}\n',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    got = [detect_format(tmp_path / name).value for name in cases]
    assert got == ["events-csv", "prometheus", "samples-json", "events-ndjson", "samples-ndjson"]


def test_csv_chunks_keep_quoted_newlines_and_resume_by_offset(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text('name,entity,note\nsignup,u1,"two\nlines"\nsignup,u2,x\nsignup,u3,y\n')
    ctx = ReadContext(path, "abc", 0, batch_size=2)
    first, second = list(csv_event_chunks(ctx, Position()))
    assert msgspec.json.decode(first.body)[0]["props"] == {"note": "two\nlines"}
    assert (first.first_line, first.end.line, second.records) == (2, 4, 1)
    [again] = list(csv_event_chunks(ctx, first.end))
    assert again.body == second.body


# --- against a real server ----------------------------------------------------------------
@pytest.mark.e2e
def test_import_events_ndjson_exactly_once(fixed_server: ServerProcess, tmp_path: Path) -> None:
    server = fixed_server
    path = tmp_path / "events.ndjson"
    write_events_ndjson(path, 10, server.now_ms)
    out = run_import(server, path, "--batch-size", "3")
    assert "imported 10 events" in out
    assert not state_path(path).exists()
    run_import(server, path)  # importing the same file again changes nothing
    events = stored_events(server)
    assert len(events) == 10
    assert sorted(e.value or 0 for e in events) == list(range(10))
    assert "given-id" in {e.id for e in events}


@pytest.mark.e2e
def test_import_events_csv_with_props(fixed_server: ServerProcess, tmp_path: Path) -> None:
    server = fixed_server
    t = server.now_ms - 60_000
    path = tmp_path / "events.csv"
    path.write_text(
        f"name,ts,entity,value,plan,source\nsignup,{t},u1,,pro,ads\npurchase,{t + 1},u1,1999,pro,\n"
    )
    run_import(server, path)
    run_import(server, path, "--format", "events-csv")
    events = stored_events(server)
    assert [(e.name, e.ts, e.entity, e.value, e.props) for e in events] == [
        ("signup", t, "u1", None, {"plan": "pro", "source": "ads"}),
        ("purchase", t + 1, "u1", 1999.0, {"plan": "pro"}),
    ]


@pytest.mark.e2e
def test_import_samples_json_and_prometheus_text(
    fixed_server: ServerProcess, tmp_path: Path
) -> None:
    server = fixed_server
    t = server.now_ms - 30_000
    samples = tmp_path / "samples.json"
    items: list[dict[str, object]] = [
        {"name": "temp", "labels": {"room": "a"}, "samples": [[t, 20.5], [t + 1000, 21]]}
    ]
    items += [{"name": "temp", "labels": {"room": "b"}, "ts": t, "value": 19}]
    samples.write_bytes(msgspec.json.encode(items))
    prom = tmp_path / "scrape.prom"
    prom.write_text(
        "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n"
        'http_requests_total{code="200"} 10\nhttp_requests_total{code="500"} 2\n'
        "# TYPE queue gauge\nqueue 4\n"
    )
    for _ in range(2):  # the second import of samples.json finds every sample stored
        run_import(server, samples, "--batch-size", "1")
    run_import(server, prom, "--batch-size", "1")
    assert points(server, "temp") == {"room=a": [20.5, 21.0], "room=b": [19.0]}
    assert points(server, "http_requests_total") == {"code=200": [10.0], "code=500": [2.0]}
    assert points(server, "queue") == {"": [4.0]}


@pytest.mark.e2e
def test_interrupted_import_resumes_without_duplicates(
    fixed_server: ServerProcess, tmp_path: Path
) -> None:
    server = fixed_server
    path = tmp_path / "events.ndjson"
    write_events_ndjson(path, 10, server.now_ms)
    out = run_import(server, path, "--batch-size", "3", "--max-batches", "2")
    assert "stopped early" in out and "6 events" in out
    state = msgspec.json.decode(state_path(path).read_bytes(), type=ImportState)
    assert state.line == 7  # six events and the blank line
    # The server also dies, after storing a batch whose acknowledgement was lost.
    state.offset, state.line = 0, 0
    state_path(path).write_bytes(msgspec.json.encode(state))
    server.kill()
    server.now_ms = server.clock_ms() + 1000  # the restarted server's clock goes on, not back
    server.start()
    assert "imported 10 events" in run_import(server, path, "--batch-size", "3")
    events = stored_events(server)
    assert sorted(e.value or 0 for e in events) == list(range(10))


@pytest.mark.e2e
def test_resumed_sample_import_keeps_its_timestamp(
    fixed_server: ServerProcess, tmp_path: Path
) -> None:
    server = fixed_server
    started = server.now_ms - 60_000
    path = tmp_path / "now.ndjson"
    rows = [{"name": "stock", "labels": {"sku": str(i)}, "value": i} for i in range(4)]
    path.write_text("\n".join(msgspec.json.encode(r).decode() for r in rows) + "\n")
    run_import(server, path, "--batch-size", "2", "--max-batches", "1", at_ms=started)
    state = msgspec.json.decode(state_path(path).read_bytes(), type=ImportState)
    state.offset, state.line = 0, 0  # replay the acknowledged batch too
    state_path(path).write_bytes(msgspec.json.encode(state))
    # A later "now" must not matter: samples carry the import's timestamp. (Still in the
    # server's past, so samples stamped with it would be counted below.)
    args = ["--batch-size", "2", "--format", ImportFormat.SAMPLES_NDJSON.value]
    run_import(server, path, *args, at_ms=started + 30_000)
    assert points(server, "stock") == {f"sku={i}": [float(i)] for i in range(4)}


@pytest.mark.e2e
def test_rejected_batch_names_the_lines(fixed_server: ServerProcess, tmp_path: Path) -> None:
    server = fixed_server
    path = tmp_path / "bad.ndjson"
    path.write_text('{"name": "ok", "entity": "u1"}\n{"name": "bad", "bogus": 1}\n')
    args = ["import", str(path), "--url", server.url, "--batch-size", "1"]
    result = runner.invoke(app, args, env=cli_clock(server.now_ms))
    assert result.exit_code != 0
    assert f"{path}:2-2: 400" in str(result.exception)
    assert msgspec.json.decode(state_path(path).read_bytes(), type=ImportState).line == 1
