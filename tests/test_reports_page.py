"""The /reports page's routes, in process (no browser): who gets the "Send now" form, the page's
preview route taking the sign-in cookie, and the one framing exception of the security headers
(a report's HTML preview may be framed by its own origin; everything else stays DENY)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opsmetrics.auth import new_token
from opsmetrics.catalog.validate import EXAMPLE_CONFIG
from opsmetrics.clock import FakeClock
from opsmetrics.services import open_services
from opsmetrics.settings import Settings
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.app import create_app

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
REPORT = "operations-hourly"  # the demo's report without charts of a dashboard's range


class App:
    """GET and POST against the app in this process (httpx's ASGI transport)."""

    def __init__(self, app: Any, secrets: dict[Scope, str]) -> None:
        self.app = app
        self.secrets = secrets

    def get(self, url: str, scope: Scope | None = None, **kwargs: Any) -> httpx.Response:
        return asyncio.run(self._send("GET", url, scope, **kwargs))

    def post(self, url: str, scope: Scope | None = None) -> httpx.Response:
        return asyncio.run(self._send("POST", url, scope))

    async def _send(self, method: str, url: str, scope: Scope | None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if scope is not None:
            headers["Authorization"] = f"Bearer {self.secrets[scope]}"
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.request(method, url, headers=headers, **kw)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    data = tmp_path_factory.mktemp("reports-page") / "data"
    services = open_services(Settings(data_dir=data, config_dir=EXAMPLE_CONFIG), FakeClock(NOW))
    tokens = {scope: new_token(scope.value, scope, 0) for scope in (Scope.READ, Scope.ADMIN)}
    for token in tokens.values():
        services.tokens.add(token.record)
    try:
        yield App(create_app(services), {s: t.secret for s, t in tokens.items()})
    finally:
        services.close()


def _cookie(app: App, scope: Scope) -> dict[str, str]:
    return {"Cookie": f"opsmetrics_token={app.secrets[scope]}"}


def test_only_an_admin_token_gets_the_send_form(app: App) -> None:
    read = app.get("/reports", Scope.READ)
    assert read.status_code == 200 and "pages/reports.js" in read.text
    assert 'id="send-form"' not in read.text and 'id="send-refused"' in read.text
    assert 'data-can-send="false"' in read.text
    admin = app.get("/reports", headers=_cookie(app, Scope.ADMIN))
    assert 'id="send-form"' in admin.text and 'data-can-send="true"' in admin.text
    assert '<a href="/reports" aria-current="page">Reports</a>' in admin.text
    assert app.get("/reports").status_code == 401  # tokens exist: no anonymous page
    # The page's modules are preloaded, its own two helpers among them.
    assert '/static/js/pages/reports_preview.js"' in read.text
    assert '/static/js/pages/reports_format.js"' in read.text
    # A read token that tries to send anyway is refused, and nothing runs.
    refused = app.post(f"/api/v1/reports/{REPORT}/send", Scope.READ)
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    assert app.get(f"/api/v1/reports/{REPORT}/runs", Scope.READ).json()["data"] == []


def test_only_the_html_preview_may_be_framed_and_only_by_its_own_origin(app: App) -> None:
    path = f"/reports/{REPORT}/preview"
    framed = app.get(path, headers=_cookie(app, Scope.READ))  # a navigation: the cookie only
    assert framed.status_code == 200, framed.text
    assert framed.headers["content-type"].startswith("text/html")
    assert "Operations, last hour" in framed.text
    assert framed.headers["x-frame-options"] == "SAMEORIGIN"
    csp = framed.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp and "sandbox" in csp.split("; ")
    assert "script-src" not in csp and "default-src 'none'" in csp  # nothing in it runs
    api_path = f"/api/v1{path}"
    api = app.get(api_path, Scope.READ)
    assert api.headers["x-frame-options"] == "SAMEORIGIN"
    assert api.headers["content-security-policy"] == csp
    # The API does not take the cookie (only pages do).
    assert app.get(api_path, headers=_cookie(app, Scope.READ)).status_code == 401
    # Every other answer keeps DENY: the page, an API error, the list (the CSV: below).
    for other in (
        app.get("/reports", Scope.READ),
        app.get(f"/api/v1/reports/{REPORT}/preview?format=docx", Scope.READ),
        app.get("/api/v1/reports", Scope.READ),
    ):
        assert other.headers["x-frame-options"] == "DENY", other.url
        assert "frame-ancestors 'none'" in other.headers["content-security-policy"], other.url


def test_the_page_preview_names_a_bad_field_in_a_short_page(app: App) -> None:
    cookie = _cookie(app, Scope.READ)
    bad = app.get(f"/reports/{REPORT}/preview?format=docx", headers=cookie)
    assert bad.status_code == 400 and "format: 'docx' is not one of html, pdf, csv" in bad.text
    bad_at = app.get(f"/reports/{REPORT}/preview?at=yesterday", headers=cookie)
    assert bad_at.status_code == 400 and "at" in bad_at.text
    assert "<script" not in bad.text + bad_at.text
    unknown = app.get("/reports/no-such-report/preview", headers=cookie)
    assert unknown.status_code == 404 and "no-such-report" in unknown.text
    csv = app.get(f"/reports/{REPORT}/preview?format=csv", headers=cookie)
    assert csv.status_code == 200 and csv.text.startswith("name,title,value")
    assert csv.headers["content-disposition"].startswith("attachment;")
    assert csv.headers["x-frame-options"] == "DENY"  # only the HTML preview may be framed
    assert app.get(f"/reports/{REPORT}/preview").status_code == 401
