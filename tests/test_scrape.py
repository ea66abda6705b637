"""The scrape loop against a real HTTP server on 127.0.0.1 whose exposition changes over time."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from opsmetrics.catalog.scrape import load_scrape_config, parse_scrape_config
from opsmetrics.clock import FakeClock, pause
from opsmetrics.errors import ConfigError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.scrape import ACCEPT, Scraper, running
from opsmetrics.model import METRIC_NAME, STALE_NAN_BITS, MetricType

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
START = 1_700_000_000_000


@dataclass
class Exposition:
    """What the test server answers; tests change it between scrapes."""

    body: str = "# TYPE a gauge\na 1\nb 2\n"
    content_type: str = TEXT
    status: int = 200
    delay: float = 0.0
    requests: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Endpoint:
    exposition: Exposition
    address: str


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    exposition = Exposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            exposition.requests.append({k.lower(): v for k, v in self.headers.items()})
            pause(exposition.delay)  # a slow target, on purpose (the timeout test)
            body = exposition.body.encode()
            with contextlib.suppress(ConnectionError):  # a client that gave up (timeout test)
                self.send_response(exposition.status)
                self.send_header("Content-Type", exposition.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Endpoint(exposition, f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def config_text(address: str, **job: Any) -> str:
    extra = "".join(f"    {k}: {v}\n" for k, v in job.items())
    return (
        "global:\n  scrape_interval: 15s\n  scrape_timeout: 2s\n"
        "scrape_configs:\n"
        "  - job_name: app\n"
        f"{extra}"
        "    static_configs:\n"
        f"      - targets: ['{address}']\n"
        "        labels: {env: prod}\n"
    )


class Harness:
    def __init__(self, address: str, **job: Any) -> None:
        self.clock = FakeClock(START)
        self.written: list[DecodedSamples] = []
        self.scraper = Scraper(
            parse_scrape_config(config_text(address, **job)), self.sink, self.clock
        )
        [self.target] = self.scraper.targets

    async def sink(self, samples: DecodedSamples) -> None:
        self.written.append(samples)

    async def scrape(self) -> Rows:
        result = await self.scraper.scrape_once(self.target)
        self.clock.advance(15_000)
        return Rows(result)


def run(address: str, test: Callable[[Harness], Awaitable[None]], **job: Any) -> Harness:
    harness = Harness(address, **job)

    async def main() -> None:
        try:
            await test(harness)
        finally:
            await harness.scraper.stop()

    asyncio.run(main())
    return harness


class Rows:
    """A scrape result, indexed by metric name and labels for assertions."""

    def __init__(self, decoded: DecodedSamples) -> None:
        b = decoded.batch
        self.decoded = decoded
        self.rows = [(dict(b.series[b.index[i]]), int(b.ts[i]), b.values[i]) for i in range(len(b))]

    def value(self, name: str, **labels: str) -> float:
        [value] = [v for s, _, v in self.rows if s[METRIC_NAME] == name and _has(s, labels)]
        return float(value)

    def names(self) -> list[str]:
        return [s[METRIC_NAME] for s, _, _ in self.rows]

    def stale(self) -> list[str]:
        return [s[METRIC_NAME] for s, _, v in self.rows if _bits(v) == STALE_NAN_BITS]

    def timestamps(self) -> set[int]:
        return {ts for _, ts, _ in self.rows}


def _has(series: dict[str, str], labels: dict[str, str]) -> bool:
    return all(series.get(k) == v for k, v in labels.items())


def _bits(value: np.float64) -> int:
    return int(np.array([value], dtype=np.float64).view(np.uint64)[0])


REPORT = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
]


# --- a healthy target -------------------------------------------------------------------------


def test_scrape_writes_samples_target_labels_and_report_series(endpoint: Endpoint) -> None:
    async def test(h: Harness) -> None:
        first = await h.scrape()
        assert first.names() == ["a", "b", *REPORT]
        for series, ts, _ in first.rows:
            assert series["job"] == "app"
            assert series["instance"] == endpoint.address
            assert series["env"] == "prod"
            assert ts == START
        assert first.value("a") == 1.0 and first.value("b") == 2.0
        assert first.value("up") == 1.0
        assert 0 < first.value("scrape_duration_seconds") < 2
        assert first.value("scrape_samples_scraped") == 2
        assert first.value("scrape_samples_post_metric_relabeling") == 2
        assert first.value("scrape_series_added") == 2
        assert first.decoded.metadata[0].type is MetricType.GAUGE
        second = await h.scrape()
        assert second.value("scrape_series_added") == 0
        assert second.timestamps() == {START + 15_000}
        assert second.stale() == []

    h = run(endpoint.address, test)
    assert len(h.written) == 2
    assert h.scraper.health(h.target).up is True
    headers = endpoint.exposition.requests[0]
    assert headers["accept"] == ACCEPT
    assert headers["accept"].startswith("application/openmetrics-text;version=1.0.0")
    assert headers["x-prometheus-scrape-timeout-seconds"] == "2"


def test_openmetrics_answer_is_parsed_as_openmetrics(endpoint: Endpoint) -> None:
    endpoint.exposition.content_type = OM
    endpoint.exposition.body = "# TYPE c counter\nc_total 5 1700000001.5\n# EOF\n"

    async def test(h: Harness) -> None:
        rows = await h.scrape()
        [(series, ts, value)] = [r for r in rows.rows if r[0][METRIC_NAME] == "c_total"]
        assert (ts, float(value)) == (1_700_000_001_500, 5.0)

    run(endpoint.address, test)


def test_invalid_exposition_marks_the_target_down_with_the_parse_error(endpoint: Endpoint) -> None:
    endpoint.exposition.content_type = OM
    endpoint.exposition.body = "a 1\n"  # no # EOF

    async def test(h: Harness) -> None:
        rows = await h.scrape()
        assert rows.names() == REPORT
        assert rows.value("up") == 0.0
        assert "line 1: OpenMetrics input must end with a '# EOF' line" in (
            h.scraper.health(h.target).last_error
        )

    run(endpoint.address, test)


# --- target labels ----------------------------------------------------------------------------


def test_clashing_labels_are_exported_without_honor_labels(endpoint: Endpoint) -> None:
    endpoint.exposition.body = 'm{job="other",instance="elsewhere",exported_job="x"} 1\n'

    async def test(h: Harness) -> None:
        rows = await h.scrape()
        [series] = [s for s, _, _ in rows.rows if s[METRIC_NAME] == "m"]
        assert series == {
            METRIC_NAME: "m",
            "job": "app",
            "instance": endpoint.address,
            "env": "prod",
            "exported_job": "x",
            "exported_exported_job": "other",
            "exported_instance": "elsewhere",
        }

    run(endpoint.address, test)


def test_honor_labels_keeps_the_scraped_values(endpoint: Endpoint) -> None:
    endpoint.exposition.body = 'm{job="other",instance="elsewhere"} 1\n'

    async def test(h: Harness) -> None:
        rows = await h.scrape()
        [series] = [s for s, _, _ in rows.rows if s[METRIC_NAME] == "m"]
        assert series == {METRIC_NAME: "m", "job": "other", "instance": "elsewhere", "env": "prod"}
        # The synthetic series always carry the target's own labels.
        assert rows.value("up", job="app", instance=endpoint.address) == 1.0

    run(endpoint.address, test, honor_labels="true")


def test_a_scraped_up_series_cannot_overwrite_the_real_one(endpoint: Endpoint) -> None:
    endpoint.exposition.body = "up 0\nother 1\n"

    async def test(h: Harness) -> None:
        rows = await h.scrape()
        assert rows.names() == ["other", *REPORT]
        assert rows.value("up") == 1.0

    run(endpoint.address, test)


# --- limits -----------------------------------------------------------------------------------


def test_sample_limit_fails_the_whole_scrape(endpoint: Endpoint) -> None:
    endpoint.exposition.body = "a 1\nb 2\n"

    async def test(h: Harness) -> None:
        assert (await h.scrape()).value("up") == 1.0
        endpoint.exposition.body = "a 1\nb 2\nc 3\n"
        rows = await h.scrape()
        assert rows.value("up") == 0.0
        assert rows.value("scrape_samples_scraped") == 3
        assert rows.value("scrape_samples_post_metric_relabeling") == 3
        assert rows.value("scrape_series_added") == 0
        assert sorted(rows.stale()) == ["a", "b"]  # nothing of the failed scrape is kept
        assert "c" not in rows.names()
        error = h.scraper.health(h.target).last_error
        assert error.startswith("sample_limit exceeded: the target exposed 3 samples")

    run(endpoint.address, test, sample_limit=2)


@pytest.mark.parametrize(
    ("setting", "body", "message"),
    [
        ({"label_limit": 5}, 'm{a="1",b="2"} 1\n', "label_limit exceeded: m has 6 labels"),
        ({"label_value_length_limit": 4}, 'm{a="12345"} 1\n', "label_value_length_limit"),
        ({"label_name_length_limit": 4}, 'm{abcde="1"} 1\n', "label_name_length_limit"),
    ],
)
def test_label_limits_fail_the_scrape(
    endpoint: Endpoint, setting: dict[str, int], body: str, message: str
) -> None:
    endpoint.exposition.body = body

    async def test(h: Harness) -> None:
        rows = await h.scrape()
        assert rows.value("up") == 0.0
        assert rows.names() == REPORT
        assert message in h.scraper.health(h.target).last_error

    run(endpoint.address, test, **setting)


# --- staleness --------------------------------------------------------------------------------


def test_series_that_disappear_get_one_stale_marker(endpoint: Endpoint) -> None:
    endpoint.exposition.body = "a 1\nb 2\nc 3 1699999999000\n"

    async def test(h: Harness) -> None:
        await h.scrape()
        endpoint.exposition.body = "a 1\nd 4\n"
        rows = await h.scrape()
        # b is gone; c had its own timestamp, so it is not subject to staleness.
        assert rows.stale() == ["b"]
        [(_, ts, _)] = [r for r in rows.rows if r[0][METRIC_NAME] == "b"]
        assert ts == START + 15_000
        assert rows.value("scrape_series_added") == 1
        assert (await h.scrape()).stale() == []

    run(endpoint.address, test)


def test_a_target_going_down_marks_all_its_series_stale(endpoint: Endpoint) -> None:
    async def test(h: Harness) -> None:
        await h.scrape()
        endpoint.exposition.status = 500
        down = await h.scrape()
        assert sorted(down.stale()) == ["a", "b"]
        assert down.value("up") == 0.0
        assert down.value("scrape_samples_scraped") == 0
        health = h.scraper.health(h.target)
        assert (health.up, health.last_error) == (False, "server returned HTTP status 500")
        still_down = await h.scrape()
        assert still_down.stale() == [] and still_down.value("up") == 0.0
        endpoint.exposition.status = 200
        back = await h.scrape()
        assert back.value("up") == 1.0 and back.value("scrape_series_added") == 2

    run(endpoint.address, test)


def test_timeout_and_refused_connections_are_down(endpoint: Endpoint) -> None:
    endpoint.exposition.delay = 1.0

    async def slow(h: Harness) -> None:
        rows = await h.scrape()
        assert rows.value("up") == 0.0
        assert rows.value("scrape_duration_seconds") < 0.9
        assert h.scraper.health(h.target).last_error == "scrape timed out after 0.3s"

    run(endpoint.address, slow, scrape_timeout="300ms")

    async def refused(h: Harness) -> None:
        rows = await h.scrape()
        assert rows.value("up") == 0.0
        assert "ConnectError" in h.scraper.health(h.target).last_error

    with socket_on_closed_port() as address:
        run(address, refused)


@contextlib.contextmanager
def socket_on_closed_port() -> Iterator[str]:
    """An address on 127.0.0.1 where nothing listens (bound, so no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


# --- the loop ---------------------------------------------------------------------------------


def test_start_scrapes_every_interval_until_stop(endpoint: Endpoint) -> None:
    clock = FakeClock(START)
    written: list[DecodedSamples] = []
    enough = asyncio.Event()

    async def sink(samples: DecodedSamples) -> None:
        written.append(samples)
        clock.advance(100)
        endpoint.exposition.body = f"a {len(written)}\n"
        if len(written) >= 3:
            enough.set()

    config = parse_scrape_config(config_text(endpoint.address, scrape_interval="100ms"))

    async def main() -> None:
        scraper = Scraper(config, sink, clock)
        async with running(scraper):
            await asyncio.wait_for(enough.wait(), timeout=10)
        count = len(written)
        await asyncio.sleep(0.3)
        assert len(written) == count  # stopped

    asyncio.run(main())
    values = [Rows(w).value("a") for w in written[1:3]]
    assert values == [1.0, 2.0]
    assert [min(Rows(w).timestamps()) for w in written[:3]] == [START, START + 100, START + 200]


# --- scrape.yaml ------------------------------------------------------------------------------


def test_config_defaults_and_targets() -> None:
    config = parse_scrape_config(
        "global:\n  scrape_interval: 30s\n"
        "scrape_configs:\n"
        "  - job_name: node\n"
        "    scrape_interval: 5s\n"
        "    metrics_path: /probe\n"
        "    static_configs:\n"
        "      - targets: ['10.0.0.1:9100', '10.0.0.1:9100', '[::1]:9100']\n"
        "        labels: {env: prod, replica: 2, job: custom}\n"
        "  - job_name: api\n"
        "    static_configs: [{targets: ['api:8080']}]\n"
    )
    targets = Scraper(config, _ignore, FakeClock()).targets
    assert [(t.url, t.interval_ms, t.timeout_ms) for t in targets] == [
        ("http://10.0.0.1:9100/probe", 5_000, 5_000),  # the global 10s timeout, capped
        ("http://[::1]:9100/probe", 5_000, 5_000),
        ("http://api:8080/metrics", 30_000, 10_000),
    ]
    assert dict(targets[0].labels) == {
        "env": "prod",
        "instance": "10.0.0.1:9100",
        "job": "custom",  # static labels win, as in Prometheus
        "replica": "2",
    }


async def _ignore(samples: DecodedSamples) -> None:
    return


BAD_CONFIG = """\
global:
  scrape_interval: 15x
scrape_configs:
  - job_name: a
    static_configs:
      - targets: [localhost:9100, "http://x:1/metrics"]
        labels: {"bad-name": x}
  - job_name: b
    scrape_intervall: 5s
    scheme: ftp
    sample_limit: -1
  - static_configs: []
"""


def test_config_errors_name_file_line_and_field() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scrape_config(BAD_CONFIG, "config/scrape.yaml")
    assert caught.value.message.splitlines() == [
        "config/scrape.yaml:2: global.scrape_interval: '15x' is not a duration; use e.g. 15s, "
        "1m or 1h30m",
        "config/scrape.yaml:6: scrape_configs[0].static_configs[0].targets[1]: "
        "'http://x:1/metrics' is not host:port; give the address without scheme or path, such "
        "as localhost:9100",
        "config/scrape.yaml:7: scrape_configs[0].static_configs[0].labels: 'bad-name' is not a "
        "valid label name",
        "config/scrape.yaml:9: scrape_configs[1].scrape_intervall: unknown field; check the "
        "spelling (see docs/configuration.md)",
        "config/scrape.yaml:10: scrape_configs[1].scheme: Input should be 'http' or 'https'",
        "config/scrape.yaml:11: scrape_configs[1].sample_limit: Input should be greater than or "
        "equal to 0",
        "config/scrape.yaml:12: scrape_configs[2].job_name: required field is missing",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
            "scrape.yaml:3: scrape_configs[1].job_name: job_name 'a' is used twice",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n",
            "scrape.yaml:4: scrape_configs[0].scrape_timeout: scrape_timeout must not be longer",
        ),
        ("scrape_configs: [\n", "scrape.yaml:2: (document): invalid YAML"),
        ("- 1\n", "scrape.yaml:1: (document): expected a mapping of fields"),
        ("global:\n  scrape_timeout: 0s\n", "scrape.yaml:2: global.scrape_timeout: must be longer"),
    ],
)
def test_config_semantic_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        parse_scrape_config(text)


def test_load_scrape_config_reports_the_path(tmp_path: Path) -> None:
    path = tmp_path / "scrape.yaml"
    path.write_text("scrape_configs:\n  - job_name: x\n    honor_labels: maybe\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: scrape_configs\[0\].honor_labels: "):
        load_scrape_config(path)
    path.write_text("")
    assert load_scrape_config(path).scrape_configs == []
    with pytest.raises(ConfigError, match="cannot read"):
        load_scrape_config(tmp_path / "missing.yaml")


def test_stale_marker_is_the_exact_bit_pattern(endpoint: Endpoint) -> None:
    async def test(h: Harness) -> None:
        await h.scrape()
        endpoint.exposition.body = "a 1\n"
        rows = await h.scrape()
        values = rows.decoded.batch.values
        [stale] = [v for v in values if math.isnan(v)]
        assert _bits(stale) == STALE_NAN_BITS

    run(endpoint.address, test)
