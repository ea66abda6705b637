"""Browser SDK benchmark: the bundle's size, and the events per second a server takes from
SDK-shaped batches.

Run: .venv/bin/python bench/sdk.py                  (200,000 events)
Quick: .venv/bin/python bench/sdk.py --events 20000 --out /tmp/b.md

Sizes: the committed builds in opsmetrics/web/sdk/ (what /sdk/opsmetrics.js and .mjs serve),
raw and gzip -9; the source for comparison. Throughput: a real server (`python -m opsmetrics
serve`, free loopback port, a fresh data directory) with a publishable key whose rate does not
bind; `--clients` concurrent clients post batches of `--batch` events shaped as the SDK sends
them (a `$pageview` or a `track` with 3-4 properties, a 32-hex id, `Origin` and `?key=`, body
text/plain) to `/api/v1/sdk/events`, then the same batches with new ids to `/api/v1/events`
with an ingest token, as the baseline. Every 2xx follows the commit. Writes the
`## Browser SDK` section of BENCHMARKS.md (other text is left alone).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opsmetrics.auth import new_publishable_key, new_token  # noqa: E402
from opsmetrics.clock import SystemClock  # noqa: E402
from opsmetrics.services import open_services  # noqa: E402
from opsmetrics.settings import Settings  # noqa: E402
from opsmetrics.storage.token_records import Scope  # noqa: E402
from tests.server import ServerProcess  # noqa: E402

SDK_DIR = ROOT / "opsmetrics" / "web" / "sdk"
SOURCE = ROOT / "sdk" / "js" / "src" / "opsmetrics.js"
ORIGIN = "https://shop.example"
GOAL_GZIP_BYTES = 5 * 1024


def sizes() -> dict[str, tuple[int, int]]:
    files = {
        "opsmetrics.js": SDK_DIR / "opsmetrics.js",
        "opsmetrics.mjs": SDK_DIR / "opsmetrics.mjs",
    }
    files["source"] = SOURCE
    return {
        name: (len(p.read_bytes()), len(gzip.compress(p.read_bytes(), 9)))
        for name, p in files.items()
    }


def batch(n: int, now_ms: int) -> bytes:
    events: list[dict[str, Any]] = []
    for i in range(n):
        entity = f"anon-{secrets.token_hex(16)}" if i % 3 else "user-42"
        if i % 4 == 0:
            props: dict[str, Any] = {"path": f"/shop/p/{i}", "referrer": "", "title": "Product"}
            name = "$pageview"
        else:
            props = {"sku": f"A{i}", "qty": i % 5 + 1, "gift": i % 2 == 0, "plan": "pro"}
            name = "add_to_cart"
        events.append(
            {
                "name": name,
                "ts": now_ms,
                "entity": entity,
                "props": props,
                "id": secrets.token_hex(16),
            }
        )
    return json.dumps(events).encode()


async def blast(
    url: str, params: dict[str, str], headers: dict[str, str], bodies: list[bytes], clients: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            got = await http.post(url, params=params, content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            if got.status_code != 200:
                raise RuntimeError(f"{url}: {got.status_code} {got.text}")

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        return time.perf_counter() - started, latencies


def throughput(events: int, per_batch: int, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        clock = SystemClock()
        key = new_publishable_key("bench", [ORIGIN], clock.now_ms(), rate_per_min=1_000_000)
        ingest = new_token("bench", Scope.INGEST, clock.now_ms())
        services = open_services(Settings(data_dir=data), clock)
        try:
            for t in (key, ingest):
                services.storage.save_token(t.record)
        finally:
            services.close()
        server = ServerProcess(data).start(timeout=120)
        try:
            n = events // per_batch
            warm = [batch(per_batch, clock.now_ms()) for _ in range(20)]
            sdk_headers = {"Origin": ORIGIN, "Content-Type": "text/plain"}
            url = server.url + "/api/v1/sdk/events"
            asyncio.run(blast(url, {"key": key.secret}, sdk_headers, warm, clients))
            bodies = [batch(per_batch, clock.now_ms()) for _ in range(n)]
            sdk = asyncio.run(blast(url, {"key": key.secret}, sdk_headers, bodies, clients))
            bodies = [batch(per_batch, clock.now_ms()) for _ in range(n)]
            auth = {"Authorization": f"Bearer {ingest.secret}"}
            plain = asyncio.run(blast(server.url + "/api/v1/events", {}, auth, bodies, clients))
        finally:
            server.stop()
    return {"sdk": sdk, "plain": plain, "events": n * per_batch, "batches": n}


def facts(load: float) -> list[str]:
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    esbuild = json.loads((ROOT / "sdk" / "js" / "package.json").read_text())["devDependencies"]
    return [
        f"- CPU: {cpu.group(1) if cpu else '?'}, {os.cpu_count()} CPUs (nproc); "
        f"Python {platform.python_version()}, Node {node or '?'}, esbuild {esbuild['esbuild']}",
        f"- Load average when the run started: {load:.1f}; server and clients share the cores",
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def render(
    size: dict[str, tuple[int, int]], run: dict[str, Any], args: argparse.Namespace, load: float
) -> str:
    lines = ["## Browser SDK", "", f"`bench/sdk.py` (issue 20), {time.strftime('%Y-%m-%d')}.", ""]
    lines += facts(load)
    lines += ["", "| file | bytes | gzip -9 | goal |", "| --- | --- | --- | --- |"]
    for name, (raw, gz) in size.items():
        goal = (
            "source, for comparison"
            if name == "source"
            else (f"≤ {GOAL_GZIP_BYTES} gzipped: {'met' if gz <= GOAL_GZIP_BYTES else 'MISSED'}")
        )
        lines.append(f"| {name} | {raw:,} | {gz:,} | {goal} |")
    lines += [
        "",
        f"{run['events']:,} events in {run['batches']:,} batches of {args.batch}, "
        f"{args.clients} concurrent clients, loopback:",
        "",
        "| endpoint | events/s | batches/s | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, key in (
        ("`POST /api/v1/sdk/events` (publishable key, CORS, rate)", "sdk"),
        ("`POST /api/v1/events` (ingest token), baseline", "plain"),
    ):
        secs, lat = run[key]
        lines.append(
            f"| {label} | {run['events'] / secs:,.0f} | {run['batches'] / secs:,.0f} "
            f"| {statistics.median(lat) * 1000:.1f} | {pct(lat, 0.99):.1f} |"
        )
    lines += [
        "",
        "The publishable-key path (key lookup, origin check, token bucket, CORS headers) costs a",
        "few percent over the plain endpoint; both are bound by the per-request work of decoding",
        "and committing a batch of 20 on a 2-core machine shared with the clients, so bigger",
        "batches (`batchSize`) raise events/s. One browser sends a batch every few seconds at",
        "most: ~280 batches/s is the steady traffic of a thousand or so busy visitors per node.",
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, part: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = re.search(r"^## Browser SDK\n.*?(?=^## |\Z)", text, re.S | re.M)
    if section is None:
        text = text.rstrip("\n") + "\n\n" + part
    else:
        text = text[: section.start()] + part + "\n" + text[section.end() :]
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20, help="the SDK's default batchSize")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    size = sizes()
    print(size, flush=True)
    run = throughput(args.events, args.batch, args.clients)
    part = render(size, run, args, load)
    print(part)
    write_section(args.out, part)


if __name__ == "__main__":
    main()
