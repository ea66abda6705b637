"""The prober: HTTP(S) and TCP probes from probes.yaml, with blackbox_exporter's series.

Each target has its own task on a fixed schedule (spread over the interval); at most
`max_concurrency` probes run at once. Results are written in batches by one flush task, so a
probe never waits for ingest, and a slow probe holds one slot for at most its timeout.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import math
import re
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from opsmetrics.catalog.probes import HttpProbe, ProbeGroup, ProbesConfig, TlsConfig
from opsmetrics.clock import Clock
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
USER_AGENT = "opsmetrics-prober"
PHASES = ("resolve", "connect", "tls", "processing", "transfer")
MAX_REDIRECTS = 10
FLUSH_INTERVAL_S = 1.0

HELP = {
    "probe_success": "Displays whether or not the probe was a success",
    "probe_duration_seconds": "Returns how long the probe took to complete in seconds",
    "probe_dns_lookup_time_seconds": "Returns the time taken for probe dns lookup in seconds",
    "probe_ip_protocol": "Specifies whether probe ip protocol is IP4 or IP6",
    "probe_failed_due_to_regex": "Indicates if probe failed due to regex",
    "probe_http_duration_seconds": "Duration of http request by phase, summed over all redirects",
    "probe_http_status_code": "Response HTTP status code",
    "probe_http_content_length": "Length of http content response",
    "probe_http_uncompressed_body_length": "Length of uncompressed response body",
    "probe_http_redirects": "The number of redirects",
    "probe_http_ssl": "Indicates if SSL was used for the final redirect",
    "probe_http_version": "Returns the version of HTTP of the probe response",
    "probe_ssl_earliest_cert_expiry": "Returns earliest SSL cert expiry in unixtime",
    "probe_tls_version_info": "Contains the TLS version used",
}
METADATA = [MetricMetadata(name, MetricType.GAUGE, text) for name, text in HELP.items()]


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    group: ProbeGroup
    target: str
    #: `job`, `instance` and the group's labels, on every series of the probe.
    labels: Labels
    interval_ms: int
    timeout_ms: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.group.name, self.target)


def probe_targets(config: ProbesConfig) -> list[ProbeTarget]:
    """Every target of every group, once."""
    out: dict[tuple[str, str], ProbeTarget] = {}
    for group in config.probes:
        interval, timeout = config.interval_ms(group), config.timeout_ms(group)
        for target in group.targets:
            # The group's labels win over job/instance, as static labels do in scrape.yaml.
            labels = make_labels({"job": group.name, "instance": target, **group.labels})
            probe = ProbeTarget(group, target, labels, interval, timeout)
            out.setdefault(probe.key, probe)
    return list(out.values())


# --- one probe's outcome -----------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What one probe measured: series name (+ extra labels) → value; `error` when it failed."""

    success: bool = False
    duration: float = 0.0
    error: str = ""
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    def set(self, name: str, value: float, **labels: str) -> None:
        self.values[(name, tuple(sorted(labels.items())))] = value

    def get(self, name: str, **labels: str) -> float:
        return self.values[(name, tuple(sorted(labels.items())))]


class ProbeFailedError(Exception):
    """The target answered, but not as the probe wants (status, body, size)."""


async def _resolve(host: str, port: int, preferred: str, out: Outcome | None) -> str:
    """The address to connect to, in the preferred family if there is one (blackbox's
    `preferred_ip_protocol` with fallback). With `out`, records the lookup time and
    probe_ip_protocol there (blackbox reports the first request's resolution)."""
    started = time.monotonic()
    infos = await asyncio.get_running_loop().getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM
    )
    want = socket.AF_INET6 if preferred == "ip6" else socket.AF_INET
    family, *_, address = next((i for i in infos if i[0] == want), infos[0])
    if out is not None:
        out.set("probe_dns_lookup_time_seconds", time.monotonic() - started)
        out.set("probe_ip_protocol", 6.0 if family == socket.AF_INET6 else 4.0)
    return str(address[0])


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"probe timed out after {timeout_s:g}s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- TCP ---------------------------------------------------------------------------------------


async def probe_tcp(target: ProbeTarget) -> Outcome:
    """Connect to host:port and close again: success when the connection is accepted."""
    assert target.group.tcp is not None
    out, timeout = Outcome(), target.timeout_ms / 1000
    for name in ("probe_ip_protocol", "probe_dns_lookup_time_seconds", "probe_failed_due_to_regex"):
        out.set(name, 0.0)
    host, port = target.target.rsplit(":", 1)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            address = await _resolve(host, int(port), target.group.tcp.preferred_ip_protocol, out)
            _, writer = await asyncio.open_connection(address, int(port))
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        out.success = True
    except (OSError, TimeoutError) as exc:
        out.error = _describe(exc, timeout)
    out.duration = time.monotonic() - started
    return out


# --- HTTP --------------------------------------------------------------------------------------


class _Trace:
    """httpcore's trace events of one request, as monotonic instants by event name."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.added = False

    async def __call__(self, name: str, info: dict[str, object]) -> None:
        # "connection.connect_tcp.started" → "connect_tcp.started"
        self.at[name.split(".", 1)[1]] = time.monotonic()

    def add_phases(self, phases: dict[str, float], body_done: float | None) -> None:
        """Add this round trip's connect/tls/processing/transfer time, as blackbox does."""
        at, self.added = self.at, True
        if "connect_tcp.complete" not in at:
            return
        phases["connect"] += at["connect_tcp.complete"] - at["connect_tcp.started"]
        conn_ready = at["connect_tcp.complete"]
        if "start_tls.complete" in at:
            phases["tls"] += at["start_tls.complete"] - at["start_tls.started"]
            conn_ready = at["start_tls.complete"]
        headers = at.get("receive_response_headers.complete")
        if headers is None:
            return
        phases["processing"] += headers - conn_ready
        if body_done is not None:
            phases["transfer"] += body_done - headers


@dataclass(slots=True)
class _Hop:
    url: httpx.URL
    method: str
    body: bytes


#: Series an HTTP probe reports as 0 when it never gets that far (blackbox's defaults).
_HTTP_ZEROS = (
    "probe_ip_protocol",
    "probe_dns_lookup_time_seconds",
    "probe_http_status_code",
    "probe_http_content_length",
    "probe_http_uncompressed_body_length",
    "probe_http_version",
)


class HttpProbeRun:
    """One HTTP probe: each round trip resolves, connects afresh and is traced."""

    def __init__(self, target: ProbeTarget, client: httpx.AsyncClient) -> None:
        assert target.group.http is not None
        self.target, self.module, self.client = target, target.group.http, client
        self.out = Outcome()
        self.phases = dict.fromkeys(PHASES, 0.0)
        self.redirects = 0
        self._regex_failed = False
        self._tls: tuple[int, str] | None = None

    async def run(self) -> Outcome:
        out, timeout = self.out, self.target.timeout_ms / 1000
        for name in _HTTP_ZEROS:
            out.set(name, 0.0)
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await self._exchange()
            out.success = True
        except (ProbeFailedError, httpx.HTTPError, OSError, ssl.SSLError, TimeoutError) as exc:
            out.error = _describe(exc, timeout)
        out.duration = time.monotonic() - started
        for phase, seconds in self.phases.items():
            out.set("probe_http_duration_seconds", seconds, phase=phase)
        out.set("probe_http_redirects", float(self.redirects))
        out.set("probe_failed_due_to_regex", 1.0 if self._regex_failed else 0.0)
        self._tls_series()
        return out

    async def _exchange(self) -> None:
        m = self.module
        hop: _Hop | None = _Hop(httpx.URL(self.target.target), m.method, m.body.encode())
        while hop is not None:
            hop = await self._round_trip(hop)

    async def _round_trip(self, hop: _Hop) -> _Hop | None:
        """Send one request; the next hop when it is a redirect to follow."""
        trace, host = _Trace(), hop.url.host
        port = hop.url.port or (443 if hop.url.scheme == "https" else 80)
        resolved = time.monotonic()
        first = self.out if not self.redirects else None
        address = await _resolve(host, port, self.module.preferred_ip_protocol, first)
        self.phases["resolve"] += time.monotonic() - resolved
        headers = {"Host": hop.url.netloc.decode("ascii"), "User-Agent": USER_AGENT}
        request = self.client.build_request(
            hop.method,
            hop.url.copy_with(host=address),
            headers={**headers, **self.module.headers},
            content=hop.body or None,
            extensions={"sni_hostname": host, "trace": trace},
        )
        try:
            response = await self.client.send(request, stream=True)
            try:
                return await self._answer(hop, response, trace)
            finally:
                await response.aclose()
        finally:
            if not trace.added:  # failed (or timed out) part way: count what it got through
                trace.add_phases(self.phases, None)

    async def _answer(self, hop: _Hop, response: httpx.Response, trace: _Trace) -> _Hop | None:
        out, status = self.out, response.status_code
        out.set("probe_http_status_code", float(status))
        out.set("probe_http_version", _http_version(response.http_version))
        self._record_tls(response)
        if response.is_redirect:
            self.redirects += 1
            if self.module.follow_redirects and self.redirects <= MAX_REDIRECTS:
                trace.add_phases(self.phases, None)
                return _next_hop(hop, response)
        length = response.headers.get("content-length", "")
        out.set("probe_http_content_length", float(length) if length.isdigit() else -1.0)
        body = await self._read_body(response)
        trace.add_phases(self.phases, time.monotonic())
        if not self.module.status_ok(status):
            raise ProbeFailedError(f"HTTP status {status} is not an expected status code")
        self._check_body(body)
        return None

    async def _read_body(self, response: httpx.Response) -> bytes:
        limit, keep = self.module.body_size_limit, _has_regexes(self.module)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if limit and size > limit:
                raise ProbeFailedError(f"the body is larger than body_size_limit ({limit} bytes)")
            if keep:
                chunks.append(chunk)
        self.out.set("probe_http_uncompressed_body_length", float(size))
        return b"".join(chunks)

    def _check_body(self, body: bytes) -> None:
        for pattern in self.module.fail_if_body_matches_regexp:
            if re.search(pattern.encode(), body):
                self._regex_failed = True
                raise ProbeFailedError(f"the body matched {pattern!r}")
        for pattern in self.module.fail_if_body_not_matches_regexp:
            if not re.search(pattern.encode(), body):
                self._regex_failed = True
                raise ProbeFailedError(f"the body did not match {pattern!r}")

    def _record_tls(self, response: httpx.Response) -> None:
        """The final hop's TLS: its certificates' expiry and version, or None without TLS."""
        stream = response.extensions.get("network_stream")
        tls = stream.get_extra_info("ssl_object") if stream is not None else None
        if not isinstance(tls, ssl.SSLObject):
            self._tls = None
            return
        self._tls = (earliest_cert_expiry(tls), (tls.version() or "").replace("TLSv", "TLS "))

    def _tls_series(self) -> None:
        self.out.set("probe_http_ssl", 0.0 if self._tls is None else 1.0)
        if self._tls is not None:
            expiry, version = self._tls
            self.out.set("probe_ssl_earliest_cert_expiry", float(expiry))
            self.out.set("probe_tls_version_info", 1.0, version=version)


def _has_regexes(module: HttpProbe) -> bool:
    return bool(module.fail_if_body_matches_regexp or module.fail_if_body_not_matches_regexp)


def _http_version(text: str) -> float:
    with contextlib.suppress(ValueError):
        return float(text.removeprefix("HTTP/"))
    return 0.0


def _next_hop(hop: _Hop, response: httpx.Response) -> _Hop:
    url = hop.url.join(response.headers["location"])
    # As Go's client (and so blackbox): 301/302/303 turn into a GET without body, except HEAD.
    if response.status_code in (301, 302, 303) and hop.method != "HEAD":
        return _Hop(url, "GET", b"")
    return _Hop(url, hop.method, hop.body)


def earliest_cert_expiry(tls: ssl.SSLObject) -> int:
    """Unix seconds of the earliest notAfter of the certificates the server sent.

    Python 3.13 gives the whole chain as sent (`get_unverified_chain`); before that only the
    leaf is available. Read from the DER, so it works with verification off too."""
    chain_of = getattr(tls, "get_unverified_chain", None)
    chain = chain_of() if chain_of is not None else None
    leaf = tls.getpeercert(binary_form=True) or b""
    ders = [bytes(der) for der in chain] if chain else [leaf]
    return min(cert_not_after(der) for der in ders)


# --- the certificate's notAfter from DER ---------------------------------------------------------


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at `pos`."""
    tag, length, pos = der[pos], der[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        length, pos = int.from_bytes(der[pos : pos + count], "big"), pos + count
    return tag, pos, pos + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        element = _tlv(der, start)
        out.append(element)
        start = element[2]
    return out


def cert_not_after(der: bytes) -> int:
    """X.509 Certificate → tbsCertificate → validity → notAfter, as Unix seconds."""
    _, start, end = _tlv(der, 0)
    _, start, end = _tlv(der, start)
    fields = _children(der, start, end)
    if fields[0][0] == 0xA0:  # the optional [0] version
        fields = fields[1:]
    _, start, end = fields[3]  # serialNumber, signature, issuer, validity
    tag, start, end = _children(der, start, end)[1]
    text = der[start:end].decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSS, years 1950-2049 (RFC 5280)
        year = int(text[:2])
        text = str(1900 + year if year >= 50 else 2000 + year) + text[2:]
    parts = [int(text[i : i + 2]) for i in range(4, 14, 2)]
    return calendar.timegm((int(text[:4]), *parts, 0, 0, 0))


# --- the prober ----------------------------------------------------------------------------------


def _ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Prober:
    def __init__(self, config: ProbesConfig, sink: Sink, clock: Clock) -> None:
        self._sink, self._clock = sink, clock
        self.targets = probe_targets(config)
        self._slots = asyncio.Semaphore(config.global_.max_concurrency)
        self._clients: dict[TlsConfig, httpx.AsyncClient] = {}
        self._last: dict[tuple[str, str], set[Labels]] = {}
        self._pending = SampleBatchBuilder()
        self._tasks: list[asyncio.Task[None]] = []
        #: Seconds each probe started after its scheduled instant (the latest 100,000).
        self.lateness: deque[float] = deque(maxlen=100_000)

    async def start(self) -> None:
        for target in self.targets:
            task = asyncio.create_task(self._run(target), name=f"probe {target.target}")
            self._tasks.append(task)
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="probe writes"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.flush()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def probe(self, target: ProbeTarget) -> Outcome:
        """Run the probe once and return what it measured (nothing is written)."""
        if target.group.http is None:
            return await probe_tcp(target)
        return await HttpProbeRun(target, self._client(target.group.http.tls_config)).run()

    async def probe_once(self, target: ProbeTarget) -> Outcome:
        """Probe now and queue the samples, stamped with the clock, for the next flush."""
        ts = self._clock.now_ms()
        outcome = await self.probe(target)
        self._queue(target, ts, outcome)
        return outcome

    async def flush(self) -> int:
        """Write the queued samples in one request; returns how many were written."""
        pending, self._pending = self._pending, SampleBatchBuilder()
        if not len(pending):
            return 0
        try:
            await self._sink(DecodedSamples(pending.build(), METADATA))
        except Exception:
            log.exception("writing %d probe samples failed", len(pending))
            return 0
        return len(pending)

    def _client(self, tls: TlsConfig) -> httpx.AsyncClient:
        client = self._clients.get(tls)
        if client is None:
            # No keep-alive: every probe opens its own connection, so connect and TLS are
            # measured each time; the semaphore, not the pool, bounds the connections.
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
            client = httpx.AsyncClient(verify=_ssl_context(tls), trust_env=False, limits=limits)
            self._clients[tls] = client
        return client

    async def _run(self, target: ProbeTarget) -> None:
        loop = asyncio.get_running_loop()
        interval = target.interval_ms / 1000
        # Spread targets over the interval so they are not all probed at the same moment.
        due = loop.time() + zlib.crc32("\0".join(target.key).encode()) % target.interval_ms / 1000
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            async with self._slots:
                self.lateness.append(loop.time() - due)
                try:
                    await self.probe_once(target)
                except Exception:
                    log.exception("probing %s failed", target.target)
            # Fixed rate; a tick missed while waiting for a slot is skipped, not made up.
            due += interval * max(1, math.ceil((loop.time() - due) / interval))

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    def _queue(self, target: ProbeTarget, ts: int, outcome: Outcome) -> None:
        base = dict(target.labels)
        rows = [
            ("probe_success", (), 1.0 if outcome.success else 0.0),
            ("probe_duration_seconds", (), outcome.duration),
            *((name, extra, value) for (name, extra), value in outcome.values.items()),
        ]
        current = set()
        for name, extra, value in rows:
            labels = make_labels({**base, **dict(extra), METRIC_NAME: name})
            current.add(labels)
            self._pending.add(labels, ts, value)
        # Series of the last probe that are gone now (no TLS this time…) get a stale marker,
        # as Prometheus writes for a scrape of blackbox_exporter.
        for labels in sorted(self._last.get(target.key, set()) - current):
            self._pending.add(labels, ts, STALE_NAN)
        self._last[target.key] = current


@contextlib.asynccontextmanager
async def running(prober: Prober) -> AsyncIterator[Prober]:
    """`async with running(prober):` runs the probes and stops them on exit."""
    await prober.start()
    try:
        yield prober
    finally:
        await prober.stop()
