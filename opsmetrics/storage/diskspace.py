"""Free space of the filesystem a store writes to, checked before every write.

A DuckDB file on a full disk is the failure this guards against: a commit that cannot append
to the WAL fails cleanly, but a checkpoint that cannot write its blocks invalidates the
database until it is reopened. So writes are refused while the filesystem has less free than a
reserve (OPSMETRICS_MIN_FREE_BYTES), which leaves room for the checkpoints of what was already
acknowledged; and when a write does hit ENOSPC anyway (the reserve is 0, or something else
filled the disk), the guard remembers it until a write succeeds or a probe file fits again.
Either way the caller gets an InsufficientStorageError (HTTP 507 with Retry-After) and nothing
of the request is stored.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from opsmetrics.errors import InsufficientStorageError

log = logging.getLogger(__name__)

#: errnos (and their messages, which is all DuckDB's exceptions carry) that mean "no room".
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_MESSAGES = tuple(os.strerror(e) for e in NO_SPACE_ERRNOS)
#: After a write found no room, how often a status check tries the probe file again.
PROBE_INTERVAL_S = 1.0
PROBE_BYTES = 64 * 1024
PROBE_FILE = ".opsmetrics-space-probe"

BELOW_RESERVE = "below_reserve"
DISK_FULL = "disk_full"


@dataclass(frozen=True, slots=True)
class DiskStatus:
    """For /readyz and /metrics: can this directory take writes, and how much room is left."""

    directory: str
    free_bytes: int
    min_free_bytes: int
    #: Empty when writes are accepted; else BELOW_RESERVE or DISK_FULL.
    reason: str = ""

    @property
    def writable(self) -> bool:
        return not self.reason


def is_no_space(exc: BaseException) -> bool:
    """Whether `exc` (or an error it was raised from) says the filesystem has no room."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in NO_SPACE_ERRNOS:
            return True
        if any(m in str(seen) for m in NO_SPACE_MESSAGES):
            return True
        seen = seen.__cause__
    return False


class DiskGuard:
    """Refuses writes to `directory` while its filesystem is short of space."""

    def __init__(self, directory: Path, min_free_bytes: int) -> None:
        self.directory = directory
        self.min_free_bytes = min_free_bytes
        self._lock = threading.Lock()
        self._full = False
        self._below = False  # for logging the change only, not every refused request
        self._probed_at = 0.0

    def free_bytes(self) -> int:
        st = os.statvfs(self.directory)
        return int(st.f_bavail * st.f_frsize)

    def check(self) -> None:
        """Raise InsufficientStorageError when a write must not be tried: below the reserve.

        After an ENOSPC the write is still tried (it is the cheapest test of whether room has
        come back); the caller reports a new ENOSPC with `no_space`."""
        free = self.free_bytes()
        self._log_change(free)
        if free < self.min_free_bytes:
            raise InsufficientStorageError(
                f"not written: the filesystem of {self.directory} has {free} bytes free, less "
                f"than the reserve of {self.min_free_bytes} (OPSMETRICS_MIN_FREE_BYTES); "
                "nothing of this request was stored. Free disk space there; writes resume by "
                "themselves, so retry later",
                reason=BELOW_RESERVE,
            )

    def _log_change(self, free: int) -> None:
        below = free < self.min_free_bytes
        if below == self._below:
            return
        self._below = below
        if below:
            log.error(
                "%s: %d bytes free, less than the reserve of %d (OPSMETRICS_MIN_FREE_BYTES); "
                "refusing writes",
                self.directory,
                free,
                self.min_free_bytes,
            )
        else:
            log.warning("%s: %d bytes free again; accepting writes", self.directory, free)

    def no_space(self, exc: BaseException) -> InsufficientStorageError:
        """Remember that a write hit ENOSPC; the error to raise instead of `exc`."""
        with self._lock:
            if not self._full:
                log.error("%s: the filesystem is full (%s); refusing writes", self.directory, exc)
            self._full = True
        return InsufficientStorageError(
            f"not written: the filesystem of {self.directory} is full (no space left on "
            "device); nothing of this request was stored. Free disk space there; writes "
            "resume by themselves, so retry later",
            reason=DISK_FULL,
        )

    def written(self) -> None:
        """A write went through: whatever was full has room again."""
        if self._full:
            with self._lock:
                if self._full:
                    log.warning("%s: writes succeed again", self.directory)
                self._full = False

    def status(self) -> DiskStatus:
        free = self.free_bytes()
        reason = ""
        if free < self.min_free_bytes:
            reason = BELOW_RESERVE
        elif self._still_full():
            reason = DISK_FULL
        return DiskStatus(str(self.directory), free, self.min_free_bytes, reason)

    def _still_full(self) -> bool:
        """After an ENOSPC: whether a small probe file still does not fit (tried once a
        second at most), so /readyz recovers even while no write comes in."""
        with self._lock:
            if not self._full:
                return False
            now = time.monotonic()
            if now - self._probed_at < PROBE_INTERVAL_S:
                return True
            self._probed_at = now
            if not _probe_fits(self.directory / PROBE_FILE):
                return True
            self._full = False
        log.warning("%s: the filesystem has room again", self.directory)
        return False


def _probe_fits(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            written = os.write(fd, bytes(PROBE_BYTES))  # short on a nearly full disk
            os.fsync(fd)
        finally:
            os.close(fd)
        return written == PROBE_BYTES
    except OSError as exc:
        if not is_no_space(exc):
            log.warning("%s: space probe failed: %s", path, exc)
        return False
    finally:
        path.unlink(missing_ok=True)
