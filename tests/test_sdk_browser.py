"""The browser SDK in Debian's Chromium (Playwright), loaded by pages on another origin from a
real opsmetrics server: page views (SPA route changes too), events with properties,
identify, a batch sent by sendBeacon when the page goes away, retries through a proxy that
answers 503, the offline queue across a reload, Do-Not-Track and opt-out, and a page on an
origin the key does not allow. Every event is checked in the server's store, exactly once.
Also: the committed build is what the source builds to, and it stays small."""

from __future__ import annotations

import gc
import gzip
import json
import shutil
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from opsmetrics.auth import NewToken, new_publishable_key, new_token
from opsmetrics.clock import FakeClock
from opsmetrics.services import open_services
from opsmetrics.settings import Settings
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.routers.sdk import SDK_DIR
from tests.server import ServerProcess, free_port, run_bounded, wait_until
from tests.ui_helpers import browser_env, chromium_path

pytestmark = pytest.mark.e2e
NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
CHROMIUM = chromium_path()
SDK_SRC = Path(__file__).resolve().parent.parent / "sdk" / "js"
#: Module page: imports the ES module build from the opsmetrics server (a CORS fetch).
MODULE_PAGE = """<!doctype html><html><head><title>Home</title></head><body>
<script type="module">
import * as om from "{server}/sdk/opsmetrics.mjs";
window.om = om;
document.body.dataset.ready = "1";
</script></body></html>"""
#: Classic page: the script build, which defines the global `opsmetrics`.
CLASSIC_PAGE = """<!doctype html><html><head><title>Classic</title></head><body>
<script src="{server}/sdk/opsmetrics.js"></script>
<script>window.om = opsmetrics; document.body.dataset.ready = "1";</script>
</body></html>"""


# --- local servers: pages on other origins, and a proxy that can answer 503 -------------
class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler], **attrs: Any) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    for name, value in attrs.items():
        setattr(httpd, name, value)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def stop(*servers: ThreadingHTTPServer) -> None:
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


class PageHandler(_Quiet):
    """Any path is the same page (a single-page app); /classic/… uses the script build."""

    def do_GET(self) -> None:
        template = CLASSIC_PAGE if self.path.startswith("/classic") else MODULE_PAGE
        body = template.format(server=self.server.opsmetrics).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class ProxyState:
    upstream: str
    failures_left: int = 0  # answer this many event posts with 503 before forwarding
    retry_after: str = "1"
    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    #: Sec-Fetch-Mode of each post: `cors` from fetch(), `no-cors` from navigator.sendBeacon.
    modes: list[str] = field(default_factory=list)


class ProxyHandler(_Quiet):
    """In front of the opsmetrics server, as a load balancer would be. While failures are
    left, an event post gets 503 with Retry-After (and the CORS headers our server would send,
    so the page can read them); the rest is forwarded as it is."""

    def do_POST(self) -> None:
        state: ProxyState = self.server.state  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state.bodies.append(body)
        state.modes.append(self.headers.get("Sec-Fetch-Mode", ""))
        if state.failures_left > 0:
            state.failures_left -= 1
            self._answer(503, {"Retry-After": state.retry_after}, b'{"status": "error"}')
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("origin", "content-type")}
        got = httpx.post(state.upstream + self.path, content=body, headers=headers, timeout=30)
        keep = {k: v for k, v in got.headers.items() if k.lower().startswith("access-control")}
        self._answer(got.status_code, keep, got.content, cors=False)

    def _answer(self, status: int, headers: dict[str, str], body: bytes, cors: bool = True) -> None:
        self.send_response(status)
        if cors and self.headers.get("Origin"):
            self.send_header("Access-Control-Allow-Origin", self.headers["Origin"])
            self.send_header("Access-Control-Expose-Headers", "Retry-After")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# --- fixtures ---------------------------------------------------------------------------
@dataclass
class Setup:
    server: ServerProcess
    data: Path
    key: NewToken
    read: NewToken
    page_url: str  # an origin the key allows
    other_url: str  # one it does not

    def count(self, name: str, by: str | None = None) -> dict[str, int]:
        """Stored events named `name` per value of the property `by`, through the API."""
        params: dict[str, Any] = {"name": name, "agg": "count", "grain": "year"}
        params |= {"start": (NOW - 86_400_000) / 1000, "end": (NOW + 86_400_000) / 1000}
        if by:
            params["by"] = by
        got = httpx.get(
            self.server.url + "/api/v1/events/aggregate",
            params=params,
            headers={"Authorization": f"Bearer {self.read.secret}"},
        )
        assert got.status_code == 200, got.text
        buckets = got.json()["data"]["buckets"]
        return {str(b["group"].get(by, "")) if by else "": int(b["value"]) for b in buckets}


def start_setup(root: Path, pages: ThreadingHTTPServer, other: ThreadingHTTPServer) -> Setup:
    data = root / "data"
    page_url = f"http://127.0.0.1:{pages.server_port}"
    key = new_publishable_key("test page", [page_url], NOW)
    read = new_token("checks", Scope.READ, NOW)
    services = open_services(Settings(data_dir=data), FakeClock(NOW))
    try:
        for t in (key, read):
            services.storage.save_token(t.record)
    finally:
        services.close()
    server = ServerProcess(data, now_ms=NOW, port=pages.opsmetrics_port)  # type: ignore[attr-defined]
    server.start(timeout=120)
    return Setup(server, data, key, read, page_url, f"http://127.0.0.1:{other.server_port}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None, (
        "Debian's chromium is not installed: run `make test` (or `apt-get install chromium`)"
    )
    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], env=browser_env()
        )
        yield launched
        launched.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def page_servers() -> tuple[ThreadingHTTPServer, ThreadingHTTPServer]:
    port = free_port()
    opsmetrics = f"http://127.0.0.1:{port}"
    attrs = {"opsmetrics": opsmetrics, "opsmetrics_port": port}
    return serve(PageHandler, **attrs), serve(PageHandler, **attrs)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    pages, other = page_servers()
    s = start_setup(tmp_path_factory.mktemp("sdk"), pages, other)
    try:
        yield s
    finally:
        s.server.kill()
        stop(pages, other)


@pytest.fixture
def proxy(setup: Setup) -> Iterator[ProxyState]:
    state = ProxyState(setup.server.url)
    httpd = serve(ProxyHandler, state=state)
    state.url = f"http://127.0.0.1:{httpd.server_port}"
    yield state
    stop(httpd)


def new_context(browser: Browser, server: ServerProcess) -> BrowserContext:
    context = browser.new_context()
    # Events carry Date.now(): the page's clock runs from the server's, not the machine's.
    context.clock.install(time=server.clock_ms() / 1000)
    return context


@pytest.fixture
def context(browser: Browser, setup: Setup) -> Iterator[BrowserContext]:
    context = new_context(browser, setup.server)
    yield context
    context.close()


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready]", state="attached")
    return page


def init(page: Page, url: str, key: NewToken, **options: Any) -> None:
    page.evaluate("([o]) => om.init(o)", [{"url": url, "key": key.secret, **options}])


def queued(page: Page) -> list[dict[str, Any]]:
    stored = page.evaluate(
        "() => Object.keys(localStorage).filter((k) => k.includes('queue'))"
        ".flatMap((k) => JSON.parse(localStorage[k]))"
    )
    return list(stored)


HOLD = {"batchSize": 1000, "flushInterval": 600_000}  # nothing goes out until flush()


# --- the tests --------------------------------------------------------------------------
def test_page_views_events_and_identify_are_stored_once(browser: Browser, tmp_path: Path) -> None:
    pages, other = page_servers()
    setup = start_setup(tmp_path, pages, other)
    try:
        context = new_context(browser, setup.server)
        page = open_page(context, setup.page_url + "/shop/home?from=ad")
        init(page, setup.server.url, setup.key, **HOLD)
        page.evaluate("""() => {
            history.pushState({}, "", "/shop/cart");
            document.title = "Cart";  // after the URL, as routers do
            om.track("add_to_cart", {sku: "A1", qty: 2, gift: false, nested: {a: 1}, n: NaN});
            om.identify("user-42");
            om.track("checkout", {total: 19.99}, 1999);
            history.replaceState({}, "", "/shop/cart?step=2");  // same path: no page view
            history.back();
        }""")
        page.wait_for_function("() => location.pathname === '/shop/home'")
        wait_until(lambda: len(queued(page)) == 6, "six events queued")
        page.evaluate("() => om.flush()")
        assert queued(page) == []
        context.close()
        assert setup.server.stop() == 0
        store = DuckDBStorage(setup.data, now_ms=NOW + 3_600_000)
        try:
            events = store.read_events(None, NOW - 3_600_000, NOW + 3_600_000)
        finally:
            store.close()
    finally:
        setup.server.kill()
        stop(pages, other)
    got = [(e.name, e.entity, e.props, e.value) for e in events]
    anon = events[0].entity
    assert anon.startswith("anon-") and len({e.id for e in events}) == 6
    home = setup.page_url + "/shop/home?from=ad"
    cart = setup.page_url + "/shop/cart"
    # Sorted: events tracked in the same millisecond come back in key order.
    assert sorted(got, key=repr) == sorted(
        [
            ("$pageview", anon, {"path": "/shop/home", "referrer": "", "title": "Home"}, None),
            ("$pageview", anon, {"path": "/shop/cart", "referrer": home, "title": "Cart"}, None),
            ("add_to_cart", anon, {"sku": "A1", "qty": 2, "gift": False}, None),
            ("$identify", "user-42", {"anonymous_id": anon}, None),
            ("checkout", "user-42", {"total": 19.99}, 1999.0),
            (
                "$pageview",
                "user-42",
                {"path": "/shop/home", "referrer": cart, "title": "Cart"},
                None,
            ),
        ],
        key=repr,
    )
    assert all(NOW <= e.ts <= NOW + 600_000 for e in events)


def test_a_batch_is_sent_with_sendbeacon_when_the_page_goes_away(
    context: BrowserContext, setup: Setup, proxy: ProxyState
) -> None:
    page = open_page(context, setup.page_url + "/classic/pricing")
    init(page, proxy.url, setup.key, pageviews=False, **HOLD)
    page.evaluate("() => { for (const p of ['free', 'pro', 'team']) om.track('plan_viewed', {p}) }")
    assert proxy.bodies == []  # held: nothing sent yet
    page.goto("about:blank")  # pagehide: the SDK hands what is waiting to sendBeacon
    expected = {"free": 1, "pro": 1, "team": 1}
    wait_until(lambda: setup.count("plan_viewed", "p") == expected, "the beacon's events")
    assert proxy.modes == ["no-cors"]  # one request, and a beacon's, not a fetch's


def test_a_batch_is_retried_while_the_server_answers_503(
    context: BrowserContext, setup: Setup, proxy: ProxyState
) -> None:
    proxy.failures_left = 2
    page = open_page(context, setup.page_url + "/retry")
    url = proxy.url
    init(page, url, setup.key, pageviews=False, batchSize=2, retryBase=50)
    page.evaluate("() => { om.track('retried', {n: 'a'}); om.track('retried', {n: 'b'}) }")
    wait_until(lambda: setup.count("retried", "n") == {"a": 1, "b": 1}, "the third attempt")
    assert len(proxy.bodies) == 3 and len(set(proxy.bodies)) == 1  # the same ids each time
    wait_until(lambda: queued(page) == [], "an empty queue")


def test_the_offline_queue_is_bounded_and_survives_a_reload(
    context: BrowserContext, setup: Setup, proxy: ProxyState
) -> None:
    proxy.failures_left, proxy.retry_after = 1, "3600"
    url = proxy.url
    page = open_page(context, setup.page_url + "/offline")
    init(page, url, setup.key, pageviews=False, batchSize=1, maxQueue=5)
    page.evaluate("() => { for (let i = 0; i < 8; i++) om.track('offline', {n: `e${i}`}) }")
    assert [e["props"]["n"] for e in queued(page)] == ["e3", "e4", "e5", "e6", "e7"]
    # the first batch's post may still be on its way to the proxy (a loaded machine)
    wait_until(lambda: proxy.bodies, "the first batch at the proxy")
    assert len(proxy.bodies) == 1  # then it waits out the hour the proxy asked for
    page.reload()  # a new page load: no beacon while backing off, the queue is in storage
    page.wait_for_selector("body[data-ready]", state="attached")
    init(page, url, setup.key, pageviews=False, batchSize=1, maxQueue=5)
    expected = {f"e{i}": 1 for i in range(3, 8)}
    wait_until(lambda: setup.count("offline", "n") == expected, "the queue sent after reload")
    wait_until(lambda: queued(page) == [], "an empty queue")


def test_do_not_track_sends_nothing(browser: Browser, setup: Setup) -> None:
    context = new_context(browser, setup.server)
    context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
    )
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    try:
        page = open_page(context, setup.page_url + "/dnt")
        init(page, setup.server.url, setup.key, batchSize=1)
        page.evaluate("() => { om.track('dnt', {}); return om.flush() }")
        assert queued(page) == []
    finally:
        context.close()
    assert [u for u in requests if "/api/v1/sdk/" in u] == []
    assert setup.count("dnt") == {}


def test_opt_out_is_kept_across_visits_until_opt_in(context: BrowserContext, setup: Setup) -> None:
    page = open_page(context, setup.page_url + "/privacy")
    init(page, setup.server.url, setup.key, pageviews=False)
    page.evaluate("() => { om.track('before_optout', {}); om.optOut(); om.track('opted_out', {}) }")
    assert queued(page) == []  # what was waiting is dropped too
    page.reload()
    page.wait_for_selector("body[data-ready]", state="attached")
    init(page, setup.server.url, setup.key, pageviews=True)
    page.evaluate("() => { om.track('opted_out', {}); return om.flush() }")
    page.evaluate("() => { om.optIn(); om.track('opted_in', {}); return om.flush() }")
    assert setup.count("opted_in") == {"": 1}
    assert setup.count("opted_out") == setup.count("before_optout") == {}


def forbidden_count(setup: Setup) -> float:
    """The server's count of requests refused as forbidden (a wrong origin), from /metrics."""
    text = httpx.get(setup.server.url + "/metrics").text
    line = 'opsmetrics_ingest_rejected_total{reason="forbidden"} '
    return sum(float(x[len(line) :]) for x in text.splitlines() if x.startswith(line))


def test_a_page_on_another_origin_is_refused(context: BrowserContext, setup: Setup) -> None:
    failed: list[str] = []
    context.on("requestfailed", lambda r: "/api/v1/sdk/" in r.url and failed.append(r.url))
    before = forbidden_count(setup)
    page = open_page(context, setup.other_url + "/elsewhere")
    init(page, setup.server.url, setup.key, pageviews=False, batchSize=1, retryBase=60_000)
    page.evaluate("() => { om.track('from_elsewhere', {}); return om.flush() }")
    assert forbidden_count(setup) == before + 1  # the server said 403...
    assert len(failed) == 1  # ...without a CORS header, so the page cannot read it
    assert [e["name"] for e in queued(page)] == ["from_elsewhere"]  # kept for a retry
    assert setup.count("from_elsewhere") == {}


def test_the_key_cannot_write_samples_or_read(setup: Setup) -> None:
    """The key as a page would leak it: in a bearer header or in the URL."""
    with httpx.Client(base_url=setup.server.url) as http:
        check_refused(http, setup)


def check_refused(http: httpx.Client, setup: Setup) -> None:
    key = setup.key.secret
    writes = {
        "/api/v1/samples": b'[{"name": "up", "value": 1}]',
        "/api/v1/import/prometheus": b"up 1\n",
        "/api/v1/write": b"",
        "/v1/metrics": b"{}",
        "/api/v1/events": b'[{"name": "x"}]',
    }
    for path, body in writes.items():
        as_bearer = http.post(path, content=body, headers={"Authorization": f"Bearer {key}"})
        assert as_bearer.status_code == 403, path
        assert http.post(path, content=body, params={"key": key}).status_code == 401, path
    for path in ("/api/v1/query?query=up", "/api/v1/events/aggregate?name=x", "/api/v1/labels"):
        assert http.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 403
    query = http.get(
        "/api/v1/query",
        params={"query": "up"},
        headers={"Authorization": f"Bearer {setup.read.secret}"},
    )
    assert query.json()["data"]["result"] == []  # no sample was written


# --- the build --------------------------------------------------------------------------
def test_the_committed_build_is_what_the_source_builds(tmp_path: Path) -> None:
    """`make sdk` output is committed (make test needs no npm); it must not drift."""
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "Node and npm are needed to rebuild the SDK (Debian: nodejs, npm)"
    work = tmp_path / "js"
    if (SDK_SRC / "node_modules" / "esbuild").exists():
        work = SDK_SRC  # `make sdk` has run: its esbuild is the pinned one
    else:
        shutil.copytree(SDK_SRC, work, ignore=shutil.ignore_patterns("node_modules"))
        ci = run_bounded([npm, "ci", "--prefix", str(work), "--no-audit", "--no-fund"], 300)
        assert ci.returncode == 0, ci.stderr
    out = tmp_path / "out"
    built = run_bounded([node, str(work / "build.mjs"), str(out)], 120)
    assert built.returncode == 0, built.stderr
    for name in ("opsmetrics.js", "opsmetrics.mjs"):
        assert (out / name).read_bytes() == (SDK_DIR / name).read_bytes(), (
            f"opsmetrics/web/sdk/{name} differs from a build of sdk/js/src: run `make sdk`"
        )


def test_the_bundle_stays_small() -> None:
    for name in ("opsmetrics.js", "opsmetrics.mjs"):
        assert len(gzip.compress((SDK_DIR / name).read_bytes(), 9)) <= 5 * 1024
    assert json.loads((SDK_SRC / "package.json").read_text()).get("dependencies") is None
