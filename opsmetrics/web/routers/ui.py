"""The web UI: server-rendered page shells (Jinja2) whose ES modules draw from the JSON API.

Pages need the `read` scope like the API when tokens exist. A browser cannot add a bearer header
to a page load, so a page also accepts the token from the `opsmetrics_token` cookie, which the
sign-in form sets (together with localStorage, from where the modules send it to the API).
Static files live under /static with cache headers; nothing is loaded from the network.
"""

from __future__ import annotations

import html
import posixpath
import re
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.staticfiles import StaticFiles
from starlette.types import Scope as AsgiScope

from opsmetrics import __version__
from opsmetrics.dashboards.data import dashboard_json
from opsmetrics.errors import AuthenticationError, NotFoundError, PermissionDeniedError, UserError
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import check_token, services
from opsmetrics.web.errors import status_for
from opsmetrics.web.routers import reports as reports_api

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
STATIC_DIR = HERE / "static"
TOKEN_COOKIE = "opsmetrics_token"
#: Vendored files never change for a given name; our own modules may change between releases.
VENDOR_MAX_AGE = 7 * 24 * 3600
APP_MAX_AGE = 300
#: What JavaScript's encodeURIComponent leaves as it is, besides letters, digits and `_.-~`.
URI_SAFE = "!*'()"

router = APIRouter(tags=["ui"], include_in_schema=False)


class CachedStaticFiles(StaticFiles):
    """StaticFiles with Cache-Control: long for vendor/, short for the app's own files."""

    async def get_response(self, path: str, scope: AsgiScope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            max_age = VENDOR_MAX_AGE if path.startswith("vendor/") else APP_MAX_AGE
            response.headers["Cache-Control"] = f"public, max-age={max_age}"
        return response


def install(app: FastAPI) -> None:
    """Add the pages and mount /static."""
    app.include_router(router)
    app.mount("/static", CachedStaticFiles(directory=str(STATIC_DIR)), name="static")


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> Response:
    return _page(request, "overview.html", "Overview", "overview")


@router.get("/dashboards/{name}", response_class=HTMLResponse)
async def dashboard(request: Request, name: str) -> Response:
    denied = _denied(request)
    if denied is not None:
        return denied
    svc = services(request)
    try:
        found = svc.dashboards.get(name)
    except NotFoundError as exc:
        return _not_found(request, exc.message)
    # The definition goes into the page (as GET /api/v1/dashboards/{name} answers it), so the
    # module can ask for the data at once instead of after a second round trip.
    definition = dashboard_json(found, svc.catalog)
    extra = {
        "dashboard": name,
        "definition": definition,
        "data_path": f"/api/v1/dashboards/{quote(name, safe=URI_SAFE)}/data",
        "default_from": relative_for(definition.get("time_range")),
    }
    return _page(request, "dashboard.html", found.title, "dashboard", extra)


def relative_for(seconds: float | None) -> str:
    """`now-<duration>` for a range in seconds, in the words range.js `relativeFor` uses
    (2592000 → now-30d); the UI's own default (24 hours) without one."""
    if not seconds:
        return "now-24h"
    ms = seconds * 1000
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms % size == 0:
            return f"now-{int(ms // size)}{unit}"
    return f"now-{seconds:g}s"


@router.get("/kpis/{name}", response_class=HTMLResponse)
async def kpi(request: Request, name: str) -> Response:
    denied = _denied(request)
    if denied is not None:
        return denied
    try:
        definition = services(request).catalog.get(name)
    except NotFoundError as exc:
        return _not_found(request, exc.message)
    return _page(request, "kpi.html", definition.title or name, "kpi", {"kpi": name})


@router.get("/initiatives", response_class=HTMLResponse)
async def initiatives(request: Request) -> Response:
    return _page(request, "initiatives.html", "Initiatives", "initiatives", {"initiative": ""})


@router.get("/initiatives/{name}", response_class=HTMLResponse)
async def initiative(request: Request, name: str) -> Response:
    return _page(request, "initiatives.html", name, "initiatives", {"initiative": name})


@router.get("/alerts", response_class=HTMLResponse)
async def alerts(request: Request) -> Response:
    return _page(request, "alerts.html", "Alerts", "alerts")


@router.get("/sources", response_class=HTMLResponse)
async def sources(request: Request) -> Response:
    return _page(request, "sources.html", "Sources", "sources")


@router.get("/hygiene", response_class=HTMLResponse)
async def hygiene(request: Request) -> Response:
    return _page(request, "hygiene.html", "Hygiene", "hygiene")


@router.get("/reports", response_class=HTMLResponse)
async def reports(request: Request) -> Response:
    denied = _denied(request)
    if denied is not None:
        return denied
    extra = {"can_send": _has_scope(request, Scope.ADMIN)}
    return _page(request, "reports.html", "Reports", "reports", extra)


@router.get("/reports/{name}/preview")
async def report_preview(
    request: Request, name: str, format: str = "html", at: str = ""
) -> Response:
    """GET /api/v1/reports/{name}/preview for the page's iframe and links, which cannot send a
    bearer header: the sign-in cookie is taken too. A bad request is a short page, since
    it is shown in the iframe."""
    denied = _denied(request)
    if denied is not None:
        return denied
    try:
        return await reports_api.preview(request, name, format, at)
    except UserError as exc:
        message = html.escape(exc.message, quote=False)
        text = f"<!doctype html><title>No preview</title><p>{message}</p>"
        return HTMLResponse(text, status_code=status_for(exc))


@router.get("/explore", response_class=HTMLResponse)
async def explore(request: Request) -> Response:
    return _page(request, "explore.html", "Explore", "explore")


# --- helpers ----------------------------------------------------------------------------
def _page(
    request: Request, template: str, title: str, page: str, extra: dict[str, Any] | None = None
) -> Response:
    denied = _denied(request)
    if denied is not None:
        return denied
    context = {"title": title, "page": page, "version": __version__, **(extra or {})}
    context["modules"] = module_imports(f"pages/{page}.js")
    return TEMPLATES.TemplateResponse(request, template, context)


_IMPORT = re.compile(r"""^\s*import\s+(?:[^"';]*?\sfrom\s+)?["'](\.{1,2}/[^"']+)["']""", re.M)


@cache
def module_imports(entry: str) -> tuple[str, ...]:
    """Every module `entry` (a path under static/js) imports, directly or not, as paths under
    static/js, for `<link rel="modulepreload">`: the browser then fetches them all at once."""
    found: list[str] = []
    todo = [entry]
    while todo:
        current = PurePosixPath(todo.pop())
        file = STATIC_DIR / "js" / current
        if not file.is_file():
            continue
        for spec in _IMPORT.findall(file.read_text(encoding="utf-8")):
            path = posixpath.normpath(str(current.parent / spec))
            if path not in found and path != entry:
                found.append(path)
                todo.append(path)
    return tuple(found)


def _presented_token(request: Request) -> str | None:
    """The Authorization header, else the sign-in cookie as one."""
    header = request.headers.get("authorization")
    cookie = request.cookies.get(TOKEN_COOKIE)
    return f"Bearer {cookie}" if not header and cookie else header


def _has_scope(request: Request, scope: Scope) -> bool:
    """Whether the request's token (already checked for `read`) also allows `scope`."""
    try:
        check_token(request, _presented_token(request), scope)
    except PermissionDeniedError:
        return False
    return True


def _denied(request: Request) -> Response | None:
    """The sign-in page (401/403) unless the header or cookie token has the `read` scope."""
    try:
        check_token(request, _presented_token(request), Scope.READ)
    except (AuthenticationError, PermissionDeniedError) as exc:
        status = 403 if isinstance(exc, PermissionDeniedError) else 401
        context = {"title": "Sign in", "page": "login", "version": __version__}
        context["message"] = exc.message
        return TEMPLATES.TemplateResponse(request, "login.html", context, status_code=status)
    return None


def _not_found(request: Request, message: str) -> Response:
    context = {"title": "Not found", "page": "notfound", "version": __version__}
    context["message"] = message
    return TEMPLATES.TemplateResponse(request, "404.html", context, status_code=404)
