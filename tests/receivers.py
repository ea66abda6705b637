"""Real loopback HTTP receivers for notifier tests: record requests, answer from a script."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each request with the next (status, headers, body) of `script`, then `default`."""

    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    default: tuple[int, dict[str, str], bytes] = (200, {}, b"ok")
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else self.default

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        event = threading.Event()
        for _ in range(int(timeout_s * 100)):
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            event.wait(0.01)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            status, headers, reply = receiver.answer(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def receiver(
    script: list[tuple[int, dict[str, str], bytes]] | None = None,
    default: tuple[int, dict[str, str], bytes] = (200, {}, b"ok"),
) -> Iterator[Receiver]:
    rec = Receiver(list(script or []), default)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
