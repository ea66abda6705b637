"""Server-process parts of bench/scale_out.py: remote_write through real servers, two nodes.

    .venv/bin/python bench/scale_out_servers.py ingest|nodes|queries --out F.json --tmp DIR

Each part starts its processes (opsmetrics servers, tests/chshim.py over chdb) in DIR, stops
them by pid on the way out (also on failure), and writes its figures as JSON to --out.
Payloads are bench/ingest.py's: 10,000 samples per remote_write request (1,000 series x 10
labels x 10 timestamps), encoded before timing; a warm-up request per client creates the series.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from ingest import RW_HEADERS, Clients, Proc, drive, opsmetrics_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chshim import start_process, stop_process  # noqa: E402

SAMPLES_PER_REQUEST = 10_000
Json = dict[str, Any]


# --- processes --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (USER_HZ)


@contextmanager
def shim(path: Path) -> Iterator[tuple[int, int]]:
    """tests/chshim.py on `path`: (pid, port); stopped by pid on exit."""
    path.mkdir(parents=True, exist_ok=True)
    proc, port = start_process(path, timeout=120)
    try:
        # The shim opens a chdb connection per sessionless query; while none is open the engine
        # shuts down and the next query starts it again (slow, and under load it fails with
        # "Error initializing EmbeddedServer"). One idle session keeps the engine up, as a real
        # server's is.
        keep = {"session_id": "bench-keepalive", "session_timeout": "86400", "query": "SELECT 1"}
        httpx.post(f"http://127.0.0.1:{port}/", params=keep, timeout=60).raise_for_status()
        yield proc.pid, port
    finally:
        stop_process(proc)


def ch_url(port: int, database: str) -> str:
    return f"clickhouse://default:@127.0.0.1:{port}/{database}"


def chdb_url(path: Path, database: str) -> str:
    return f"chdb://{path}?database={database}"


def server(stack: ExitStack, data: Path, storage_url: str | None, node: str = "a") -> Proc:
    env = {"OPSMETRICS_NODE_NAME": f"node-{node}"}
    if storage_url:
        env["OPSMETRICS_STORAGE_URL"] = storage_url
    data.mkdir(parents=True, exist_ok=True)
    return stack.enter_context(opsmetrics_server(data, env))


# --- load -----------------------------------------------------------------------------------------


def timed_rounds(targets: list[Proc], clients: Clients, requests: int, pids: list[int]) -> Json:
    """One round: client i posts `requests` bodies to targets[i]; samples/s and CPU s/M."""
    bodies = clients.bodies(len(targets), requests)
    before = {p: cpu_seconds(p) for p in pids}
    seconds = _drive_each(targets, bodies)
    samples = len(targets) * requests * SAMPLES_PER_REQUEST
    cpu = {str(p): (cpu_seconds(p) - before[p]) / samples * 1e6 for p in pids}
    return {"rate": samples / seconds, "seconds": seconds, "cpu_s_per_m": cpu}


def _drive_each(targets: list[Proc], bodies: list[list[bytes]]) -> float:
    """Every client on its own server, all at once (wall time until the last answer)."""
    out: list[float] = []
    errors: list[BaseException] = []

    def one(proc: Proc, mine: list[bytes]) -> None:
        try:
            out.append(drive(proc.url, "/api/v1/write", RW_HEADERS, [mine]))
        except BaseException as exc:
            errors.append(exc)

    began = time.perf_counter()
    threads = [threading.Thread(target=one, args=tb) for tb in zip(targets, bodies, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - began


def warm(targets: list[Proc], clients: Clients) -> None:
    for proc, bodies in zip(targets, clients.bodies(len(targets), 1), strict=True):
        drive(proc.url, "/api/v1/write", RW_HEADERS, [bodies])


def stored_samples(port: int, database: str) -> int:
    client = httpx.post(
        f"http://127.0.0.1:{port}/",
        params={"database": database, "query": "SELECT count() FROM samples FINAL"},
        timeout=120,
    )
    client.raise_for_status()
    return int(client.text.strip())


# --- the parts ------------------------------------------------------------------------------


def part_ingest(args: argparse.Namespace, tmp: Path) -> Json:
    """remote_write, `clients` clients, on three servers: DuckDB, ClickHouse over HTTP (chshim
    -> chdb), chdb in the server's process. Rounds alternate between them."""
    start_ms = int(time.time() * 1000) - 3_600_000
    out: Json = {"clients": args.clients, "requests": args.requests, "runs": {}, "cpu": {}}
    with ExitStack() as stack:
        shim_pid, port = stack.enter_context(shim(tmp / "chdb-shim"))
        backends = {
            "duckdb": server(stack, tmp / "duck", None),
            "clickhouse_http": server(stack, tmp / "chs", ch_url(port, "ingest")),
            "chdb_in_process": server(stack, tmp / "chp", chdb_url(tmp / "chdb-own", "ingest")),
        }
        pids = {
            "duckdb": [backends["duckdb"].popen.pid],
            "clickhouse_http": [backends["clickhouse_http"].popen.pid, shim_pid],
            "chdb_in_process": [backends["chdb_in_process"].popen.pid],
        }
        clients = {
            k: Clients.make("remote_write", args.clients, start_ms, 11, 1_000) for k in backends
        }
        for k, proc in backends.items():
            warm([proc] * args.clients, clients[k])
        for run in range(args.runs):
            for k, proc in backends.items():
                got = timed_rounds([proc] * args.clients, clients[k], args.requests, pids[k])
                out["runs"].setdefault(k, []).append(got["rate"])
                out["cpu"].setdefault(k, []).append(list(got["cpu_s_per_m"].values()))
                print(f"  run {run + 1} {k}: {got['rate']:,.0f} samples/s", flush=True)
        sent = (1 + args.runs * args.requests) * args.clients * SAMPLES_PER_REQUEST
        out["stored_clickhouse_http"] = stored_samples(port, "ingest")
        out["sent_per_backend"] = sent
    return out


def part_nodes(args: argparse.Namespace, tmp: Path) -> Json:
    """One server with one client vs two servers with one client each, on one chshim."""
    start_ms = int(time.time() * 1000) - 3_600_000
    out: Json = {"requests": args.requests, "runs": {"one": [], "two": []}, "cpu": {}}
    with ExitStack() as stack:
        shim_pid, port = stack.enter_context(shim(tmp / "chdb-nodes"))
        url = ch_url(port, "nodes")
        a = server(stack, tmp / "node-a", url, "a")
        b = server(stack, tmp / "node-b", url, "b")
        every = Clients.make("remote_write", 3, start_ms, 21, 1_000)
        one = Clients(every.sets[:1], every.encode)  # other series than `two`'s
        two = Clients(every.sets[1:], every.encode)
        warm([a], one)
        warm([a, b], two)
        pids = [a.popen.pid, b.popen.pid, shim_pid]
        for run in range(args.runs):
            got1 = timed_rounds([a], one, args.requests, pids)
            got2 = timed_rounds([a, b], two, args.requests, pids)
            out["runs"]["one"].append(got1["rate"])
            out["runs"]["two"].append(got2["rate"])
            out["cpu"].setdefault("one", []).append(list(got1["cpu_s_per_m"].values()))
            out["cpu"].setdefault("two", []).append(list(got2["cpu_s_per_m"].values()))
            print(f"  run {run + 1}: one {got1['rate']:,.0f}, two {got2['rate']:,.0f}", flush=True)
    return out


def part_queries(args: argparse.Namespace, tmp: Path) -> Json:
    """bench/query.py's 14 range queries over HTTP on the data scale_out_data.py `load` left:
    DuckDB server vs ClickHouse server over chshim; alternating, median of --runs."""
    from query import QUERIES, WINDOWS, compare, query_text, run_query

    meta = json.loads((tmp / "query-data.json").read_text())
    end_s = meta["end_ms"] // 1000
    out: Json = {"rows": []}
    with ExitStack() as stack:
        _, port = stack.enter_context(shim(Path(meta["chdb_path"])))
        duck = server(stack, Path(meta["duckdb_dir"]), None)
        ch = server(stack, tmp / "q-ch-node", ch_url(port, meta["database"]))
        with httpx.Client(timeout=900) as http:
            for window in WINDOWS:
                end = end_s // window.step_s * window.step_s
                for name, template in QUERIES.items():
                    expr = query_text(template, window)
                    form = {
                        "query": expr,
                        "start": str(end - window.span_s),
                        "end": str(end),
                        "step": str(window.step_s),
                    }
                    _, want = run_query(http, duck.url, form)
                    _, got = run_query(http, ch.url, form)
                    bad = compare(got, want)
                    times: dict[str, list[float]] = {"duckdb": [], "clickhouse_http": []}
                    for _ in range(args.runs):
                        times["duckdb"].append(run_query(http, duck.url, form)[0])
                        times["clickhouse_http"].append(run_query(http, ch.url, form)[0])
                    row = {"window": window.name, "query": name, "expr": expr, **times}
                    row["series"] = len(want["result"])
                    row["differ"] = len(bad)
                    out["rows"].append(row)
                    med = {k: statistics.median(v) for k, v in times.items()}
                    print(f"  {window.name} {name}: {med}", flush=True)
    return out


PARTS = {"ingest": part_ingest, "nodes": part_nodes, "queries": part_queries}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("part", choices=sorted(PARTS))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tmp", type=Path, required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--requests", type=int, default=20, help="per client per run")
    p.add_argument("--clients", type=int, default=2)
    args = p.parse_args()
    args.out.write_text(json.dumps(PARTS[args.part](args, args.tmp)))


if __name__ == "__main__":
    main()
