"""Probe scheduling: 1,000 HTTP probes at 15 s against a local server keep their schedule.

Run: .venv/bin/python bench/probes.py                 (1,000 probes, 3 cycles, 3 runs)
Quick: .venv/bin/python bench/probes.py --probes 200 --cycles 2 --runs 1

A separate process serves HTTP on a free loopback port (asyncio; answers every request with
200 and a 2-byte body, then closes). This process runs the real `Prober` from probes.yaml text:
one group of `--probes` targets (`http://127.0.0.1:PORT/t/N`), interval 15 s, timeout 5 s,
max_concurrency 64, writing through the real ingestor into a fresh DuckDB data directory.
After `--cycles` intervals it reads the prober's lateness (seconds each probe started after its
scheduled instant, every probe of the run) and the process CPU time (user + system, prober and
writer thread together, not the server) over the same wall time. Figures are medians of
`--runs`. Writes the `## Probes` section of BENCHMARKS.md; the other sections are left alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opsmetrics.catalog.probes import parse_probes_config  # noqa: E402
from opsmetrics.clock import SystemClock  # noqa: E402
from opsmetrics.ingest.decoded import DecodedSamples  # noqa: E402
from opsmetrics.ingest.pipeline import WriteRequest  # noqa: E402
from opsmetrics.ingest.probes import Prober  # noqa: E402
from opsmetrics.services import open_services  # noqa: E402
from opsmetrics.settings import Settings  # noqa: E402

SECTION = "## Probes"
INTERVAL_S = 15
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


# --- the target server (its own process) -------------------------------------------------------


async def _serve(port_file: Path) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ANSWER)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, backlog=1024)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = folder / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the target server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


# --- one run -----------------------------------------------------------------------------------


def config_text(port: int, probes: int) -> str:
    targets = "".join(f"      - http://127.0.0.1:{port}/t/{i}\n" for i in range(probes))
    return (
        f"global: {{interval: {INTERVAL_S}s, timeout: 5s, max_concurrency: 64}}\n"
        "probes:\n"
        "  - name: bench\n"
        "    http: {preferred_ip_protocol: ip4}\n"
        f"    targets:\n{targets}"
    )


async def run_once(port: int, probes: int, cycles: int, data: Path) -> dict[str, float]:
    services = open_services(Settings(data_dir=data), SystemClock())
    written = 0

    async def sink(decoded: DecodedSamples) -> None:
        nonlocal written
        await asyncio.wrap_future(services.ingestor.submit(WriteRequest("probes", decoded)))
        written += len(decoded.batch)

    prober = Prober(parse_probes_config(config_text(port, probes)), sink, SystemClock())
    cpu, wall = time.process_time(), time.monotonic()
    await prober.start()
    try:
        await asyncio.sleep(cycles * INTERVAL_S)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    finally:
        await prober.stop()
        services.close()
    late = sorted(prober.lateness)
    return {
        "probes run": len(late),
        "samples written": written,
        "p50": statistics.median(late),
        "p99": late[int(0.99 * (len(late) - 1))],
        "max": late[-1],
        "cpu share": cpu / wall,
        "cpu per probe ms": cpu / len(late) * 1000,
    }


# --- BENCHMARKS.md ---------------------------------------------------------------------------


def report(args: argparse.Namespace, runs: list[dict[str, float]]) -> str:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rows = [
        ("probes run per run (all cycles)", f"{med['probes run']:,.0f}"),
        ("samples written per run", f"{med['samples written']:,.0f}"),
        ("**schedule lateness p50**", f"**{med['p50'] * 1000:.2f} ms**"),
        ("**schedule lateness p99**", f"**{med['p99'] * 1000:.2f} ms**"),
        ("schedule lateness max", f"{med['max'] * 1000:.2f} ms"),
        ("CPU, share of one core (prober + writer)", f"{med['cpu share'] * 100:.1f} %"),
        ("CPU per probe", f"{med['cpu per probe ms']:.2f} ms"),
    ]
    command = (
        f"`.venv/bin/python bench/probes.py --probes {args.probes} --cycles {args.cycles} "
        f"--runs {args.runs}`"
    )
    load = os.getloadavg()[0]
    lines = [
        SECTION,
        "",
        f"Command: {command}. Measured {time.strftime('%Y-%m-%d')}, while other engineers' "
        "jobs may have shared the machine.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs (nproc); Python "
        f"{platform.python_version()}, httpx {httpx.__version__}; load average at the start "
        f"{load:.1f}",
        "",
        f"{args.probes:,} HTTP probes in one group, interval {INTERVAL_S} s, timeout 5 s, "
        "max_concurrency 64, against a local asyncio server in its own process (200, 2-byte "
        "body, connection closed). The real `Prober` writes through the real ingestor into a "
        f"fresh DuckDB directory. {args.cycles} intervals per run; lateness is how long after "
        "its scheduled instant each probe started (after waiting for a slot); CPU is "
        "`time.process_time()` of the prober's process over the run's wall time (the server's "
        f"CPU is not included). Figures are medians of {args.runs} runs.",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        "Every probe opens a new connection (no keep-alive), as blackbox_exporter does, so "
        "connect and TLS time are measured each time; the CPU per probe includes that "
        "connection, building its 16 samples and their share of the batched writes.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, part: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    mine = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if mine.search(text):
        text = mine.sub(lambda _: part, text)
    else:
        text = text.rstrip("\n") + "\n\n" + part
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print, do not edit the file")
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(_serve(args.serve))
        return
    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_server(Path(tmp))
        try:
            runs = []
            for i in range(args.runs):
                got = asyncio.run(run_once(port, args.probes, args.cycles, Path(tmp) / f"d{i}"))
                print(f"run {i + 1}: {got}", flush=True)
                runs.append(got)
        finally:
            server.terminate()
            server.wait()
    part = report(args, runs)
    print(part)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", part)


if __name__ == "__main__":
    main()
