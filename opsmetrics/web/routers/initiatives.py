"""Improvement initiatives over HTTP (docs/initiatives.md):

GET  /api/v1/initiatives               the initiatives of config/initiatives/ and the API's
POST /api/v1/initiatives               create one (admin scope); stored in the state store
GET  /api/v1/initiatives/{name}        one initiative
GET  /api/v1/initiatives/{name}/impact its measured effect on each of its KPIs (pre=56d)
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.analysis.impact_api import impact_request, initiative_json
from opsmetrics.catalog.initiatives import (
    Initiative,
    all_initiatives,
    get_initiative,
    new_initiative,
)
from opsmetrics.params import Params
from opsmetrics.services import Services
from opsmetrics.storage.initiative_records import InitiativeRecord
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import check_token, read_json_body, require, services
from opsmetrics.web.routers.read import success

router = APIRouter(tags=["initiatives"])
READ = [Depends(require(Scope.READ))]


def defined(svc: Services) -> dict[str, Initiative]:
    names = set(svc.catalog.names())
    return all_initiatives(svc.settings.config_dir, names, svc.storage.initiatives())


def one(svc: Services, name: str) -> Initiative:
    names = set(svc.catalog.names())
    return get_initiative(svc.settings.config_dir, names, svc.storage.initiatives(), name)


@router.get("/api/v1/initiatives", dependencies=READ, summary="Improvement initiatives")
async def list_initiatives(request: Request) -> Response:
    found = await asyncio.to_thread(defined, services(request))
    return success([initiative_json(i) for i in sorted(found.values(), key=lambda i: i.name)])


@router.post("/api/v1/initiatives", summary="Create an improvement initiative (admin)")
async def create_initiative(request: Request) -> Response:
    token = check_token(request, request.headers.get("authorization"), Scope.ADMIN)
    svc = services(request)
    raw = await read_json_body(request, svc.settings.limits.max_body_bytes)
    taken = set(await asyncio.to_thread(defined, svc))
    got = new_initiative(raw, set(svc.catalog.names()), taken)
    record = InitiativeRecord(
        got.name, got.model_dump_json(), svc.clock.now_ms(), token.name if token else "admin"
    )
    if not await asyncio.to_thread(svc.storage.save_initiative, record):
        taken.add(got.name)
        new_initiative(raw, set(), taken)  # raced with another request: the same 400
    return success(initiative_json(got))


@router.get("/api/v1/initiatives/{name}", dependencies=READ, summary="One initiative")
async def get_one(request: Request, name: str) -> Response:
    return success(initiative_json(await asyncio.to_thread(one, services(request), name)))


@router.get(
    "/api/v1/initiatives/{name}/impact", dependencies=READ, summary="An initiative's impact"
)
async def impact(request: Request, name: str) -> Response:
    svc = services(request)
    params = Params(list(request.query_params.multi_items()))

    def run() -> dict[str, object]:
        return impact_request(one(svc, name), params, svc.storage, svc.catalog, svc.clock)

    return success(await asyncio.to_thread(run))
