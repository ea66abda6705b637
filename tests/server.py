"""A real opsmetrics server process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from opsmetrics.clock import ALLOW_FAKE_NOW_ENV, FAKE_NOW_ENV, pause


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    """`check()`'s first truthy answer, polled every 0.2 s; an AssertionError naming `what`
    after `timeout_s`. (`pause`, not time.sleep: see tests/README.md on libfaketime.)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        pause(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def run_bounded(
    args: list[str], timeout_s: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """subprocess.run(capture_output=True, text=True), killed after `timeout_s`.

    subprocess.run's own timeout waits with time.sleep, which fails under the libfaketime
    settings of the clock runs (tests/README.md); a timer thread waits on a condition instead.
    """
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        out, err = proc.communicate()
    finally:
        timer.cancel()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@dataclass
class ServerProcess:
    data_dir: Path
    config_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    #: The server's clock starts here (ms) instead of at the real time: OPSMETRICS_FAKE_NOW.
    now_ms: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: time.monotonic() when the server first answered /readyz; `clock_ms` counts from here.
    ready_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        args = [
            sys.executable,
            "-m",
            "opsmetrics",
            "serve",
            "--data",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
        ]
        if self.config_dir is not None:
            args += ["--config", str(self.config_dir)]
        env = {**os.environ, **self.env}
        if self.now_ms is not None:
            env |= {FAKE_NOW_ENV: str(self.now_ms / 1000), ALLOW_FAKE_NOW_ENV: "1"}
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    self.ready_at = time.monotonic()
                    return
            except httpx.HTTPError:
                pass
            pause(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.log()}")

    def clock_ms(self) -> int:
        """The server's clock now, for a server started with `now_ms`: that instant plus the
        real (monotonic) time since it became ready. Its clock started a moment before it
        answered /readyz, so this is at most that moment behind it, never ahead."""
        assert self.now_ms is not None and self.ready_at is not None, "started with now_ms?"
        return self.now_ms + int((time.monotonic() - self.ready_at) * 1000)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            # Popen.wait(timeout) polls with time.sleep (see run_bounded); a timer kills instead.
            killed = threading.Event()
            proc = self.proc

            def kill() -> None:
                killed.set()
                proc.kill()

            timer = threading.Timer(timeout, kill)
            timer.start()
            proc.wait()
            timer.cancel()
            if killed.is_set():
                raise AssertionError(f"server did not stop within {timeout} s of SIGTERM")
        return int(self.proc.returncode)
