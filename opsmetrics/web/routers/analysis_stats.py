"""Statistics over HTTP (docs/statistics.md, docs/experiments.md):

POST /api/v1/analysis/ab            two-arm test from per-arm summaries
POST /api/v1/analysis/sample-size   units per arm for a planned MDE
POST /api/v1/analysis/correlation   two series (numbers, or PromQL / KPI over a range)
GET  /api/v1/analysis/experiments   the defined experiments
GET  /api/v1/analysis/experiment    one experiment's readout from stored events
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, Request, Response

from opsmetrics.analysis import abtest, power
from opsmetrics.analysis.experiments import readout
from opsmetrics.analysis.stats_api import correlation_request, experiment_summary
from opsmetrics.catalog.experiments import get_experiment, load_experiments
from opsmetrics.errors import BadDataError
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.deps import read_json_body, require, services
from opsmetrics.web.routers.read import success

router = APIRouter(dependencies=[Depends(require(Scope.READ))], tags=["analysis"])


class Proportion(msgspec.Struct, forbid_unknown_fields=True):
    n: int
    successes: int


class MeanArm(msgspec.Struct, forbid_unknown_fields=True):
    n: int
    mean: float
    std: float


class AbBody(msgspec.Struct, forbid_unknown_fields=True):
    control: dict[str, Any]
    treatment: dict[str, Any]
    metric: str = "proportion"
    alpha: float = 0.05
    expected_split: list[float] | None = None


class SampleSizeBody(msgspec.Struct, forbid_unknown_fields=True):
    mde: float | None = None
    n: int | None = None
    baseline: float | None = None
    std: float | None = None
    alpha: float = 0.05
    power: float = 0.8
    ratio: float = 1.0


def decode(raw: bytes, kind: type[Any], what: str) -> Any:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise BadDataError(f"invalid {what} body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadDataError(f"invalid {what} body: not JSON ({exc})") from None


def _arm(data: dict[str, Any], kind: type[Any], field: str) -> Any:
    return decode(msgspec.json.encode(data), kind, f"{field} ({kind.__name__.lower()} arm)")


@router.post("/api/v1/analysis/ab", summary="A/B test from per-arm summaries")
async def ab(request: Request) -> Response:
    body: AbBody = decode(await _json_body(request), AbBody, "A/B test")
    if body.metric == "proportion":
        c, t = (
            _arm(body.control, Proportion, "control"),
            _arm(body.treatment, Proportion, "treatment"),
        )
        comp = abtest.proportion_test(c.n, c.successes, t.n, t.successes, body.alpha)
    elif body.metric == "mean":
        c, t = _arm(body.control, MeanArm, "control"), _arm(body.treatment, MeanArm, "treatment")
        comp = abtest.mean_test((c.n, c.mean, c.std), (t.n, t.mean, t.std), body.alpha)
    else:
        raise BadDataError(f'metric must be "proportion" or "mean", got {body.metric!r}')
    data = comp.to_dict()
    if body.expected_split is not None:
        srm = abtest.srm_test([c.n, t.n], body.expected_split)
        data["srm_p_value"] = srm.p_value
        data["srm"] = srm.to_dict()
    return success(data)


@router.post("/api/v1/analysis/sample-size", summary="Units per arm for a planned MDE")
async def sample_size(request: Request) -> Response:
    b: SampleSizeBody = decode(await _json_body(request), SampleSizeBody, "sample-size")
    return success(
        power.solve(
            baseline=b.baseline,
            std=b.std,
            mde=b.mde,
            n=b.n,
            alpha=b.alpha,
            power=b.power,
            ratio=b.ratio,
        )
    )


@router.post("/api/v1/analysis/correlation", summary="Correlation, lead/lag and impact")
async def correlation(request: Request) -> Response:
    raw = await _json_body(request)
    svc = services(request)
    result = await asyncio.to_thread(correlation_request, raw, svc.storage, svc.catalog, svc.clock)
    return success(result)


@router.get("/api/v1/analysis/experiments", summary="Defined experiments")
async def experiments(request: Request) -> Response:
    defined = load_experiments(services(request).settings.config_dir)
    return success([experiment_summary(e) for e in defined.values()])


@router.get("/api/v1/analysis/experiment", summary="An experiment's readout")
async def experiment(request: Request) -> Response:
    name = request.query_params.get("name")
    if not name:
        raise BadDataError('missing parameter "name" (an experiment from experiments/*.yaml)')
    svc = services(request)
    exp = get_experiment(svc.settings.config_dir, name)
    data = await asyncio.to_thread(readout, svc.storage, exp, svc.clock.now_ms())
    return success(data)


async def _json_body(request: Request) -> bytes:
    return await read_json_body(request, services(request).settings.limits.max_body_bytes)
