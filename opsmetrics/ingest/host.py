"""The host collector: the machine opsmetrics runs on, under node_exporter's series names.

`opsmetrics serve --collect-host` samples CPU, load, memory, filesystems, disks, network,
TCP connection states and processes every OPSMETRICS_COLLECT_HOST_INTERVAL and writes them
through the ingestor with `job="node"` and `instance=<host name>`, so dashboards and alert
rules written for node_exporter work unchanged. What is covered and what is not:
docs/collectors.md ("Host collector").

Values come from psutil and, on Linux, from the same /proc files node_exporter reads where
psutil's numbers differ from node_exporter's (psutil's `cached` adds SReclaimable; its
per-CPU list drops the CPU numbers). The readers block on the kernel (and a hung network
mount blocks statvfs), so a collection runs in its own daemon thread; a tick that comes while
the previous collection or its write is still running is skipped, never queued.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

from opsmetrics.clock import Clock
from opsmetrics.errors import ConfigError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.model import (
    METRIC_NAME,
    STALE_NAN,
    Labels,
    MetricMetadata,
    MetricType,
    SampleBatchBuilder,
    make_labels,
)

log = logging.getLogger(__name__)

Sink = Callable[[DecodedSamples], Awaitable[None]]
T = TypeVar("T")

JOB = "node"
DEFAULT_INTERVAL_MS = 15_000
PROC = Path("/proc")
#: node_exporter's defaults (collector/filesystem_linux.go, collector/diskstats_linux.go).
MOUNT_POINTS_EXCLUDED = re.compile(
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
FS_TYPES_EXCLUDED = re.compile(
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|"
    r"iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|"
    r"erofs|sysfs|tracefs)$"
)
DISKS_EXCLUDED = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")
#: node_exporter's default --collector.netstat.fields, applied to /proc/net/snmp.
NETSTAT_FIELDS = re.compile(
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
    r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)"
    r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
    r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
#: The kernel's TCP state numbers (include/net/tcp_states.h), named as node_exporter names them.
TCP_STATES = {
    1: "established",
    2: "syn_sent",
    3: "syn_recv",
    4: "fin_wait1",
    5: "fin_wait2",
    6: "time_wait",
    7: "close",
    8: "close_wait",
    9: "last_ack",
    10: "listen",
    11: "closing",
}

C, G, U = MetricType.COUNTER, MetricType.GAUGE, MetricType.UNKNOWN
#: TYPE and HELP of every fixed-name family, as node_exporter describes them.
FAMILIES: dict[str, tuple[MetricType, str]] = {
    "node_cpu_seconds_total": (C, "Seconds the CPUs spent in each mode."),
    "node_cpu_guest_seconds_total": (C, "Seconds the CPUs spent in guests (VMs) for each mode."),
    "node_load1": (G, "1m load average."),
    "node_load5": (G, "5m load average."),
    "node_load15": (G, "15m load average."),
    "node_boot_time_seconds": (G, "Node boot time, in unixtime."),
    "node_procs_running": (G, "Number of processes in runnable state."),
    "node_procs_blocked": (G, "Number of processes blocked waiting for I/O to complete."),
    "node_intr_total": (C, "Total number of interrupts serviced."),
    "node_context_switches_total": (C, "Total number of context switches."),
    "node_forks_total": (C, "Total number of forks."),
    "node_filesystem_size_bytes": (G, "Filesystem size in bytes."),
    "node_filesystem_free_bytes": (G, "Filesystem free space in bytes."),
    "node_filesystem_avail_bytes": (G, "Filesystem space available to non-root users in bytes."),
    "node_filesystem_files": (G, "Filesystem total file nodes."),
    "node_filesystem_files_free": (G, "Filesystem total free file nodes."),
    "node_filesystem_readonly": (G, "Filesystem read-only status."),
    "node_disk_reads_completed_total": (C, "The total number of reads completed successfully."),
    "node_disk_writes_completed_total": (C, "The total number of writes completed successfully."),
    "node_disk_reads_merged_total": (C, "The total number of reads merged."),
    "node_disk_writes_merged_total": (C, "The number of writes merged."),
    "node_disk_read_bytes_total": (C, "The total number of bytes read successfully."),
    "node_disk_written_bytes_total": (C, "The total number of bytes written successfully."),
    "node_disk_read_time_seconds_total": (C, "The total number of seconds spent by all reads."),
    "node_disk_write_time_seconds_total": (
        C,
        "This is the total number of seconds spent by all writes.",
    ),
    "node_disk_io_time_seconds_total": (C, "Total seconds spent doing I/Os."),
    "node_tcp_connection_states": (G, "Number of connection states."),
    "node_processes_pids": (G, "Number of PIDs"),
    "node_processes_threads": (G, "Allocated threads in system"),
    "node_processes_max_processes": (G, "Number of max PIDs limit"),
    "node_processes_max_threads": (G, "Limit of threads in the system"),
    "node_time_seconds": (G, "System time in seconds since epoch (1970)."),
    "node_uname_info": (G, "Labeled system information as provided by the uname system call."),
}
del C, G, U


@dataclass(frozen=True, slots=True)
class Point:
    """One value of one series, before the `job`/`instance` labels are added."""

    name: str
    labels: dict[str, str]
    value: float


def family_of(name: str) -> MetricMetadata:
    """TYPE and HELP for a series name, including node_exporter's generated families."""
    if name in FAMILIES:
        kind, text = FAMILIES[name]
        return MetricMetadata(name, kind, text)
    if name.startswith("node_memory_"):
        field = name.removeprefix("node_memory_")
        return MetricMetadata(name, MetricType.GAUGE, f"Memory information field {field}.")
    if name.startswith("node_network_"):
        key = name.removeprefix("node_network_").removesuffix("_total")
        return MetricMetadata(name, MetricType.COUNTER, f"Network device statistic {key}.")
    key = name.removeprefix("node_netstat_")
    return MetricMetadata(name, MetricType.UNKNOWN, f"Statistic {key.replace('_', '', 1)}.")


# --- readers: each returns its points, or raises OSError when its source is missing ----------


def _proc_lines(name: str) -> list[str]:
    return (PROC / name).read_text().splitlines()


def read_stat() -> Iterator[Point]:
    """/proc/stat: CPU seconds by CPU and mode, boot time, runnable and blocked processes."""
    ticks = float(os.sysconf("SC_CLK_TCK"))
    singles = {
        "btime": "node_boot_time_seconds",
        "procs_running": "node_procs_running",
        "procs_blocked": "node_procs_blocked",
        "intr": "node_intr_total",
        "ctxt": "node_context_switches_total",
        "processes": "node_forks_total",
    }
    for line in _proc_lines("stat"):
        key, *fields = line.split()
        if key.startswith("cpu") and key != "cpu":
            yield from _cpu_points(key[3:], [int(f) / ticks for f in fields])
        elif key in singles:
            yield Point(singles[key], {}, float(fields[0]))


def _cpu_points(cpu: str, seconds: list[float]) -> Iterator[Point]:
    for mode, value in zip(CPU_MODES, seconds, strict=False):
        yield Point("node_cpu_seconds_total", {"cpu": cpu, "mode": mode}, value)
    for mode, value in zip(("user", "nice"), seconds[8:10], strict=False):
        yield Point("node_cpu_guest_seconds_total", {"cpu": cpu, "mode": mode}, value)


def read_cpu_psutil() -> Iterator[Point]:
    """Where there is no /proc/stat: psutil's per-CPU times (CPUs numbered by position)."""
    for cpu, times in enumerate(psutil.cpu_times(percpu=True)):
        values = times._asdict()
        seconds = [values.get(mode, 0.0) for mode in CPU_MODES]
        seconds += [values.get("guest", 0.0), values.get("guest_nice", 0.0)]
        yield from _cpu_points(str(cpu), seconds)
    yield Point("node_boot_time_seconds", {}, psutil.boot_time())


def read_load() -> Iterator[Point]:
    for minutes, value in zip((1, 5, 15), psutil.getloadavg(), strict=True):
        yield Point(f"node_load{minutes}", {}, value)


def read_meminfo() -> Iterator[Point]:
    """Every /proc/meminfo field, named as node_exporter names it (`Active(anon)` →
    `node_memory_Active_anon_bytes`; kB fields in bytes, HugePages_* counts as they are)."""
    for line in _proc_lines("meminfo"):
        key, _, rest = line.partition(":")
        fields = rest.split()
        if not fields:
            continue
        name = key.replace("(", "_").replace(")", "")
        if len(fields) > 1 and fields[1] == "kB":
            yield Point(f"node_memory_{name}_bytes", {}, float(fields[0]) * 1024)
        else:
            yield Point(f"node_memory_{name}", {}, float(fields[0]))


def read_memory_psutil() -> Iterator[Point]:
    """Where there is no /proc/meminfo: the fields psutil has in common with it."""
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    yield Point("node_memory_MemTotal_bytes", {}, float(memory.total))
    yield Point("node_memory_MemAvailable_bytes", {}, float(memory.available))
    yield Point("node_memory_MemFree_bytes", {}, float(memory.free))
    yield Point("node_memory_SwapTotal_bytes", {}, float(swap.total))
    yield Point("node_memory_SwapFree_bytes", {}, float(swap.free))


def read_filesystems() -> Iterator[Point]:
    """statvfs of every mount node_exporter's default excludes keep, once per
    (device, mountpoint, fstype); sizes in f_bsize units, as node_exporter computes them."""
    seen: set[tuple[str, str, str]] = set()
    for part in psutil.disk_partitions(all=True):
        key = (part.device, part.mountpoint, part.fstype)
        if key in seen or _fs_excluded(part.mountpoint, part.fstype):
            continue
        seen.add(key)
        try:
            st = os.statvfs(part.mountpoint)
        except OSError as exc:
            log.debug("statvfs(%s) failed: %s", part.mountpoint, exc)
            continue
        labels = {"device": part.device, "mountpoint": part.mountpoint, "fstype": part.fstype}
        readonly = "ro" in part.opts.split(",")
        yield from _fs_points(labels, st, readonly)


def _fs_excluded(mountpoint: str, fstype: str) -> bool:
    return bool(MOUNT_POINTS_EXCLUDED.search(mountpoint) or FS_TYPES_EXCLUDED.search(fstype))


def _fs_points(labels: dict[str, str], st: os.statvfs_result, readonly: bool) -> Iterator[Point]:
    yield Point("node_filesystem_size_bytes", labels, float(st.f_blocks * st.f_bsize))
    yield Point("node_filesystem_free_bytes", labels, float(st.f_bfree * st.f_bsize))
    yield Point("node_filesystem_avail_bytes", labels, float(st.f_bavail * st.f_bsize))
    yield Point("node_filesystem_files", labels, float(st.f_files))
    yield Point("node_filesystem_files_free", labels, float(st.f_ffree))
    yield Point("node_filesystem_readonly", labels, 1.0 if readonly else 0.0)


def read_disks() -> Iterator[Point]:
    """Block devices (partitions, loop and RAM disks left out, as node_exporter does)."""
    for device, io in (psutil.disk_io_counters(perdisk=True) or {}).items():
        if DISKS_EXCLUDED.search(device):
            continue
        labels = {"device": device}
        yield Point("node_disk_reads_completed_total", labels, float(io.read_count))
        yield Point("node_disk_writes_completed_total", labels, float(io.write_count))
        yield Point("node_disk_read_bytes_total", labels, float(io.read_bytes))
        yield Point("node_disk_written_bytes_total", labels, float(io.write_bytes))
        yield Point("node_disk_read_time_seconds_total", labels, io.read_time / 1000)
        yield Point("node_disk_write_time_seconds_total", labels, io.write_time / 1000)
        for field, name in (("read_merged_count", "reads"), ("write_merged_count", "writes")):
            if hasattr(io, field):
                yield Point(f"node_disk_{name}_merged_total", labels, float(getattr(io, field)))
        if hasattr(io, "busy_time"):
            yield Point("node_disk_io_time_seconds_total", labels, io.busy_time / 1000)


_NETDEV = (
    ("bytes_recv", "receive_bytes"),
    ("bytes_sent", "transmit_bytes"),
    ("packets_recv", "receive_packets"),
    ("packets_sent", "transmit_packets"),
    ("errin", "receive_errs"),
    ("errout", "transmit_errs"),
    ("dropin", "receive_drop"),
    ("dropout", "transmit_drop"),
)


def read_network() -> Iterator[Point]:
    """Every network interface (node_exporter excludes none by default)."""
    for device, io in psutil.net_io_counters(pernic=True).items():
        values = io._asdict()
        for field, key in _NETDEV:
            yield Point(f"node_network_{key}_total", {"device": device}, float(values[field]))


def read_netstat() -> Iterator[Point]:
    """/proc/net/snmp's fields that node_exporter's netstat collector keeps by default."""
    lines = _proc_lines("net/snmp")
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        protocol, *names = header.split()
        for name, value in zip(names, values.split()[1:], strict=False):
            key = f"{protocol.rstrip(':')}_{name}"
            if NETSTAT_FIELDS.search(key):
                yield Point(f"node_netstat_{key}", {}, float(value))


def read_tcp_states() -> Iterator[Point]:
    """IPv4 and IPv6 TCP sockets by state, and their queued bytes (node_exporter's tcpstat)."""
    counts = dict.fromkeys(TCP_STATES.values(), 0.0)
    queued = {"tx_queued_bytes": 0.0, "rx_queued_bytes": 0.0}
    for name in ("net/tcp", "net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in _proc_lines(name)[1:]:
                fields = line.split()
                state = TCP_STATES.get(int(fields[3], 16))
                if state is not None:
                    counts[state] += 1
                tx, _, rx = fields[4].partition(":")
                queued["tx_queued_bytes"] += int(tx, 16)
                queued["rx_queued_bytes"] += int(rx, 16)
    for state, value in (counts | queued).items():
        yield Point("node_tcp_connection_states", {"state": state}, value)


def read_processes() -> Iterator[Point]:
    """PIDs and threads in use and their limits (node_exporter's processes collector)."""
    yield Point("node_processes_pids", {}, float(len(psutil.pids())))
    # The fourth field of /proc/loadavg is runnable/total scheduling entities: every thread.
    yield Point(
        "node_processes_threads", {}, float(_proc_lines("loadavg")[0].split()[3].split("/")[1])
    )
    for name, path in (
        ("max_processes", "sys/kernel/pid_max"),
        ("max_threads", "sys/kernel/threads-max"),
    ):
        yield Point(f"node_processes_{name}", {}, float(_proc_lines(path)[0]))


def read_uname() -> Iterator[Point]:
    uname = os.uname()
    try:
        domain = _proc_lines("sys/kernel/domainname")[0]
    except OSError:
        domain = ""
    labels = {
        "sysname": uname.sysname,
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
        "nodename": uname.nodename,
        "domainname": domain,
    }
    yield Point("node_uname_info", labels, 1.0)


#: Each source, with the psutil fallback used where its /proc file is missing.
READERS: tuple[tuple[Callable[[], Iterator[Point]], Callable[[], Iterator[Point]] | None], ...] = (
    (read_stat, read_cpu_psutil),
    (read_load, None),
    (read_meminfo, read_memory_psutil),
    (read_filesystems, None),
    (read_disks, None),
    (read_network, None),
    (read_netstat, None),
    (read_tcp_states, None),
    (read_processes, None),
    (read_uname, None),
)


def read_host() -> list[Point]:
    """Every reader's points; a reader whose source is missing or unreadable is left out."""
    points: list[Point] = []
    for reader, fallback in READERS:
        try:
            points += list(reader())
        except (OSError, ValueError, IndexError) as exc:
            if fallback is None:
                log.debug("host collector: %s failed: %s", reader.__name__, exc)
                continue
            points += list(fallback())
    return points


# --- the collector -----------------------------------------------------------------------------


class HostCollector:
    """Samples the host every `interval_ms` and writes the samples to `sink`."""

    def __init__(
        self,
        sink: Sink,
        clock: Clock,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        instance: str | None = None,
    ) -> None:
        if interval_ms <= 0:
            raise ConfigError(
                f"OPSMETRICS_COLLECT_HOST_INTERVAL: {interval_ms} ms is not a positive duration; "
                "use e.g. 15s"
            )
        self._sink = sink
        self._clock = clock
        self.interval_ms = interval_ms
        self.instance = instance or socket.gethostname()
        #: Ticks skipped because the previous collection (or its write) was still running.
        self.skipped = 0
        self._series: set[Labels] = set()
        self._task: asyncio.Task[None] | None = None

    def collect(self) -> DecodedSamples:
        """One collection, stamped with the clock (blocking: run it off the event loop)."""
        ts = self._clock.now_ms()
        points = [*read_host(), Point("node_time_seconds", {}, ts / 1000)]
        builder, families = SampleBatchBuilder(), dict[str, MetricMetadata]()
        base = {"job": JOB, "instance": self.instance}
        current: set[Labels] = set()
        for point in points:
            labels = make_labels({**point.labels, METRIC_NAME: point.name, **base})
            builder.add(labels, ts, point.value)
            current.add(labels)
            if point.name not in families:
                families[point.name] = family_of(point.name)
        # Series that were there last time and are gone now (an unmounted filesystem, a
        # removed interface) end with a stale marker, as a scrape of node_exporter would.
        for labels in sorted(self._series - current):
            builder.add(labels, ts, STALE_NAN)
        self._series = current
        return DecodedSamples(builder.build(), list(families.values()))

    async def collect_once(self) -> DecodedSamples:
        """Collect in a daemon thread, write the result to the sink and return it."""
        decoded = await _in_daemon_thread(self.collect)
        await self._sink(decoded)
        return decoded

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="host collector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval, start, tick = self.interval_ms / 1000, loop.time(), 0
        busy: asyncio.Task[None] | None = None
        try:
            while True:
                if busy is None or busy.done():
                    busy = asyncio.create_task(self._collect_logged())
                else:
                    self.skipped += 1
                    log.warning("host collector: tick skipped, the last collection is running")
                tick += 1
                await asyncio.sleep(max(0.0, start + tick * interval - loop.time()))
        finally:
            if busy is not None:
                busy.cancel()

    async def _collect_logged(self) -> None:
        try:
            await self.collect_once()
        except Exception:
            log.exception("host collector: writing a collection failed")


async def _in_daemon_thread(fn: Callable[[], T]) -> T:
    """fn() in a daemon thread: one stuck in the kernel (a hung NFS mount) cannot hold up
    the process's exit as a thread of the default executor would."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        # A running future cannot be cancelled, so the result can always be set after this.
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="host collector", daemon=True).start()
    return await asyncio.wrap_future(future)


@contextlib.asynccontextmanager
async def running(collector: HostCollector) -> AsyncIterator[HostCollector]:
    """`async with running(collector):` runs the collection loop and stops it on exit."""
    await collector.start()
    try:
        yield collector
    finally:
        await collector.stop()
