"""Property-based tests of the HTTP API over its served OpenAPI schema (schemathesis).

A real server process on a free loopback port, with the example catalog (KPIs, dashboards,
rules, experiments; no probes, scrape targets or notification channels, so it contacts nothing)
and an admin token, is sent generated requests for every operation of its /openapi.json. The
properties: no response is a 5xx, the server stays up, and every 4xx carries a JSON error with
a message. Most routes read the Prometheus-style parameters themselves (opsmetrics/params.py)
rather than declare them, so the schema is completed first with the parameters each route
reads (PARAMS) and a free-form JSON body for POST routes that declare none; the generated
values are then anything the schema allows, including the valid examples given here.
"""

from __future__ import annotations

import copy
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.case import Case
from schemathesis.generation.modes import GenerationMode

from opsmetrics.catalog.kpis import load_catalog
from opsmetrics.catalog.validate import EXAMPLE_CONFIG
from tests.conftest import FIXED_NOW
from tests.server import ServerProcess, run_bounded

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 30
STATUSES: dict[int, int] = {}

#: Parameters a route reads from the query string (or a form body), by path prefix, with a
#: valid example each; the longest matching prefix wins.
TIME = "2027-01-03T23:00:00Z"
COMMON = {"start": "2027-01-03T00:00:00Z", "end": TIME, "tz": "Europe/Berlin"}
PARAMS: dict[str, dict[str, str]] = {
    "/api/v1/query": {
        "query": "sum by (job) (up)",
        "time": TIME,
        "timeout": "5s",
        "lookback_delta": "5m",
    },
    "/api/v1/query_range": {"query": "rate(up[5m])", **COMMON, "step": "300", "timeout": "5s"},
    "/api/v1/format_query": {"query": "sum(up)"},
    "/api/v1/query_exemplars": {"query": "up", **COMMON},
    "/api/v1/series": {"match[]": "up", **COMMON, "limit": "10"},
    "/api/v1/labels": {"match[]": "up", **COMMON, "limit": "10"},
    "/api/v1/label/": {"match[]": "up", **COMMON, "limit": "10"},
    "/api/v1/metadata": {"metric": "up", "limit": "10"},
    "/api/v1/events/aggregate": {
        "name": "purchase",
        **COMMON,
        "agg": "count",
        "grain": "day",
        "by": "plan",
        "rolling": "7",
    },
    "/api/v1/events/funnel": {
        "steps": "cart_view,purchase",
        "step": "signup",
        **COMMON,
        "window": "1d",
        "breakdown": "plan",
    },
    "/api/v1/events/retention": {
        "start_event": "signup",
        "return_event": "purchase",
        "return_where": "plan=pro",
        **COMMON,
        "grain": "week",
    },
    "/api/v1/kpis/": {
        "from": COMMON["start"],
        "to": TIME,
        "grain": "day",
        "compare": "previous",
        "by": "plan",
        "tz": "UTC",
    },
    "/api/v1/dashboards/": {"widget": "w1", **COMMON},
    "/api/v1/alerts/response-times": {"by": "severity", "window": "7d"},
    "/api/v1/reviews": {"owner": "growth"},
    "/api/v1/analysis/": {
        "kpi": "mrr",
        "query": "up",
        **COMMON,
        "step": "3600",
        "period": "24",
        "horizon": "7d",
        "agg": "mean",
        "view": "trend",
        "reduce": "mean",
        "direction": "above",
        "name": "checkout_redesign",
    },
    "/sdk/": {"key": "om_x_y"},
}


def _params_for(path: str) -> dict[str, str]:
    prefixes = [p for p in PARAMS if path == p or (p.endswith("/") and path.startswith(p))]
    return PARAMS[max(prefixes, key=len)] if prefixes else {}


def _known_names(path: str) -> list[str]:
    """Real values for a `{name}` path parameter, so that requests reach past the 404."""
    if path.startswith("/api/v1/kpis/"):
        return sorted(load_catalog(EXAMPLE_CONFIG).names())
    if path.startswith("/api/v1/dashboards/"):
        return sorted(p.stem for p in (EXAMPLE_CONFIG / "dashboards").glob("*.yaml"))
    if path.startswith("/sdk/"):
        return ["opsmetrics.js", "opsmetrics.mjs"]
    return []


def _with_known_names(path: str, operation: dict[str, Any]) -> None:
    names = _known_names(path)
    for param in operation.get("parameters", []):
        if param["in"] == "path" and param["name"] == "name" and names:
            param["schema"] = {"anyOf": [{"enum": names}, param["schema"]]}


def completed(spec: dict[str, Any]) -> dict[str, Any]:
    """The served schema plus the parameters and bodies the routes read themselves."""
    spec = copy.deepcopy(spec)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            _with_known_names(path, operation)
            declared = {p["name"] for p in operation.get("parameters", [])}
            operation.setdefault("parameters", []).extend(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {"anyOf": [{"enum": [example]}, {"type": "string"}]},
                }
                for name, example in _params_for(path).items()
                if name not in declared
            )
            if method == "post" and "requestBody" not in operation:
                operation["requestBody"] = {"content": {"application/json": {"schema": {}}}}
    return spec


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    root = tmp_path_factory.mktemp("api")
    config = root / "config"
    shutil.copytree(EXAMPLE_CONFIG, config)
    for contacts_others in ("probes.yaml", "scrape.yaml", "notify.yaml"):
        (config / contacts_others).unlink(missing_ok=True)
    # reports deliver through notify.yaml's channels (and send on their schedule): none here
    shutil.rmtree(config / "reports", ignore_errors=True)
    command = [sys.executable, "-m", "opsmetrics", "token", "create", "--scope", "admin"]
    made = run_bounded([*command, "--data", str(root / "data")], 60)
    assert made.returncode == 0, made.stderr
    srv = ServerProcess(root / "data", config_dir=config, now_ms=FIXED_NOW).start()
    try:
        yield srv, made.stdout.strip()
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def api_schema(api: tuple[ServerProcess, str]) -> Any:
    srv, token = api
    auth = {"Authorization": f"Bearer {token}"}
    seed = [{"name": "up", "labels": {"job": "api"}, "ts": FIXED_NOW - 60_000, "value": 1}]
    assert httpx.post(srv.url + "/api/v1/samples", json=seed, headers=auth).status_code == 200
    spec = httpx.get(srv.url + "/openapi.json", headers=auth).json()
    return schemathesis.openapi.from_dict(completed(spec))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_5xx_and_every_4xx_says_why(
    mode: GenerationMode, api: tuple[ServerProcess, str], api_schema: Any
) -> None:
    """Every operation, with valid (POSITIVE) or schema-violating (NEGATIVE) requests."""
    srv, token = api
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 50, "the served schema lost its operations"
    for operation in operations:
        failure = _run_operation(operation, mode, srv, token)
        if failure:
            failures.append(failure)
    print(f"{mode}: responses by status {sorted(STATUSES.items())}")
    assert not failures, "\n".join(failures)
    assert "Traceback" not in srv.log(), srv.log()[-3000:]


def _run_operation(operation: Any, mode: GenerationMode, srv: ServerProcess, token: str) -> str:
    """The first failing request of one operation (hypothesis shrinks it), or ""."""

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(mode))
    def run(case: Case) -> None:
        _check(case, srv, token)

    try:
        run()
    except AssertionError as exc:
        return str(exc).splitlines()[0]
    except Unsatisfiable:
        pass  # nothing in the operation's schema can be made invalid (NEGATIVE mode)
    return ""


def _check(case: Case, srv: ServerProcess, token: str) -> None:
    response = case.call(base_url=srv.url, headers={"Authorization": f"Bearer {token}"})
    STATUSES[response.status_code] = STATUSES.get(response.status_code, 0) + 1
    where = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200} -> "
    where += str(response.status_code)
    assert srv.proc is not None and srv.proc.poll() is None, f"the server died: {where}"
    assert response.status_code < 500, f"{where}: {response.text[:300]!r}"
    if response.status_code >= 400:
        assert _message(response), f"{where}: no message in {response.text[:300]!r}"


def _message(response: Any) -> str:
    """The error's message: Prometheus's `error` field (OTLP's `message`)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    text = body.get("error") or body.get("message") if isinstance(body, dict) else ""
    return text.strip() if isinstance(text, str) else ""


# --- findings, pinned ----------------------------------------------------------------------
def test_trend_of_the_default_range_skips_an_expensive_decomposition(
    api: tuple[ServerProcess, str],
) -> None:
    """`GET /api/v1/analysis/trend?query=0` (found by the NEGATIVE run): 30 days at 5 minutes
    with a daily season kept STL busy for 40 s. Now the decomposition is refused with a
    reason and the trend and growth still come back."""
    srv, token = api
    got = httpx.get(
        srv.url + "/api/v1/analysis/trend",
        params={"query": "0"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert got.status_code == 200, got.text
    data = got.json()["data"]
    assert data["decomposition"] is None
    assert "too much work" in data["decomposition_error"]
    assert "coarser step" in data["decomposition_error"]
    assert len(data["points"]) > 8000


@pytest.mark.parametrize(
    "query", ["m[292277024y]", "up offset -292277024y", "up[1s:292277024y]", "m @ 1e300"]
)
def test_out_of_range_durations_and_timestamps_are_400(
    query: str, api: tuple[ServerProcess, str]
) -> None:
    """Found by bench/fuzz.py (tests/fuzz_regressions/promql/): the binding's ValueError on a
    duration past timedelta's range, and an `@` past int64 ms, answered 500."""
    srv, token = api
    got = httpx.get(
        srv.url + "/api/v1/query",
        params={"query": query},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert got.status_code == 400, got.text
    assert "range" in got.json()["error"] or "too long" in got.json()["error"]


def test_a_query_too_deep_for_the_parser_is_400_and_the_server_lives(
    api: tuple[ServerProcess, str],
) -> None:
    """10,000 nested parentheses (20 KB) overflowed the Rust parser's stack: SIGSEGV, the
    server process gone for everyone."""
    srv, token = api
    query = "(" * 10_000 + "up" + ")" * 10_000
    got = httpx.post(
        srv.url + "/api/v1/query",
        data={"query": query},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert got.status_code == 400, got.text
    assert "levels deep" in got.json()["error"]
    assert srv.proc is not None and srv.proc.poll() is None
    assert httpx.get(srv.url + "/readyz").status_code == 200
