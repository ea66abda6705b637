"""Probes against real HTTP, HTTPS and TCP servers on 127.0.0.1, and probes.yaml validation."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import datetime as dt
import ipaddress
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from opsmetrics.alerting.rule_tests import run_test_file
from opsmetrics.catalog.probes import load_probes_config, parse_probes_config
from opsmetrics.catalog.validate import validate_config_dir
from opsmetrics.clock import FakeClock
from opsmetrics.errors import ConfigError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.pipeline import WriteRequest
from opsmetrics.ingest.probes import Outcome, Prober, cert_not_after, running
from opsmetrics.model import METRIC_NAME, STALE_NAN_BITS, Labels, SampleBatchBuilder, make_labels
from opsmetrics.query.kpi import KpiEvaluator
from opsmetrics.services import open_services
from opsmetrics.settings import Settings
from tests.server import ServerProcess, wait_until

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
#: The test certificate's notAfter: an odd second, so a rounding slip shows.
NOT_AFTER = dt.datetime(2031, 5, 17, 12, 34, 57, tzinfo=dt.UTC)
NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
BODY = b"status: all good\n"


# --- the servers -------------------------------------------------------------------------------


@dataclass
class Site:
    """A loopback HTTP(S) server whose paths behave: /ok, /500, /hang, /close, /redirect/N."""

    url: str = ""
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    #: Set: every path behaves like /close.
    broken: bool = False


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self._answer()

        def _answer(self) -> None:
            site.requests.append((self.command, self.path, dict(self.headers.items())))
            if self.path == "/hang":
                site.release.wait(30)  # past any probe's timeout; released at teardown
                return
            if self.path == "/close" or site.broken:
                self.close_connection = True
                return
            if self.path.startswith("/redirect/"):
                left = int(self.path.rsplit("/", 1)[1])
                where = "/ok" if left <= 1 else f"/redirect/{left - 1}"
                return self._send(302, b"", {"Location": where})
            self._send(500 if self.path == "/500" else 200, BODY, {})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            with contextlib.suppress(ConnectionError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[Site]:
    site = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    site.url = f"{scheme}://localhost:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1 with a known notAfter."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


@pytest.fixture
def site() -> Iterator[Site]:
    with serve() as running_site:
        yield running_site


@pytest.fixture
def tls_site(certificate: Certificate) -> Iterator[Site]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    with serve(context) as running_site:
        yield running_site


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    """An address on 127.0.0.1 where nothing listens (bound, so no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


# --- running probes ----------------------------------------------------------------------------


def probes_yaml(target: str, kind: str = "http", timeout: str = "2s", **module: Any) -> str:
    # The servers listen on 127.0.0.1 only, and `localhost` may resolve to ::1 first.
    module.setdefault("preferred_ip_protocol", "ip4")
    settings = "".join(f"\n      {k}: {v}" for k, v in module.items()) or " {}"
    return (
        "probes:\n"
        "  - name: site\n"
        "    interval: 15s\n"
        f"    timeout: {timeout}\n"
        "    labels: {team: web}\n"
        f"    {kind}:{settings}\n"
        f"    targets: ['{target}']\n"
    )


def probe(target: str, kind: str = "http", **module: Any) -> Outcome:
    config = parse_probes_config(probes_yaml(target, kind, **module), base_dir=Path("/"))

    async def main() -> Outcome:
        prober = Prober(config, _ignore, FakeClock(NOW))
        try:
            return await prober.probe(prober.targets[0])
        finally:
            await prober.stop()

    return asyncio.run(main())


async def _ignore(samples: DecodedSamples) -> None:
    return


def test_a_healthy_http_target(site: Site) -> None:
    out = probe(site.url + "/ok", fail_if_body_not_matches_regexp="['all good']")
    assert (out.success, out.error) == (True, "")
    assert out.get("probe_http_status_code") == 200
    assert out.get("probe_http_content_length") == len(BODY)
    assert out.get("probe_http_uncompressed_body_length") == len(BODY)
    assert out.get("probe_http_redirects") == 0
    assert out.get("probe_http_ssl") == 0
    assert out.get("probe_http_version") == 1.1
    assert out.get("probe_failed_due_to_regex") == 0
    assert out.get("probe_ip_protocol") == 4
    phases = {p: out.get("probe_http_duration_seconds", phase=p) for p in PHASES}
    assert phases["connect"] > 0 and phases["processing"] > 0 and phases["tls"] == 0
    assert sum(phases.values()) <= out.duration
    assert ("probe_ssl_earliest_cert_expiry", ()) not in out.values
    [(method, path, headers)] = site.requests
    assert (method, path, headers["Host"]) == ("GET", "/ok", site.url.removeprefix("http://"))


PHASES = ("resolve", "connect", "tls", "processing", "transfer")


def test_method_headers_and_body_are_sent(site: Site) -> None:
    out = probe(site.url + "/ok", method="POST", headers="{X-Probe: 'yes'}", body="ping")
    assert out.success
    [(method, _, headers)] = site.requests
    assert (method, headers["X-Probe"], headers["Content-Length"]) == ("POST", "yes", "4")


def test_a_500_fails_unless_it_is_an_expected_status(site: Site) -> None:
    out = probe(site.url + "/500")
    assert (out.success, out.get("probe_http_status_code")) == (False, 500)
    assert out.error == "ProbeFailedError: HTTP status 500 is not an expected status code"
    assert probe(site.url + "/500", valid_status_codes="[500]").success
    assert not probe(site.url + "/ok", valid_status_codes="[204]").success


def test_a_server_that_hangs_fails_at_the_timeout(site: Site) -> None:
    out = probe(site.url + "/hang", timeout="300ms")
    assert (out.success, out.error) == (False, "probe timed out after 0.3s")
    assert out.get("probe_http_status_code") == 0
    assert out.get("probe_http_duration_seconds", phase="connect") > 0  # it got that far
    assert out.get("probe_http_duration_seconds", phase="processing") == 0
    # Loose bounds: the probe gave up at its timeout, not at once and not much later.
    assert 0.25 <= out.duration < 5


def test_a_server_that_closes_the_connection_fails(site: Site) -> None:
    out = probe(site.url + "/close")
    assert not out.success
    assert out.error.startswith("RemoteProtocolError: Server disconnected")
    assert out.get("probe_http_status_code") == 0


def test_a_refused_connection_fails() -> None:
    with closed_port() as address:
        out = probe(f"http://{address}/")
    assert not out.success and "ConnectError" in out.error
    assert out.get("probe_http_duration_seconds", phase="processing") == 0


def test_body_regexes_set_probe_failed_due_to_regex(site: Site) -> None:
    matched = probe(site.url + "/ok", fail_if_body_matches_regexp="['all \\w+']")
    assert not matched.success and matched.get("probe_failed_due_to_regex") == 1
    assert matched.error == "ProbeFailedError: the body matched 'all \\\\w+'"
    missing = probe(site.url + "/ok", fail_if_body_not_matches_regexp="['^broken']")
    assert not missing.success and missing.get("probe_failed_due_to_regex") == 1
    fine = probe(site.url + "/ok", fail_if_body_matches_regexp="['error']")
    assert fine.success and fine.get("probe_failed_due_to_regex") == 0


def test_redirects_are_followed_and_counted(site: Site) -> None:
    out = probe(site.url + "/redirect/3")
    assert out.success
    assert (out.get("probe_http_redirects"), out.get("probe_http_status_code")) == (3, 200)
    assert out.get("probe_dns_lookup_time_seconds") > 0
    assert [path for _, path, _ in site.requests] == [
        "/redirect/3",
        "/redirect/2",
        "/redirect/1",
        "/ok",
    ]


def test_redirects_not_followed_report_the_redirect(site: Site) -> None:
    out = probe(site.url + "/redirect/1", follow_redirects="false")
    assert not out.success  # a 302 is not 2xx
    assert (out.get("probe_http_redirects"), out.get("probe_http_status_code")) == (1, 302)
    assert probe(
        site.url + "/redirect/1", follow_redirects="false", valid_status_codes="[302]"
    ).success
    assert [path for _, path, _ in site.requests] == ["/redirect/1", "/redirect/1"]


def test_more_than_ten_redirects_fail(site: Site) -> None:
    out = probe(site.url + "/redirect/12")
    assert not out.success
    assert (out.get("probe_http_redirects"), out.get("probe_http_status_code")) == (11, 302)


# --- TLS ---------------------------------------------------------------------------------------


def test_https_without_verification_reports_the_certificate_expiry(tls_site: Site) -> None:
    out = probe(tls_site.url + "/ok", tls_config="{insecure_skip_verify: true}")
    assert (out.success, out.error) == (True, "")
    assert out.get("probe_ssl_earliest_cert_expiry") == calendar.timegm(NOT_AFTER.timetuple())
    assert out.get("probe_http_ssl") == 1
    assert out.get("probe_tls_version_info", version="TLS 1.3") == 1
    assert out.get("probe_http_duration_seconds", phase="tls") > 0


def test_https_verification_fails_on_an_unknown_ca_and_passes_with_ca_file(
    tls_site: Site, certificate: Certificate
) -> None:
    out = probe(tls_site.url + "/ok")
    assert not out.success and "CERTIFICATE_VERIFY_FAILED" in out.error
    assert ("probe_ssl_earliest_cert_expiry", ()) not in out.values
    trusted = probe(tls_site.url + "/ok", tls_config=f"{{ca_file: '{certificate.cert_file}'}}")
    assert (trusted.success, trusted.error) == (True, "")
    assert trusted.get("probe_ssl_earliest_cert_expiry") == calendar.timegm(NOT_AFTER.timetuple())


def test_cert_not_after_reads_utctime_and_generalizedtime(certificate: Certificate) -> None:
    der = ssl.PEM_cert_to_DER_cert(certificate.cert_file.read_text())
    assert cert_not_after(der) == int(NOT_AFTER.timestamp())
    late = dt.datetime(2051, 2, 3, 4, 5, 6, tzinfo=dt.UTC)  # past 2049: GeneralizedTime
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    cert = x509.CertificateBuilder(name, name, key.public_key(), 1, NOT_BEFORE, late).sign(
        key, hashes.SHA256()
    )
    assert cert_not_after(cert.public_bytes(serialization.Encoding.DER)) == int(late.timestamp())


# --- TCP ---------------------------------------------------------------------------------------


def test_tcp_to_an_open_and_a_closed_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        out = probe(f"127.0.0.1:{listener.getsockname()[1]}", kind="tcp")
    assert (out.success, out.error) == (True, "")
    assert (out.get("probe_ip_protocol"), out.get("probe_failed_due_to_regex")) == (4, 0)
    with closed_port() as address:
        down = probe(address, kind="tcp")
    assert not down.success and "Connect call failed" in down.error


# --- samples, scheduling -----------------------------------------------------------------------


def rows(decoded: DecodedSamples) -> list[tuple[dict[str, str], int, float]]:
    b = decoded.batch
    return [(dict(b.series[b.index[i]]), int(b.ts[i]), float(b.values[i])) for i in range(len(b))]


def test_samples_carry_job_instance_labels_and_the_clock_time(site: Site) -> None:
    config = parse_probes_config(probes_yaml(site.url + "/ok"))
    written: list[DecodedSamples] = []

    async def sink(samples: DecodedSamples) -> None:
        written.append(samples)

    async def main() -> None:
        prober = Prober(config, sink, FakeClock(NOW))
        await prober.probe_once(prober.targets[0])
        assert await prober.flush() == len(rows(written[0]))
        await prober.stop()

    asyncio.run(main())
    [decoded] = written
    got = rows(decoded)
    assert {ts for _, ts, _ in got} == {NOW}
    success = [s for s, _, _ in got if s[METRIC_NAME] == "probe_success"]
    assert success == [
        {METRIC_NAME: "probe_success", "job": "site", "instance": site.url + "/ok", "team": "web"}
    ]
    names = {s[METRIC_NAME] for s, _, _ in got}
    assert {"probe_duration_seconds", "probe_http_duration_seconds"} <= names
    assert {m.metric for m in decoded.metadata} >= names


def test_series_that_vanish_get_a_stale_marker(tls_site: Site) -> None:
    # TLS series exist while the target answers; a failed probe has none: they go stale.
    config = parse_probes_config(
        probes_yaml(tls_site.url + "/ok", tls_config="{insecure_skip_verify: true}")
    )
    written: list[DecodedSamples] = []

    async def sink(samples: DecodedSamples) -> None:
        written.append(samples)

    async def main() -> None:
        clock = FakeClock(NOW)
        prober = Prober(config, sink, clock)
        target = prober.targets[0]
        await prober.probe_once(target)
        await prober.flush()
        tls_site.broken = True
        clock.advance(15_000)
        assert not (await prober.probe_once(target)).success
        await prober.flush()
        await prober.stop()

    asyncio.run(main())
    stale = [s[METRIC_NAME] for s, _, v in rows(written[1]) if _bits(v) == STALE_NAN_BITS]
    assert sorted(stale) == ["probe_ssl_earliest_cert_expiry", "probe_tls_version_info"]


def _bits(value: float) -> int:
    return int(np.array([value], dtype=np.float64).view(np.uint64)[0])


def test_a_hanging_probe_does_not_hold_up_the_others(site: Site) -> None:
    """Two slots: one probe hangs on every run, the other keeps its 200 ms schedule."""
    text = (
        "global: {max_concurrency: 2}\n"
        "probes:\n"
        "  - name: slow\n    interval: 1s\n    timeout: 1s\n"
        "    http: {preferred_ip_protocol: ip4}\n"
        f"    targets: ['{site.url}/hang']\n"
        "  - name: fast\n    interval: 200ms\n    timeout: 200ms\n"
        "    http: {preferred_ip_protocol: ip4}\n"
        f"    targets: ['{site.url}/ok']\n"
    )
    written: list[DecodedSamples] = []

    async def sink(samples: DecodedSamples) -> None:
        written.append(samples)

    async def main() -> None:
        prober = Prober(parse_probes_config(text), sink, FakeClock(NOW))
        async with running(prober):
            await _until(lambda: _successes(written, "fast") >= 5, "five fast probes")
        assert _successes(written, "slow") == 0

    asyncio.run(main())


def _successes(written: list[DecodedSamples], job: str) -> int:
    return sum(
        1
        for decoded in written
        for s, _, v in rows(decoded)
        if s[METRIC_NAME] == "probe_success" and s["job"] == job and v == 1
    )


async def _until(check: Any, what: str, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


# --- probes.yaml -------------------------------------------------------------------------------

BAD = """\
global:
  interval: 15x
probes:
  - name: web
    http:
      method: get
      valid_status_codes: [200, 700]
      fail_if_body_matches_regexp: ['(']
      headers: {"bad header": x}
    targets: [example.com, 'https://ok.example/x']
  - name: web
    tcp: {}
    targets: ['db:5432', 'http://db:5432', 'db']
  - name: both
    http: {}
    tcp: {}
    targets: ['x:1']
  - name: slow
    interval: 5s
    timeout: 10s
    tcp: {}
    targets: ['x:1']
  - name: none
    tcp: {}
    targets: []
    labels: {"bad-label": x}
"""


def test_config_errors_name_file_line_and_field() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_probes_config(BAD.replace("15x", "15s"), "config/probes.yaml")
    assert caught.value.message.splitlines() == [
        "config/probes.yaml:6: probes[0].http.method: String should match pattern '^[A-Z]+$'",
        "config/probes.yaml:7: probes[0].http.valid_status_codes[1]: Input should be less "
        "than or equal to 599",
        "config/probes.yaml:8: probes[0].http.fail_if_body_matches_regexp[0]: invalid regular "
        "expression '(': missing ), unterminated subpattern at position 0",
        "config/probes.yaml:9: probes[0].http.headers: 'bad header' is not a valid HTTP header "
        "name",
        "config/probes.yaml:25: probes[4].targets: List should have at least 1 item after "
        "validation, not 0",
        "config/probes.yaml:26: probes[4].labels: 'bad-label' is not a valid label name",
    ]


def test_config_semantic_errors_name_file_line_and_field() -> None:
    text = BAD.replace("15x", "15s").replace("method: get", "method: GET")
    text = text.replace("200, 700", "200").replace("'('", "'ok'").replace('"bad header"', "X")
    text = text.replace("targets: []", "targets: ['y:2']").replace('"bad-label"', "tier")
    with pytest.raises(ConfigError) as caught:
        parse_probes_config(text, "config/probes.yaml")
    assert caught.value.message.splitlines() == [
        "config/probes.yaml:10: probes[0].targets[0]: 'example.com' is not an http:// or "
        "https:// URL, such as https://example.com/health",
        "config/probes.yaml:11: probes[1].name: name 'web' is used twice; names must be unique",
        "config/probes.yaml:13: probes[1].targets[1]: 'http://db:5432' is not host:port, such "
        "as db.internal:5432",
        "config/probes.yaml:13: probes[1].targets[2]: 'db' is not host:port, such as "
        "db.internal:5432",
        "config/probes.yaml:15: probes[2].http: give exactly one of `http` or `tcp`",
        "config/probes.yaml:20: probes[3].timeout: timeout must not be longer than interval",
    ]


def test_defaults_timeout_cap_and_a_bad_duration() -> None:
    config = parse_probes_config(
        "global: {interval: 3s}\nprobes:\n  - {name: a, tcp: {}, targets: ['h:1']}\n"
    )
    [group] = config.probes
    assert (config.interval_ms(group), config.timeout_ms(group)) == (3_000, 3_000)
    assert config.global_.max_concurrency == 64
    assert group.tcp is not None and group.tcp.preferred_ip_protocol == "ip6"
    with pytest.raises(ConfigError, match=r"^probes\.yaml:2: global\.interval: '15x' is not"):
        parse_probes_config(BAD)


def test_ca_file_is_relative_to_probes_yaml_and_must_exist(
    tmp_path: Path, certificate: Certificate
) -> None:
    (tmp_path / "ca.pem").write_bytes(certificate.cert_file.read_bytes())
    path = tmp_path / "probes.yaml"
    path.write_text(probes_yaml("https://h/", tls_config="{ca_file: ca.pem}"))
    [group] = load_probes_config(path).probes
    assert group.http is not None and group.http.tls_config.ca_file == str(tmp_path / "ca.pem")
    path.write_text(probes_yaml("https://h/", tls_config="{ca_file: missing.pem}"))
    message = f"{path}:7: probes[0].http.tls_config.ca_file: 'missing.pem' is not a file"
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        load_probes_config(path)


def test_validate_reports_probes_yaml(tmp_path: Path) -> None:
    (tmp_path / "probes.yaml").write_text("probes:\n  - name: a\n    tcp: {}\n    targets: [x]\n")
    assert validate_config_dir(tmp_path) == [
        f"{tmp_path / 'probes.yaml'}:4: probes[0].targets[0]: 'x' is not host:port, such as "
        "db.internal:5432"
    ]


def test_the_documented_example_parses() -> None:
    text = (Path(__file__).parent.parent / "docs/collectors.md").read_text()
    example = text.split("## Probes\n", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_probes_config(example)
    assert [(g.name, len(g.targets)) for g in config.probes] == [("website", 2), ("databases", 2)]


def test_the_demo_probes_validate() -> None:
    demo = Path(__file__).parent.parent / "opsmetrics/demo/config"
    config = load_probes_config(demo / "probes.yaml")
    kinds = {("http" if g.http else "tcp") for g in config.probes}
    assert kinds == {"http", "tcp"}
    assert validate_config_dir(demo) == []


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_probe_success_is_queryable_through_a_real_server(tmp_path: Path, site: Site) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "probes.yaml").write_text(
        "probes:\n"
        "  - name: receiver\n    interval: 1s\n    http: {preferred_ip_protocol: ip4}\n"
        f"    targets: ['{site.url}/ok', '{site.url}/500']\n"
    )
    srv = ServerProcess(tmp_path / "data", config_dir=config, now_ms=NOW).start()
    try:

        def results() -> dict[str, str]:
            params = {"query": "probe_success", "time": str(srv.clock_ms() / 1000)}
            body = httpx.get(srv.url + "/api/v1/query", params=params).json()
            found = {r["metric"]["instance"]: r["value"][1] for r in body["data"]["result"]}
            return found if len(found) == 2 else {}

        found = wait_until(results, "probe_success for both targets")
        assert found == {f"{site.url}/ok": "1", f"{site.url}/500": "0"}
        assert srv.stop() == 0
    finally:
        srv.kill()


# --- the demo catalog's rule -------------------------------------------------------------------

DEMO = Path(__file__).parent.parent / "opsmetrics/demo/config"


def test_the_demo_alerts_on_a_certificate_expiring_within_14_days(tmp_path: Path) -> None:
    """promtool-style: the clock starts at 0, so expiry − time() is the time left."""
    description = (
        "https://a/ (probe group web) serves a certificate that\n"
        "expires within 14 days. Renew it and deploy the new one before then.\n"
    )
    (tmp_path / "probes_test.yaml").write_text(
        f"rule_files: ['{DEMO / 'rules/probes.yaml'}']\n"
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        '      - series: \'probe_ssl_earliest_cert_expiry{job="web", instance="https://a/"}\'\n'
        "        values: '1123200x20'\n"  # 13 days after 0
        '      - series: \'probe_ssl_earliest_cert_expiry{job="web", instance="https://b/"}\'\n'
        "        values: '1296000x20'\n"  # 15 days after 0
        "    alert_rule_test:\n"
        "      - {eval_time: 9m, alertname: CertificateExpiresSoon, exp_alerts: []}\n"
        "      - eval_time: 15m\n"
        "        alertname: CertificateExpiresSoon\n"
        "        exp_alerts:\n"
        "          - exp_labels: {severity: warning, team: sre, job: web, instance: 'https://a/'}\n"
        "            exp_annotations:\n"
        "              summary: 'The TLS certificate of https://a/ expires in 12d 23h 45m 0s'\n"
        f"              description: {json.dumps(description)}\n"
    )
    result = run_test_file(tmp_path / "probes_test.yaml")
    assert result.failures == [], "\n".join(result.failures)


# --- the demo catalog's KPIs -------------------------------------------------------------------

MINUTE = 60_000
MIDNIGHT = NOW - NOW % (24 * 60 * MINUTE)  # the end of the last complete day and hour


def test_the_demo_probe_kpis_read_the_probe_series(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "kpis").mkdir(parents=True)
    (config / "kpis/probes.yaml").write_text((DEMO / "kpis/probes.yaml").read_text())
    builder = SampleBatchBuilder()
    ours = {"service": "opsmetrics", "instance": "http://127.0.0.1:8800/readyz"}
    for k in range(96):  # every 15 minutes of the last day; 3 of the 96 probes failed
        ts = MIDNIGHT - 30_000 - k * 15 * MINUTE
        builder.add(_series("probe_success", job="opsmetrics_ready", **ours), ts, float(k >= 3))
        builder.add(_series("probe_success", job="other", service="other"), ts, 0.0)
    for k in range(60):  # every minute of the last hour: 0.01 s … 0.60 s
        ts = MIDNIGHT - 30_000 - k * MINUTE
        builder.add(_series("probe_duration_seconds", job="opsmetrics_http"), ts, (k + 1) / 100)
        builder.add(_series("probe_duration_seconds", job="opsmetrics_tcp"), ts, 9.0)
    clock = FakeClock(NOW)
    services = open_services(Settings(data_dir=tmp_path / "data", config_dir=config), clock)
    try:
        services.ingestor.write(WriteRequest("test", DecodedSamples(builder.build())))
        kpis = KpiEvaluator(services.storage, services.catalog, clock)
        assert kpis.current("probe_availability").value == pytest.approx(93 / 96)
        # Prometheus's quantile: rank 0.95 · 59 = 56.05 between 0.57 and 0.58.
        assert kpis.current("probe_latency_p95").value == pytest.approx(0.5705)
    finally:
        services.close()


def _series(name: str, **labels: str) -> Labels:
    return make_labels({METRIC_NAME: name, **labels})
