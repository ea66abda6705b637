"""A full disk (issue 17 item 5): writes answer 507 and store nothing, reads go on, /readyz and
/metrics say why, and writes resume by themselves once space is back, nothing acknowledged lost.

The disk is real: each test makes a 64 MiB ext4 image, loop-mounts it (we are root on the CI
machine) and puts the data directory on it; a ballast file fills it. No fault is injected:
DuckDB, the spool and the probe file meet the kernel's own ENOSPC. Without the right to mount,
the tests fail and say so rather than skip: CI runs them as root on this machine.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from opsmetrics.clock import FakeClock
from opsmetrics.errors import InsufficientStorageError, StorageUnavailableError
from opsmetrics.model import Matcher, MatchOp, Series
from opsmetrics.storage.alert_records import SilenceRow
from opsmetrics.storage.base import WriteBatch
from opsmetrics.storage.diskspace import PROBE_FILE, DiskGuard
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.spool import SUFFIX, Spool
from opsmetrics.web.errors import status_for
from tests.server import ServerProcess, run_bounded, wait_until

MIB = 1024 * 1024
#: The servers' clock starts here: Monday 2026-12-07 00:46 UTC (and moves on across restarts).
NOW = 1_796_604_360_000
SERIES = 200  # per request: a few kB of WAL, more than the slack of a full disk's last block


# --- the small filesystem -------------------------------------------------------------------


@contextmanager
def small_filesystem(root: Path, size_mib: int = 64) -> Iterator[Path]:
    """An ext4 filesystem of `size_mib` mounted at root/fs (no blocks reserved for root)."""
    image, mount = root / "fs.img", root / "fs"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(size_mib * MIB)
    made = run_bounded(["mkfs.ext4", "-q", "-m", "0", str(image)], 60)
    assert made.returncode == 0, f"mkfs.ext4 failed: {made.stderr}"
    mounted = run_bounded(["mount", "-o", "loop", str(image), str(mount)], 60)
    if mounted.returncode != 0:
        pytest.fail(
            f"cannot loop-mount a test filesystem ({mounted.stderr.strip()}): these tests need "
            "root and loop devices (mount -o loop), which the CI machine has"
        )
    try:
        yield mount
    finally:
        if run_bounded(["umount", str(mount)], 60).returncode != 0:
            run_bounded(["umount", "-l", str(mount)], 60)  # a process still holds a file
        image.unlink()


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path) as mount:
        yield mount


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def fill(directory: Path, leave_bytes: int = 0) -> Path:
    """A ballast file that leaves about `leave_bytes` free (0: until the kernel says ENOSPC)."""
    path = directory / "ballast"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (MIB, 64 * 1024, 4096):
            while free_bytes(directory) - chunk >= leave_bytes:
                try:
                    os.write(fd, bytes(chunk))
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
        os.fsync(fd)
    finally:
        os.close(fd)
    assert free_bytes(directory) <= leave_bytes + 4096
    return path


# --- HTTP helpers ---------------------------------------------------------------------------


def post_samples(srv: ServerProcess, metric: str, ts: int) -> httpx.Response:
    body = [{"name": metric, "labels": {"s": str(i)}, "samples": [[ts, i]]} for i in range(SERIES)]
    return httpx.post(srv.url + "/api/v1/samples", json=body, timeout=30)


def post_events(srv: ServerProcess, name: str, ts: int) -> httpx.Response:
    lines = "\n".join(
        f'{{"name":"{name}","ts":{ts},"entity":"u{i}","id":"{name}-{i}"}}' for i in range(SERIES)
    )
    headers = {"content-type": "application/x-ndjson"}
    return httpx.post(srv.url + "/api/v1/events", content=lines, headers=headers, timeout=30)


def write_acknowledged(srv: ServerProcess, name: str, ts: int) -> None:
    """SERIES samples of metric `name` and SERIES events named `name`, both answered 200."""
    for r in (post_samples(srv, name, ts), post_events(srv, name, ts)):
        assert r.status_code == 200, r.text


def stored_samples(srv: ServerProcess, metric: str, at_ms: int) -> int:
    """How many samples of `metric` the query API returns in the 3 h before `at_ms`."""
    r = httpx.get(
        srv.url + "/api/v1/query",
        params={"query": f"count_over_time({metric}[3h])", "time": str(at_ms / 1000)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return sum(int(item["value"][1]) for item in r.json()["data"]["result"])


def stored_events(srv: ServerProcess, name: str, at_ms: int) -> int:
    params = {
        "name": name,
        "agg": "count",
        "grain": "day",
        "start": str((at_ms - 86_400_000) / 1000),
        "end": str((at_ms + 86_400_000) / 1000),
    }
    r = httpx.get(srv.url + "/api/v1/events/aggregate", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return sum(int(row["value"] or 0) for row in r.json()["data"]["buckets"])


def assert_refused(r: httpx.Response, reason_words: str) -> None:
    assert r.status_code == 507, r.text
    assert r.headers["Retry-After"] == "10"
    body = r.json()
    assert body["errorType"] == "unavailable"
    assert reason_words in body["error"], body
    assert "nothing of this request was stored" in body["error"]


def metric_lines(srv: ServerProcess, name: str) -> list[str]:
    text = httpx.get(srv.url + "/metrics", timeout=30).text
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def ready(srv: ServerProcess) -> httpx.Response:
    return httpx.get(srv.url + "/readyz", timeout=30)


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.e2e
def test_below_the_reserve_writes_get_507_reads_go_on_and_writes_resume(fs: Path) -> None:
    """The common case: the reserve (OPSMETRICS_MIN_FREE_BYTES) refuses writes cleanly before
    DuckDB would meet ENOSPC; freeing space is all it takes, no restart."""
    env = {"OPSMETRICS_MIN_FREE_BYTES": str(16 * MIB)}
    srv = ServerProcess(fs, env=env, now_ms=NOW)
    try:
        srv.start()
        t0 = srv.clock_ms()
        write_acknowledged(srv, "fd_before", t0)

        ballast = fill(fs, leave_bytes=8 * MIB)
        assert_refused(post_samples(srv, "fd_refused", srv.clock_ms()), "OPSMETRICS_MIN_FREE_BYTES")
        assert_refused(post_events(srv, "fd_refused", srv.clock_ms()), "less than the reserve")

        now = srv.clock_ms()
        assert stored_samples(srv, "fd_before", now) == SERIES  # reads go on
        assert stored_events(srv, "fd_before", now) == SERIES
        assert stored_samples(srv, "fd_refused", now) == 0  # nothing of a refused request
        assert stored_events(srv, "fd_refused", now) == 0
        r = ready(srv)
        assert r.status_code == 503
        assert "less than the reserve" in r.json()["reason"]
        assert r.json()["disks"][0]["reason"] == "below_reserve"
        directory = str(fs)
        writable = metric_lines(srv, "opsmetrics_storage_writable")
        assert writable == [
            f'opsmetrics_storage_writable{{directory="{directory}",reason="below_reserve"}} 0.0'
        ]
        (free_line,) = metric_lines(srv, "opsmetrics_storage_free_bytes")
        assert 0 < float(free_line.split()[-1]) < 16 * MIB
        rejected = metric_lines(srv, "opsmetrics_ingest_rejected_total")
        assert 'opsmetrics_ingest_rejected_total{reason="below_reserve"} 2.0' in rejected

        ballast.unlink()
        wait_until(lambda: ready(srv).status_code == 200, "/readyz ready once space is back")
        t1 = srv.clock_ms()
        write_acknowledged(srv, "fd_after", t1)
        assert metric_lines(srv, "opsmetrics_storage_writable") == [
            f'opsmetrics_storage_writable{{directory="{directory}",reason=""}} 1.0'
        ]
        later = srv.clock_ms() + 60_000
    finally:
        srv.kill()
    assert_all_there_after_restart(fs, env, later, refused="fd_refused")


def assert_all_there_after_restart(
    fs: Path, env: dict[str, str], now_ms: int, refused: str
) -> None:
    """kill -9 happened; a new server on the same directory has every acknowledged write."""
    srv = ServerProcess(fs, env=env, now_ms=now_ms)
    try:
        srv.start()
        at = srv.clock_ms()
        for name in ("fd_before", "fd_after"):
            assert stored_samples(srv, name, at) == SERIES, name
            assert stored_events(srv, name, at) == SERIES, name
        assert stored_samples(srv, refused, at) == 0
        assert stored_events(srv, refused, at) == 0
    finally:
        srv.kill()


@pytest.mark.e2e
def test_a_really_full_disk_gets_507_and_recovers_without_restart(fs: Path) -> None:
    """No reserve: DuckDB's own WAL write meets ENOSPC; the request is refused, not lost."""
    env = {"OPSMETRICS_MIN_FREE_BYTES": "0"}
    srv = ServerProcess(fs, env=env, now_ms=NOW)
    try:
        srv.start()
        t0 = srv.clock_ms()
        write_acknowledged(srv, "fd_before", t0)

        ballast = fill(fs)
        assert_refused(post_samples(srv, "fd_refused", srv.clock_ms()), "is full")
        assert_refused(post_events(srv, "fd_refused", srv.clock_ms()), "is full")
        # A refused WAL append is rolled back and gives its blocks back: fill them again, or
        # /readyz's probe file (tried once a second) may fit and rightly say "ready".
        fill(fs)

        now = srv.clock_ms()
        assert stored_samples(srv, "fd_before", now) == SERIES
        assert stored_samples(srv, "fd_refused", now) == 0
        assert stored_events(srv, "fd_refused", now) == 0
        r = ready(srv)
        assert r.status_code == 503, r.text
        assert r.json()["disks"][0]["reason"] == "disk_full"
        assert "no space left" in r.json()["reason"]
        assert metric_lines(srv, "opsmetrics_storage_writable") == [
            f'opsmetrics_storage_writable{{directory="{fs}",reason="disk_full"}} 0.0'
        ]

        ballast.unlink()
        # /readyz finds room by itself (a probe file), before any write comes in.
        wait_until(lambda: ready(srv).status_code == 200, "/readyz ready once space is back")
        assert not (fs / PROBE_FILE).exists()
        t1 = srv.clock_ms()
        write_acknowledged(srv, "fd_after", t1)
        later = srv.clock_ms() + 60_000
    finally:
        srv.kill()
    assert_all_there_after_restart(fs, env, later, refused="fd_refused")


# --- the stores on a full disk, in this process ---------------------------------------------


def batch(first_id: int, n: int, ts: int, new: bool = True) -> WriteBatch:
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    series = [Series(int(i), (("__name__", "fd"), ("s", str(i)))) for i in ids] if new else []
    return WriteBatch(
        new_series=series, series_ids=ids, ts=np.full(n, ts, np.int64), values=ids * 1.0
    )


def stored(store: DuckDBStorage) -> int:
    found = store.select_series([Matcher("__name__", MatchOp.EQ, "fd")])
    return len(store.read_samples([s.id for s in found], NOW - 3_600_000, NOW + 3_600_000).ts)


def stored_after_reopen(directory: Path) -> int:
    store = DuckDBStorage(directory, now_ms=NOW)
    try:
        return stored(store)
    finally:
        store.close()


def test_a_checkpoint_on_a_full_disk_reopens_the_database_and_keeps_every_commit(
    fs: Path,
) -> None:
    """DuckDB invalidates the database when a checkpoint finds no room; the store reopens it
    at once (the WAL holds every commit), reads go on, and writes work once space is back."""
    store = DuckDBStorage(fs / "data", now_ms=NOW)
    try:
        store.write(batch(0, 20_000, NOW))  # in the WAL, not yet checkpointed
        ballast = fill(fs)
        with pytest.raises(InsufficientStorageError, match="is full"):
            store.checkpoint()
        assert stored(store) == 20_000  # reopened: reads go on
        assert store.disk_status()[0].reason == "disk_full"
        with pytest.raises(InsufficientStorageError):
            store.write(batch(20_000, 20_000, NOW))
        assert stored(store) == 20_000
        ballast.unlink()
        store.write(batch(20_000, 20_000, NOW))
        assert store.disk_status()[0].writable
        assert stored(store) == 40_000
    finally:
        store.close()
    assert stored_after_reopen(fs / "data") == 40_000


def test_the_checkpoint_after_a_commit_waits_for_room_and_the_wal_takes_the_writes(
    fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the WAL passes 16 MiB the store checkpoints after the commit, but only with room
    for it (DuckDB's own checkpoint at commit, which crashed the process now and then on a
    full disk, is off). Without room the WAL takes the writes until the disk is really full;
    then writes are refused; what was acknowledged is what is stored; with room back the
    checkpoint runs and the WAL shrinks."""
    store = DuckDBStorage(fs / "data", now_ms=NOW)
    wal = fs / "data" / "opsmetrics.duckdb.wal"
    step = 50_000  # below DuckDB's row group size: the rows go to the WAL, not the file
    store.write(batch(0, step, NOW))
    acked, ts = step, NOW
    while wal.stat().st_size < 14 * MIB:
        ts += 1
        store.write(batch(0, step, ts, new=False))
        acked += step
    ballast = fill(fs, leave_bytes=3 * MIB)  # room for more WAL, not for a checkpoint
    refused = 0
    try:
        for _ in range(60):
            ts += 1
            try:
                store.write(batch(0, step, ts, new=False))
                acked += step
            except InsufficientStorageError:
                refused += 1
                break
        assert refused == 1, "the disk never filled up"
        assert wal.stat().st_size > 16 * MIB  # past the threshold: the checkpoint waited
        assert any("checkpoint put off" in r.getMessage() for r in caplog.records)
        assert not any("reopened" in r.getMessage() for r in caplog.records)
        assert stored(store) == acked
        ballast.unlink()
        store.write(batch(0, step, ts + 1, new=False))
        acked += step
        assert not wal.exists() or wal.stat().st_size < MIB  # checkpointed: room was back
        assert stored(store) == acked
    finally:
        store.close()
    assert stored_after_reopen(fs / "data") == acked


def test_closing_on_a_full_disk_keeps_the_wal_for_the_next_start(fs: Path) -> None:
    store = DuckDBStorage(fs / "data", now_ms=NOW)
    store.write(batch(0, 20_000, NOW))
    ballast = fill(fs)
    store.close()  # its checkpoint fails: logged, the WAL stays
    ballast.unlink()
    assert stored_after_reopen(fs / "data") == 20_000


def test_the_reserve_refuses_state_writes_too_and_nothing_is_written(
    fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Silences, acknowledgements and the notification log write through the same guarded
    transaction as samples and events."""
    guard = DiskGuard(fs / "data", 16 * MIB)
    (fs / "data").mkdir()
    store = DuckDBStorage(fs / "data", now_ms=NOW, disk=guard)
    silence = SilenceRow("s1", "[]", NOW, NOW + 3_600_000, "ops", "disk test", NOW)
    try:
        ballast = fill(fs, leave_bytes=8 * MIB)
        for _ in range(3):
            with pytest.raises(InsufficientStorageError, match="OPSMETRICS_MIN_FREE_BYTES"):
                store.save_silence(silence)
        assert store.silences() == []
        refusing = [r for r in caplog.records if "refusing writes" in r.getMessage()]
        assert len(refusing) == 1  # logged when it starts, not for every refused write
        assert store.disk_status()[0].reason == "below_reserve"
        ballast.unlink()
        store.save_silence(silence)
        assert [s.id for s in store.silences()] == ["s1"]
    finally:
        store.close()


def test_a_full_spool_disk_refuses_the_batch_and_leaves_no_file(fs: Path) -> None:
    """The spool in front of a store that is down: a batch that does not fit on its disk is
    refused (507), no half-written file stays, and spooling works again once space is back."""

    def down(_: WriteBatch) -> None:
        raise StorageUnavailableError("connection refused (test outage)")

    directory = fs / "spool"
    spool = Spool(directory, down, FakeClock(NOW), max_bytes=1024 * MIB)
    try:
        ballast = fill(fs)
        with pytest.raises(InsufficientStorageError, match="is full"):
            spool.write(batch(0, 50_000, NOW))
        assert list(directory.glob("*" + SUFFIX)) == []
        assert list(directory.glob("*.tmp")) == []
        assert spool.stats().batches == 0
        ballast.unlink()
        spool.write(batch(0, 50_000, NOW))
        assert spool.stats().batches == 1
        assert spool.disk.status().writable
    finally:
        spool.close()


def test_otlp_senders_get_503_for_a_full_disk() -> None:
    """OTLP/HTTP senders drop data on any code but 429/502/503/504; everyone else gets 507."""
    exc = InsufficientStorageError("full")
    assert status_for(exc, "/v1/metrics") == 503
    assert status_for(exc, "/api/v1/write") == 507
    assert status_for(StorageUnavailableError("down"), "/api/v1/write") == 503


def test_the_filesystem_helper_really_fills_the_disk(fs: Path) -> None:
    ballast = fill(fs)
    with pytest.raises(OSError) as caught, (fs / "more").open("wb") as f:
        f.write(bytes(MIB))
        f.flush()
        os.fsync(f.fileno())
    assert caught.value.errno == errno.ENOSPC
    ballast.unlink()
    assert free_bytes(fs) > 50 * MIB
