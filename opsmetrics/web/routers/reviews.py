"""Owners' KPI reviews and the hygiene report over HTTP (docs/reviews.md):

POST /api/v1/kpis/{name}/reviews   mark a KPI reviewed: {"author": …, "note": …} (scope ingest)
GET  /api/v1/kpis/{name}/reviews   its review standing and its reviews, newest first
GET  /api/v1/reviews[?owner=]      the review list: due, overdue, off target, no owner
GET  /api/v1/hygiene               noisy alerts, unreviewed and unused KPIs, silent sources
"""

from __future__ import annotations

import asyncio

import msgspec
from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.catalog.kpi_lineage import DependentSource
from opsmetrics.errors import BadDataError
from opsmetrics.query.kpi import KpiPoint
from opsmetrics.reports import hygiene, reviews
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import read_json_body, require, services
from opsmetrics.web.kpi_metrics import kpi_values
from opsmetrics.web.routers.read import success

router = APIRouter(tags=["reviews"])
READ = [Depends(require(Scope.READ))]
#: Reviews are people's entries about a KPI, like manual KPI values: scope ingest (or admin).
WRITE = [Depends(require(Scope.INGEST))]
_EXAMPLE = '{"author": "ana", "note": "checked the drop: a tracking outage on the 3rd"}'


class _ReviewJSON(msgspec.Struct, forbid_unknown_fields=True):
    author: str
    note: str = ""


def _decode(body: bytes) -> _ReviewJSON:
    try:
        return msgspec.json.decode(body, type=_ReviewJSON)
    except msgspec.ValidationError as exc:
        raise BadDataError(f"invalid review: {exc}; send {_EXAMPLE}") from None
    except msgspec.DecodeError as exc:
        message = f"invalid review: the body is not JSON ({exc}); send {_EXAMPLE}"
        raise BadDataError(message) from None


def _points(request: Request) -> reviews.PointSource:
    values = kpi_values(request)

    def point(name: str) -> KpiPoint | None:
        return values.current(name).point

    return point


def _users(request: Request) -> list[DependentSource]:
    """What may use a KPI besides other KPIs: dashboards, KPI alert rules, and the reports
    (catalog/reports.py ReportSet) once the services load them."""
    svc = services(request)
    users: list[DependentSource] = [svc.dashboards, request.app.state.kpi_alerts]
    reports = getattr(svc, "reports", None)
    if reports is not None:
        users.append(reports)
    return users


@router.post("/api/v1/kpis/{name}/reviews", dependencies=WRITE, summary="Mark a KPI reviewed")
async def post_review(request: Request, name: str) -> Response:
    svc = services(request)
    kpi = svc.catalog.get(name)
    body = _decode(await read_json_body(request, svc.settings.limits.max_body_bytes))
    point = await asyncio.to_thread(_points(request), name)

    def record() -> reviews.ReviewItem:
        versions = svc.storage.kpi_versions(name)
        version = versions[-1].version if versions else None
        now = svc.clock.now_ms()
        review = reviews.new_review(kpi, body.author, body.note, point, version, now)
        svc.storage.record_review(review)
        since = versions[0].recorded_ms if versions else None
        return reviews.review_item(kpi, review, since, point, now, version)

    return success(reviews.item_json(await asyncio.to_thread(record)))


@router.get("/api/v1/kpis/{name}/reviews", dependencies=READ, summary="A KPI's reviews")
async def get_reviews(request: Request, name: str) -> Response:
    svc = services(request)
    kpi = svc.catalog.get(name)
    point = await asyncio.to_thread(_points(request), name)

    def read() -> dict[str, object]:
        now = svc.clock.now_ms()
        [item] = reviews.review_items([kpi], svc.storage, lambda _n: point, now)
        history = svc.storage.kpi_reviews(name, reviews.HISTORY_LIMIT)
        return reviews.item_json(item) | {"reviews": [reviews.review_json(r) for r in history]}

    return success(await asyncio.to_thread(read))


@router.get("/api/v1/reviews", dependencies=READ, summary="The owners' review list")
async def review_list(request: Request) -> Response:
    svc = services(request)
    owner = request.query_params.get("owner") or None
    points = _points(request)

    def build() -> dict[str, object]:
        now = svc.clock.now_ms()
        items = reviews.review_items(svc.catalog, svc.storage, points, now)
        return reviews.review_list_json(items, owner, now)

    return success(await asyncio.to_thread(build))


@router.get("/api/v1/hygiene", dependencies=READ, summary="The hygiene report")
async def hygiene_report(request: Request) -> Response:
    svc = services(request)
    users = _users(request)

    def build() -> dict[str, object]:
        found = hygiene.hygiene(svc.storage, svc.catalog, users, svc.clock.now_ms())
        return hygiene.hygiene_json(found)

    return success(await asyncio.to_thread(build))
