"""Browser-facing defences, as one ASGI middleware: security headers on every answer, and
cross-site write requests refused.

Cross-site request forgery: a page on another site can make the operator's browser send a
POST here (a form, or fetch with `mode: "no-cors"`), and on a server without tokens, or with
a cookie, nothing else would tell it from the UI's own. Browsers say where a request comes
from (`Sec-Fetch-Site`, and `Origin` on every cross-origin POST), so an unsafe method from
another site is refused with 403 unless it carries a bearer header: a page can only add one
to a cross-origin request after a CORS preflight, which no route but the SDK's allows.
The SDK's events route is made for other sites and checks their origins itself.

Framing: nothing may be framed (`X-Frame-Options: DENY`, `frame-ancestors 'none'`) but a
report's HTML preview, which the /reports page shows in a same-origin iframe. That answer gets
a policy of its own: its inline `<style>` and `data:` chart images, nothing that runs.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsmetrics.web.errors import error_response

#: Scripts and styles from /static only: no inline script. ECharts and our modules set
#: `element.style`, which CSP allows; `style` attributes in HTML they build (tooltips) need
#: style-src-attr. Images: our own, data: URLs (the favicon) and blob: (chart downloads).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
#: The rendered report in the /reports page's iframe: no script source at all, and `sandbox`
#: (an opaque origin, no scripts, forms or pop-ups) even when the page is opened on its own.
REPORT_PREVIEW_POLICY = "; ".join(
    [
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'self'",
        "sandbox",
    ]
)
BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
HEADERS = [*BASE_HEADERS, (b"x-frame-options", b"DENY")]
#: The report previews (the API's and the page's, which takes the sign-in cookie).
FRAMED_PATH = re.compile(r"(?:/api/v1)?/reports/[^/]+/preview")
#: FastAPI's API docs pages load their scripts from a CDN with inline code: no CSP there.
NO_CSP_PATHS = ("/docs", "/redoc")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CROSS_SITE_ALLOWED = ("/api/v1/sdk/events",)


class SecurityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = cross_site_refusal(scope)
        path = str(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                message["headers"] = [*headers, *headers_for(path, Headers(raw=headers))]
            await send(message)

        if refusal is not None:
            await error_response(403, "forbidden", refusal)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def headers_for(path: str, answer: Headers) -> list[tuple[bytes, bytes]]:
    """The security headers of an answer to `path` whose own headers are `answer`."""
    if path.startswith(NO_CSP_PATHS):
        return list(HEADERS)
    if FRAMED_PATH.fullmatch(path) and answer.get("content-type", "").startswith("text/html"):
        policy = (b"content-security-policy", REPORT_PREVIEW_POLICY.encode())
        return [*BASE_HEADERS, (b"x-frame-options", b"SAMEORIGIN"), policy]
    return [*HEADERS, (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())]


def cross_site_refusal(scope: Scope) -> str | None:
    """Why this request is a cross-site write to refuse, or None."""
    if scope["method"] in SAFE_METHODS or scope["path"] in CROSS_SITE_ALLOWED:
        return None
    headers = Headers(scope=scope)
    if headers.get("authorization"):
        return None
    fetch_site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    if fetch_site in ("cross-site", "same-site"):
        return _message(f"Sec-Fetch-Site: {fetch_site}")
    if origin is not None and not _same_origin(origin, headers.get("host")):
        return _message(f"Origin {origin}")
    return None


def _same_origin(origin: str, host: str | None) -> bool:
    # The scheme is not compared: behind a TLS proxy the server itself sees plain HTTP.
    return origin != "null" and host is not None and urlsplit(origin).netloc == host


def _message(where: str) -> str:
    return (
        f"cross-site request refused ({where}): this server takes writes from its own pages "
        "and from clients with an `Authorization: Bearer` token, not from other sites' pages"
    )
