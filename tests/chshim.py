"""TEST DOUBLE of a ClickHouse server: ClickHouse's HTTP interface in front of chdb.

NOT a ClickHouse server. It speaks enough of the HTTP interface for clickhouse-connect's
ordinary `get_client(host=, port=)` path (with or without compression) and runs every
statement in chdb (ClickHouse's engine, in this process), so the real HTTP transport of the
client (urllib3, headers, compression, error mapping) gets exercised without a server. One
process owns one chdb data path, so two opsmetrics processes can share one engine through it.

    python tests/chshim.py --path DIR --port PORT [--host 127.0.0.1]   # SIGTERM stops it
    server, port = serve(path); ...; stop(server)                      # daemon thread
    proc, port = start_process(path); ...; stop_process(proc)          # subprocess

What it does: /ping; GET and POST (URL `query` + "\\n" + body); `database` / X-ClickHouse-Database;
`default_format`; `param_*` as chdb query parameters; every other non-transport URL parameter
as a per-query setting (SET, then restored, so it never leaks into the next query); one chdb
connection per `session_id` (temporary tables and SET persist per client, idle sessions expire
after `session_timeout`); `INSERT ... FORMAT <fmt>\\n<data>` rewritten to `FROM INFILE` on a
temp file; chunked and lz4 (several frames) / zstd / gzip / deflate request bodies; compressed
responses on `enable_http_compression=1`; the X-ClickHouse-* response headers and error codes.

multipart/form-data bodies (clickhouse-connect sends one when its `{p:Type}` parameters pass
~4 KB, with `form_encode_query_params=True`, and for external data), as ClickHouse reads them:
text fields join the URL parameters (the URL wins a name clash), so `query`, `param_<name>` and
settings may come in either; a part with a `filename` is external data: table `<name>`
(`_data` if unnamed) with `<name>_structure` ("a UInt32, s String") or `<name>_types`
("UInt32,String": columns _1, _2, ...) and `<name>_format` (default TabSeparated). Those three
are not settings when the body is multipart (unless a real setting is so named). The shim makes
each external table a `CREATE TEMPORARY TABLE ... ENGINE = Memory` on the query's chdb
connection, loads it `FROM INFILE`, runs the query, then drops it. Divergence: if the client's
session already has a temporary table of that name, the shim fails with TABLE_ALREADY_EXISTS
(57) where ClickHouse's per-query table would shadow it. No http_max_field_value_size or
http_max_multipart_form_data_size limits.

Not implemented: auth (credentials are accepted and ignored), streaming (a result is built in
full, then sent), progress headers, readonly GET, concurrent queries (one engine lock serialises
all statements), TCP.
../shared/research/clickhouse-testing.md lists the divergences from a real server.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.utils
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from collections import deque
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import lz4.frame

try:
    from backports import zstd
except ImportError:  # Python 3.14+
    from compression import zstd  # type: ignore[import-not-found, no-redef]

TRANSPORT = {
    "query", "database", "default_format", "session_id", "session_timeout", "session_check",
    "query_id", "quota_key", "compress", "decompress", "wait_end_of_query", "user", "password",
    "client_protocol_version", "role", "send_progress_in_http_headers", "buffer_size",
    "http_headers_progress_interval_ms", "enable_http_compression",
}  # fmt: skip
RESULT_KEYWORDS = {"SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "EXISTS", "EXPLAIN", "CHECK"}
STATUS_BY_CODE = {
    **dict.fromkeys((164, 192, 193, 194, 497, 516), 403),  # readonly, auth, access
    **dict.fromkeys((46, 47, 50, 56, 60, 63, 73, 81, 115, 372), 404),  # unknown things
    **dict.fromkeys((6, 27, 36, 53, 62, 69, 117, 167, 168, 169, 170), 400),  # parse, args
    48: 501,
}
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CODE_RE = re.compile(r"Code: (\d+)")
FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
INSERT_RE = re.compile(rb"^\s*(INSERT\s+INTO\s.*?)\bFORMAT\s+(\w+)[ \t]*\r?\n", re.I | re.S)
LEADING_RE = re.compile(r"^(?:\s+|--[^\n]*\n|/\*.*?\*/|\()*(\w+)", re.S)
EXTERNAL_SUFFIXES = ("_format", "_types", "_structure")  # not settings in a multipart request


class ShimError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Session:
    def __init__(self, conn: Any, timeout: float) -> None:
        self.conn, self.timeout, self.used = conn, timeout, time.monotonic()


class ShimServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, path: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        if not (host == "localhost" or host.startswith("127.")):
            raise ValueError(f"chshim listens on loopback only, not {host!r}")
        import chdb  # here, so that importing this module does not load the engine

        self.chdb, self.path = chdb, str(path)
        self.lock = threading.Lock()  # chdb: one statement at a time, engine-wide
        self.sessions: dict[str, Session] = {}
        # Held open for the server's life: when chdb's last connection closes, the engine
        # shuts down and the next request starts it again (slow, and under load it can fail
        # with "Error initializing EmbeddedServer"). A real server's engine stays up too.
        self.keeper = chdb.connect(self.path)
        self.tz = self.keeper.query("SELECT timezone()", "TSV").bytes().decode().strip()
        names = self.keeper.query("SELECT name FROM system.settings", "TSV").bytes().decode()
        self.setting_names = set(names.split())
        super().__init__((host, port), Handler)
        self.port: int = self.server_address[1]

    def close_sessions(self) -> None:
        with self.lock:
            for s in self.sessions.values():
                s.conn.close()
            self.sessions.clear()

    def server_close(self) -> None:
        super().server_close()
        self.close_sessions()
        with self.lock:
            self.keeper.close()


def decompress(data: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return data
    if encoding == "lz4":  # one frame per insert block: lz4.frame.decompress reads only the first
        out = []
        while data:
            d = lz4.frame.LZ4FrameDecompressor()
            out.append(d.decompress(data))
            if not d.eof:
                raise ShimError("truncated lz4 frame in request body", 432)
            data = d.unused_data
        return b"".join(out)
    if encoding == "zstd":
        return zstd.decompress(data)  # all frames
    if encoding == "gzip":
        return gzip.decompress(data)  # all members
    if encoding == "deflate":
        return zlib.decompress(data)
    raise ShimError(f"Unknown Content-Encoding {encoding!r}", 432)


COMPRESSORS: dict[str, Any] = {
    "lz4": lz4.frame.compress,
    "zstd": zstd.compress,
    "gzip": lambda data: gzip.compress(data, 1),
    "deflate": lambda data: zlib.compress(data, 1),
}


def compress(data: bytes, accept: str) -> tuple[bytes, str | None]:
    """The first of the client's Accept-Encoding that the shim can do, like ClickHouse."""
    for enc in (e.split(";")[0].strip() for e in accept.split(",")):
        if enc in COMPRESSORS:
            return COMPRESSORS[enc](data), enc
    return data, None


def parse_multipart(body: bytes, boundary: str | None) -> tuple[dict[str, str], dict[str, bytes]]:
    """The text fields and the file parts (by field name) of a multipart/form-data body.

    Split on the delimiter itself, so part contents come back byte for byte (CR, LF, binary);
    only each part's headers go through `email`. The first of two same-named fields wins.
    """
    if not boundary:
        raise ShimError("multipart/form-data without a boundary", 36)
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        raise ShimError("multipart/form-data body without its closing delimiter", 36)
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for chunk in chunks[1:-1]:
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ShimError("multipart/form-data part without a blank line after its headers", 36)
        part = email.message_from_bytes(head.lstrip(b" \t").removeprefix(b"\r\n") + b"\r\n\r\n")
        name = part.get_param("name", header="content-disposition")
        name = email.utils.collapse_rfc2231_value(name) if name is not None else None
        if part.get_param("filename", header="content-disposition") is not None:
            files.setdefault(name or "_data", content)
        elif name is not None:
            fields.setdefault(name, content.decode())
    return fields, files


def split_types(types: str) -> list[str]:
    """`UInt32,Tuple(a UInt8, b String)` -> the types, split at top-level commas only."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(types):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(types[start:i].strip())
            start = i + 1
    return [*out, types[start:].strip()]


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handler(BaseHTTPRequestHandler):
    server: ShimServer
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries a Content-Length
    disable_nagle_algorithm = True  # else headers and body wait for a delayed ACK (~40 ms)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.handle_query()

    def do_POST(self) -> None:
        self.handle_query()

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_query(self) -> None:
        url = urlsplit(self.path)
        body = b"" if self.command == "GET" else self.read_body()
        if url.path.rstrip("/") == "/ping":
            return self.reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        base = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.server.tz,
                "X-ClickHouse-Server-Display-Name": "chshim"}  # fmt: skip
        files: dict[str, bytes] | None = None
        try:
            body = decompress(body, self.headers.get("Content-Encoding", "").strip().lower())
            if self.headers.get_content_type() == "multipart/form-data":
                fields, files = parse_multipart(body, self.headers.get_param("boundary"))
                params = {**fields, **params}  # like ClickHouse's HTMLForm: URL values first
                body = b""  # the form consumed it
            sql = params.get("query", "").encode() + (b"\n" if "query" in params and body else b"")
            sql += body
            if not sql.strip() and self.command == "GET":
                return self.reply(200, b"Ok.\n", base)
            data, headers = self.execute(sql, params, files)
        except Exception as ex:
            if not isinstance(ex, ShimError):
                ex = ShimError(f"chshim: {ex!r}", 1001)
            message = str(ex).strip().encode(errors="replace") + b"\n"
            headers = {**base, "Content-Type": "text/plain; charset=UTF-8",
                       "X-ClickHouse-Exception-Code": str(ex.code)}  # fmt: skip
            return self.reply(STATUS_BY_CODE.get(ex.code, 500), message, headers)
        headers = {**base, **headers}
        if params.get("enable_http_compression") in ("1", "true") and data:
            data, enc = compress(data, self.headers.get("Accept-Encoding", ""))
            if enc:
                headers["Content-Encoding"] = enc
        self.reply(200, data, headers)

    def execute(
        self, sql: bytes, params: dict[str, str], files: dict[str, bytes] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        temps: list[str] = []

        def spill(data: bytes) -> str:  # the chdb Python API cannot take binary insert data
            with tempfile.NamedTemporaryFile(prefix="chshim-", suffix=".bin", delete=False) as f:
                f.write(data)
            temps.append(f.name)
            return f.name

        try:
            tables = [self.external_table(n, spill(d), params) for n, d in (files or {}).items()]
            if m := INSERT_RE.match(sql):
                infile = spill(sql[m.end() :])
                head = m.group(1).decode().rstrip()
                text = f"{head} FROM INFILE {quote(infile)} FORMAT {m.group(2).decode()}"
            else:
                text = sql.decode(errors="replace")
            return self.run(text, params, bool(m), tables, files is not None)
        finally:
            for name in temps:
                os.unlink(name)

    @staticmethod
    def external_table(name: str, infile: str, params: dict[str, str]) -> tuple[str, str, str]:
        """The statements that make, load and drop external table `name` for one query."""
        fmt = params.get(f"{name}_format") or "TabSeparated"
        if not NAME_RE.match(name) or not NAME_RE.match(fmt):
            raise ShimError(f"Invalid external table name {name!r} or format {fmt!r}", 36)
        if (columns := params.get(f"{name}_structure")) is None:
            if (types := params.get(f"{name}_types")) is None:
                raise ShimError(f"Neither structure nor types have been provided for external "
                                f"table {name}. Use fields {name}_structure or {name}_types "
                                "to do so.", 36)  # fmt: skip
            columns = ", ".join(f"_{i} {t}" for i, t in enumerate(split_types(types), 1))
        table = quote_ident(name)
        return (f"CREATE TEMPORARY TABLE {table} ({columns}) ENGINE = Memory",
                f"INSERT INTO {table} FROM INFILE {quote(infile)} FORMAT {fmt}",
                f"DROP TEMPORARY TABLE IF EXISTS {table}")  # fmt: skip

    def run(
        self,
        text: str,
        params: dict[str, str],
        insert: bool,
        tables: Sequence[tuple[str, str, str]] = (),
        multipart: bool = False,
    ) -> tuple[bytes, dict[str, str]]:
        binds = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if k not in TRANSPORT and k[:6] != "param_"}
        if multipart:  # ClickHouse: <table>_format/_types/_structure are no settings here
            settings = {k: v for k, v in settings.items() if k in self.server.setting_names
                        or not k.endswith(EXTERNAL_SUFFIXES)}  # fmt: skip
        if bad := [n for n in settings if not NAME_RE.match(n)]:
            raise ShimError(f"Invalid setting name {bad[0]!r}", 115)
        database = params.get("database") or self.headers.get("X-ClickHouse-Database")
        explicit = FORMAT_RE.search(text)
        fmt = explicit.group(1) if explicit else params.get("default_format") or "TabSeparated"
        keyword = m.group(1).upper() if (m := LEADING_RE.match(text)) else ""
        with self.server.lock:
            conn, throwaway = self.session_conn(params)
            try:
                if database:
                    self.engine(conn, f"USE {quote_ident(database)}")
                restore = [] if throwaway else self.snapshot(conn, settings)
                try:
                    if settings:
                        sets = ", ".join(f"{n} = {quote(v)}" for n, v in settings.items())
                        self.engine(conn, f"SET {sets}")
                    drops = []  # only the tables made here, never a session's own
                    try:
                        for create, load, drop in tables:
                            self.engine(conn, create)
                            drops.append(drop)
                            self.engine(conn, load)
                        res = self.engine(conn, text, fmt, binds)
                    finally:
                        for stmt in drops:
                            self.engine(conn, stmt)
                finally:
                    for stmt in restore:
                        self.engine(conn, stmt)
            finally:
                if throwaway:
                    conn.close()
        read_rows, read_bytes = res.rows_read(), res.bytes_read()
        written = (res.rows_written() or read_rows) if insert else 0
        summary = {"read_rows": read_rows, "read_bytes": read_bytes, "written_rows": written,
                   "written_bytes": (res.bytes_written() or read_bytes) if insert else 0,
                   "total_rows_to_read": read_rows, "result_rows": written, "result_bytes": 0,
                   "elapsed_ns": int(res.elapsed() * 1e9)}  # fmt: skip
        headers = {"X-ClickHouse-Summary": json.dumps({k: str(v) for k, v in summary.items()})}
        if keyword in RESULT_KEYWORDS:
            headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        return res.bytes() or b"", headers

    def session_conn(self, params: dict[str, str]) -> tuple[Any, bool]:
        now, sessions = time.monotonic(), self.server.sessions
        for sid in [s for s, v in sessions.items() if now - v.used > v.timeout]:
            sessions.pop(sid).conn.close()
        sid = params.get("session_id")
        if not sid:
            return self.server.chdb.connect(self.server.path), True
        if sid not in sessions:
            if params.get("session_check") in ("1", "true"):
                raise ShimError(f"Session {sid} not found (SESSION_NOT_FOUND)", 372)
            timeout = float(params.get("session_timeout") or 60)
            sessions[sid] = Session(self.server.chdb.connect(self.server.path), timeout)
        sessions[sid].used = now
        return sessions[sid].conn, False

    def snapshot(self, conn: Any, settings: dict[str, str]) -> list[str]:
        """The statements that put this session's values of `settings` back after the query."""
        if not settings:
            return []
        names = ", ".join(quote(n) for n in settings)
        snap = self.engine(conn, f"SELECT name, value, changed FROM system.settings "
                           f"WHERE name IN ({names}) FORMAT JSONCompact")  # fmt: skip
        rows = json.loads(snap.bytes())["data"]
        return [f"SET {n} = {quote(v) if changed else 'DEFAULT'}" for n, v, changed in rows]

    @staticmethod
    def engine(conn: Any, text: str, fmt: str = "TabSeparated", binds: Any = None) -> Any:
        try:
            return conn.query(text, fmt, params=binds or {})
        except Exception as ex:  # chdb.ChdbError / RuntimeError: the engine's own message
            message = str(ex)
            code = CODE_RE.search(message)
            raise ShimError(message[message.find("Code: ") :] if code else message,
                            int(code.group(1)) if code else 1000) from None  # fmt: skip


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 0) -> tuple[ShimServer, int]:
    """Serve `path` on a daemon thread of this process (which binds this process's chdb path)."""
    server = ShimServer(path, host, port)
    threading.Thread(target=server.serve_forever, name="chshim", daemon=True).start()
    return server, server.port


def stop(server: ShimServer) -> None:
    server.shutdown()
    server.server_close()
    server.close_sessions()


def start_process(path: str | Path, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], int]:
    """Run the shim as a subprocess on `path` and a free port; return once /ping answers."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--path", str(path), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: deque[str] = deque(maxlen=50)
    ready = threading.Event()

    def drain(out: Any) -> None:  # keeps the pipe from filling up; remembers the tail
        with out:
            for raw in out:
                lines.append(raw.decode(errors="replace").rstrip())
                if lines[-1].startswith("chshim ready"):
                    ready.set()

    threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError("chshim did not start:\n" + "\n".join(lines))
    port = int(next(x for x in lines if x.startswith("chshim ready")).rsplit(":", 1)[1].split()[0])
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.read() == b"Ok.\n":
                    return proc, port
        except OSError:
            if time.monotonic() > deadline:
                stop_process(proc)
                raise RuntimeError("chshim does not answer /ping:\n" + "\n".join(lines)) from None
            time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM (clean stop, data stays on disk); SIGKILL after `timeout`. Its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="TEST DOUBLE of a ClickHouse HTTP server on chdb")
    ap.add_argument("--path", required=True, help="chdb data directory (owned by this process)")
    ap.add_argument("--port", type=int, default=8123, help="0 = a free port (see the ready line)")
    ap.add_argument("--host", default="127.0.0.1", help="loopback only")
    args = ap.parse_args(argv)
    server = ShimServer(args.path, args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"chshim ready path={args.path} url=http://{args.host}:{server.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    server.close_sessions()


if __name__ == "__main__":
    main()
