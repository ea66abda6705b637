"""The host collector (opsmetrics/ingest/host.py): node_exporter's series, checked against /proc
read here, and through a real server started with OPSMETRICS_COLLECT_HOST=1."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmetrics.catalog.validate import EXAMPLE_CONFIG
from opsmetrics.clock import FakeClock
from opsmetrics.errors import ConfigError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.host import HostCollector
from opsmetrics.model import METRIC_NAME, MetricType, is_stale, make_labels
from opsmetrics.settings import Settings
from tests.server import ServerProcess, wait_until

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads Linux /proc")

Series = dict[tuple[tuple[str, str], ...], float]

#: Every fixed family node_exporter's default collectors (and tcpstat/processes) expose on
#: Linux that the host collector writes, with its labels besides job and instance.
GOLDEN = {
    "node_boot_time_seconds": (),
    "node_context_switches_total": (),
    "node_cpu_guest_seconds_total": ("cpu", "mode"),
    "node_cpu_seconds_total": ("cpu", "mode"),
    "node_disk_io_time_seconds_total": ("device",),
    "node_disk_read_bytes_total": ("device",),
    "node_disk_read_time_seconds_total": ("device",),
    "node_disk_reads_completed_total": ("device",),
    "node_disk_reads_merged_total": ("device",),
    "node_disk_write_time_seconds_total": ("device",),
    "node_disk_writes_completed_total": ("device",),
    "node_disk_writes_merged_total": ("device",),
    "node_disk_written_bytes_total": ("device",),
    "node_filesystem_avail_bytes": ("device", "fstype", "mountpoint"),
    "node_filesystem_files": ("device", "fstype", "mountpoint"),
    "node_filesystem_files_free": ("device", "fstype", "mountpoint"),
    "node_filesystem_free_bytes": ("device", "fstype", "mountpoint"),
    "node_filesystem_readonly": ("device", "fstype", "mountpoint"),
    "node_filesystem_size_bytes": ("device", "fstype", "mountpoint"),
    "node_forks_total": (),
    "node_intr_total": (),
    "node_load1": (),
    "node_load15": (),
    "node_load5": (),
    "node_memory_Buffers_bytes": (),
    "node_memory_Cached_bytes": (),
    "node_memory_MemAvailable_bytes": (),
    "node_memory_MemFree_bytes": (),
    "node_memory_MemTotal_bytes": (),
    "node_memory_SwapFree_bytes": (),
    "node_memory_SwapTotal_bytes": (),
    "node_netstat_Tcp_CurrEstab": (),
    "node_network_receive_bytes_total": ("device",),
    "node_network_receive_drop_total": ("device",),
    "node_network_receive_errs_total": ("device",),
    "node_network_receive_packets_total": ("device",),
    "node_network_transmit_bytes_total": ("device",),
    "node_network_transmit_drop_total": ("device",),
    "node_network_transmit_errs_total": ("device",),
    "node_network_transmit_packets_total": ("device",),
    "node_processes_max_processes": (),
    "node_processes_max_threads": (),
    "node_processes_pids": (),
    "node_processes_threads": (),
    "node_procs_blocked": (),
    "node_procs_running": (),
    "node_tcp_connection_states": ("state",),
    "node_time_seconds": (),
    "node_uname_info": ("domainname", "machine", "nodename", "release", "sysname", "version"),
}
CPU_MODES = {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}
TCP_STATES = {
    *("established", "syn_sent", "syn_recv", "fin_wait1", "fin_wait2", "time_wait", "close"),
    *("close_wait", "last_ack", "listen", "closing", "rx_queued_bytes", "tx_queued_bytes"),
}


async def _discard(decoded: DecodedSamples) -> None:
    pass


def collector(clock: FakeClock | None = None) -> HostCollector:
    return HostCollector(_discard, clock or FakeClock(NOW), instance="box-1")


def values(decoded: DecodedSamples) -> Series:
    batch = decoded.batch
    return {batch.series[int(i)]: float(v) for i, v in zip(batch.index, batch.values, strict=True)}


def value(series: Series, name: str, **labels: str) -> float:
    key = make_labels({METRIC_NAME: name, "job": "node", "instance": "box-1", **labels})
    return series[key]


def meminfo_kb() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0])
    return out


def proc_stat_cpu() -> dict[str, list[float]]:
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        key, *fields = line.split()
        if key.startswith("cpu") and key != "cpu":
            out[key[3:]] = [int(f) / ticks for f in fields]
    return out


def proc_net_dev() -> dict[str, tuple[int, int]]:
    out = {}
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        out[name.strip()] = (int(fields[0]), int(fields[8]))
    return out


# --- values against /proc ----------------------------------------------------------------------


def test_memory_matches_proc_meminfo() -> None:
    before = meminfo_kb()
    series = values(collector().collect())
    after = meminfo_kb()
    assert value(series, "node_memory_MemTotal_bytes") == before["MemTotal"] * 1024
    assert value(series, "node_memory_SwapTotal_bytes") == before["SwapTotal"] * 1024
    available = value(series, "node_memory_MemAvailable_bytes")
    low, high = sorted((before["MemAvailable"] * 1024, after["MemAvailable"] * 1024))
    # Memory moves between the readings; 64 MiB of slack either side of them.
    assert low - 64 * 2**20 <= available <= high + 64 * 2**20
    # node_exporter's Cached is /proc/meminfo's Cached alone (psutil's adds SReclaimable).
    cached = value(series, "node_memory_Cached_bytes")
    assert abs(cached - before["Cached"] * 1024) <= 64 * 2**20


def test_cpu_seconds_lie_between_two_readings_of_proc_stat() -> None:
    before = proc_stat_cpu()
    series = values(collector().collect())
    after = proc_stat_cpu()
    assert before.keys() == after.keys() and before
    for cpu, fields in before.items():
        for i, mode in enumerate(["user", "nice", "system", "idle", "iowait", "irq", "softirq"]):
            got = value(series, "node_cpu_seconds_total", cpu=cpu, mode=mode)
            assert fields[i] - 1e-9 <= got <= after[cpu][i] + 1e-9, (cpu, mode)


def test_load_is_proc_loadavg() -> None:
    before = Path("/proc/loadavg").read_text().split()[:3]
    series = values(collector().collect())
    after = Path("/proc/loadavg").read_text().split()[:3]
    for i, minutes in enumerate((1, 5, 15)):
        # The kernel updates the averages every 5 s: one of the two readings is the one we got.
        got = value(series, f"node_load{minutes}")
        assert min(abs(got - float(before[i])), abs(got - float(after[i]))) < 0.011


def test_network_counters_lie_between_two_readings_of_proc_net_dev() -> None:
    before = proc_net_dev()
    series = values(collector().collect())
    after = proc_net_dev()
    assert "lo" in before
    for device, (rx, tx) in before.items():
        if device not in after:
            continue
        got_rx = value(series, "node_network_receive_bytes_total", device=device)
        got_tx = value(series, "node_network_transmit_bytes_total", device=device)
        assert rx <= got_rx <= after[device][0], device
        assert tx <= got_tx <= after[device][1], device


def test_root_filesystem_size_is_statvfs() -> None:
    series = values(collector().collect())
    st = os.statvfs("/")
    roots = {
        labels: v
        for labels, v in series.items()
        if dict(labels)[METRIC_NAME] == "node_filesystem_size_bytes"
        and dict(labels)["mountpoint"] == "/"
    }
    assert len(roots) == 1, roots
    ((labels, size),) = roots.items()
    assert size == st.f_blocks * st.f_bsize
    files = {**dict(labels), METRIC_NAME: "node_filesystem_files"}
    assert series[make_labels(files)] == st.f_files


def test_excluded_mounts_and_disks_are_left_out() -> None:
    series = values(collector().collect())
    mounts = {dict(k).get("mountpoint") for k in series if "mountpoint" in dict(k)}
    fstypes = {dict(k).get("fstype") for k in series if "fstype" in dict(k)}
    disks = {dict(k)["device"] for k in series if dict(k)[METRIC_NAME].startswith("node_disk_")}
    assert not {"/proc", "/sys", "/dev"} & mounts
    assert not {"proc", "sysfs", "cgroup2", "devpts", "overlay"} & fstypes
    assert not [d for d in disks if d.startswith("loop") or d[-1:].isdigit() and "sd" in d]


# --- names, labels, metadata -------------------------------------------------------------------


def test_names_and_labels_are_node_exporters() -> None:
    clock = FakeClock(NOW)
    decoded = collector(clock).collect()
    seen: dict[str, set[tuple[str, ...]]] = {}
    for labels in decoded.batch.series:
        pairs = dict(labels)
        assert pairs.pop("job") == "node" and pairs.pop("instance") == "box-1"
        name = pairs.pop(METRIC_NAME)
        seen.setdefault(name, set()).add(tuple(sorted(pairs)))
    fixed = {n for n in seen if not n.startswith(("node_memory_", "node_netstat_"))}
    assert set(GOLDEN) <= set(seen), set(GOLDEN) - set(seen)
    assert fixed <= set(GOLDEN), fixed - set(GOLDEN)
    for name, label_names in GOLDEN.items():
        assert seen[name] == {label_names}, name
    assert set(decoded.batch.ts.tolist()) == {NOW}


def test_cpu_modes_tcp_states_and_host_labels() -> None:
    series = values(collector(FakeClock(NOW)).collect())
    modes = {dict(k)["mode"] for k in series if dict(k)[METRIC_NAME] == "node_cpu_seconds_total"}
    states = {dict(k)["state"] for k in series if "state" in dict(k)}
    assert modes == CPU_MODES
    assert states == TCP_STATES
    assert value(series, "node_time_seconds") == NOW / 1000
    uname = next(k for k in series if dict(k)[METRIC_NAME] == "node_uname_info")
    assert dict(uname)["nodename"] == os.uname().nodename
    assert HostCollector(_discard, FakeClock(NOW)).instance == socket.gethostname()


def test_metadata_has_node_exporters_types_and_help() -> None:
    meta = {m.metric: m for m in collector().collect().metadata}
    assert meta["node_cpu_seconds_total"].type is MetricType.COUNTER
    assert meta["node_cpu_seconds_total"].help == "Seconds the CPUs spent in each mode."
    assert meta["node_load1"].help == "1m load average."
    assert meta["node_memory_MemAvailable_bytes"].type is MetricType.GAUGE
    assert meta["node_memory_MemAvailable_bytes"].help == (
        "Memory information field MemAvailable_bytes."
    )
    assert meta["node_network_receive_errs_total"].help == "Network device statistic receive_errs."
    assert meta["node_netstat_Tcp_CurrEstab"].type is MetricType.UNKNOWN
    assert meta["node_netstat_Tcp_CurrEstab"].help == "Statistic TcpCurrEstab."
    assert meta["node_filesystem_avail_bytes"].help == (
        "Filesystem space available to non-root users in bytes."
    )


# --- across collections ------------------------------------------------------------------------


def test_counters_are_monotone_across_two_collections() -> None:
    clock = FakeClock(NOW)
    host = collector(clock)
    first_decoded = host.collect()
    clock.advance(15_000)
    second = values(host.collect())
    first = values(first_decoded)
    counters = {m.metric for m in first_decoded.metadata if m.type is MetricType.COUNTER}
    checked = 0
    for labels, old in first.items():
        if dict(labels)[METRIC_NAME] in counters and labels in second:
            assert second[labels] >= old, labels
            checked += 1
    assert checked > 20
    assert "node_cpu_seconds_total" in counters and "node_load1" not in counters


def test_a_series_that_vanishes_gets_one_stale_marker() -> None:
    clock = FakeClock(NOW)
    host = collector(clock)
    host.collect()
    gone = make_labels({METRIC_NAME: "node_network_receive_bytes_total", "device": "veth-gone"})
    host._series.add(gone)  # as if an interface had been there last time
    clock.advance(15_000)
    batch = host.collect().batch
    stale = {batch.series[int(i)] for i in batch.index[is_stale(batch.values)]}
    assert stale == {gone}
    clock.advance(15_000)
    assert not is_stale(host.collect().batch.values).any()


# --- the loop ---------------------------------------------------------------------------------


def test_a_busy_write_skips_ticks_instead_of_queueing_them() -> None:
    async def main() -> None:
        release, calls = asyncio.Event(), []

        async def slow_sink(decoded: DecodedSamples) -> None:
            calls.append(decoded)
            await release.wait()

        host = HostCollector(slow_sink, FakeClock(NOW), interval_ms=20, instance="box-1")
        await host.start()
        deadline = asyncio.get_running_loop().time() + 30
        while host.skipped < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert host.skipped >= 3
        assert len(calls) == 1  # nothing piled up behind the stuck write
        skipped = host.skipped
        release.set()
        while len(calls) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await host.stop()
        assert len(calls) >= 2
        assert host.skipped <= skipped + len(calls)

    asyncio.run(main())


def test_settings_and_interval() -> None:
    env = {"OPSMETRICS_COLLECT_HOST": "1", "OPSMETRICS_COLLECT_HOST_INTERVAL": "2s"}
    settings = Settings.from_env(env)
    assert settings.collect_host is True and settings.collect_host_interval_ms == 2000
    assert Settings.from_env({}).collect_host is False
    assert Settings.from_env({"OPSMETRICS_COLLECT_HOST": "0"}).collect_host is False
    assert Settings.from_env(env, collect_host=False).collect_host is False
    with pytest.raises(ConfigError, match="OPSMETRICS_COLLECT_HOST: 'maybe' is not a boolean"):
        Settings.from_env({"OPSMETRICS_COLLECT_HOST": "maybe"})
    with pytest.raises(ConfigError, match="not a positive duration"):
        HostCollector(_discard, FakeClock(NOW), interval_ms=0)


# --- through a real server --------------------------------------------------------------------


def _query(srv: ServerProcess, expr: str) -> list[dict[str, object]]:
    params = {"query": expr, "time": str(srv.clock_ms() / 1000)}
    body = httpx.get(srv.url + "/api/v1/query", params=params, timeout=10).json()
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


@pytest.mark.e2e
def test_server_with_collect_host_answers_promql(tmp_path: Path) -> None:
    env = {"OPSMETRICS_COLLECT_HOST": "1", "OPSMETRICS_COLLECT_HOST_INTERVAL": "1s"}
    srv = ServerProcess(tmp_path / "data", EXAMPLE_CONFIG, env=env, now_ms=NOW).start()
    try:
        total = wait_until(lambda: _query(srv, "node_memory_MemTotal_bytes"), "MemTotal")
        assert len(total) == 1
        metric = total[0]["metric"]
        assert isinstance(metric, dict)
        assert metric["job"] == "node" and metric["instance"] == socket.gethostname()
        assert float(total[0]["value"][1]) == meminfo_kb()["MemTotal"] * 1024  # type: ignore[index]
        rates = wait_until(
            lambda: _query(srv, "rate(node_cpu_seconds_total[1m])"), "a CPU rate", timeout_s=60
        )
        modes = {r["metric"]["mode"] for r in rates}  # type: ignore[index]
        assert modes == CPU_MODES
        assert all(float(r["value"][1]) >= 0 for r in rates)  # type: ignore[index]
        busy = _query(srv, 'sum(rate(node_cpu_seconds_total{mode!="idle"}[1m]))')
        assert 0 <= float(busy[0]["value"][1]) <= os.cpu_count()  # type: ignore[index,operator]
        meta = httpx.get(srv.url + "/api/v1/metadata", params={"metric": "node_load1"}).json()
        assert meta["data"]["node_load1"][0]["type"] == "gauge"
        _check_engineering_dashboard(srv)
    finally:
        srv.stop()


def _check_engineering_dashboard(srv: ServerProcess) -> None:
    """The example catalog's Engineering dashboard draws its Host section from the collector
    (its charts step by 15 s, so the first points come within one step)."""
    host = wait_until(lambda: _host_widgets(srv), "the Host widgets' data", timeout_s=60)
    titles = {w["title"] for w in host}
    assert {"CPU busy", "Memory in use", "Filesystem space used"} <= titles, titles
    assert "Network bytes per second" in titles


def _host_widgets(srv: ServerProcess) -> list[dict[str, Any]]:
    params = {"start": "now-10m", "end": "now"}
    url = srv.url + "/api/v1/dashboards/engineering/data"
    widgets = httpx.get(url, params=params, timeout=30).json()["data"]["widgets"]
    host = [w for k, w in widgets.items() if k.startswith("s2w")]
    for widget in host:
        if widget["type"] == "metric_card" and widget["value"] is None:
            return []
        series = widget.get("series", [])
        if widget["type"] == "trend_chart" and not any(
            p[1] is not None for s in series for p in s["points"]
        ):
            return []
    return host
