"""Publishable keys (scope events) for the browser SDK, through the real app in-process: they
send events to /api/v1/sdk/events only, only from their origins (CORS), at their rate per
client address; they cannot write samples or read anything. Their rows survive both state
backends' upgrades, and `opsmetrics token create --scope events` makes them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from typer.testing import CliRunner

from opsmetrics.auth import NewToken, new_publishable_key, new_token, normalise_origin
from opsmetrics.cli.main import app as cli
from opsmetrics.clock import FakeClock
from opsmetrics.errors import BadDataError
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings
from opsmetrics.storage.duckdb import DuckDBStorage
from opsmetrics.storage.duckdb.migrations import MIGRATIONS as DUCKDB_MIGRATIONS
from opsmetrics.storage.postgres import PostgresStateStore
from opsmetrics.storage.postgres.migrations import MIGRATIONS as PG_MIGRATIONS
from opsmetrics.storage.token_records import Scope
from opsmetrics.web.app import create_app
from opsmetrics.web.routers.sdk import SDK_DIR
from tests.postgres_server import (
    pg_state_url,  # noqa: F401 - a fixture
    postgres_url,  # noqa: F401 - a fixture
)

NOW = 1_796_604_360_000  # Monday 2026-12-07 00:46 UTC
SHOP = "https://shop.example"
OTHER = "https://evil.example"
SDK_EVENTS = "/api/v1/sdk/events"


@dataclass
class Api:
    """The real ASGI app in-process; one httpx client per client address."""

    portal: BlockingPortal
    services: Services
    clock: FakeClock
    shop_key: NewToken
    slow_key: NewToken  # 6 requests a minute: a bucket of one
    ingest: NewToken
    admin: NewToken

    def __post_init__(self) -> None:
        self._app = create_app(self.services)
        self._clients: dict[str, httpx.AsyncClient] = {}

    def request(
        self, method: str, path: str, address: str = "10.0.0.1", **kwargs: Any
    ) -> httpx.Response:
        if address not in self._clients:
            transport = httpx.ASGITransport(app=self._app, client=(address, 50000))
            self._clients[address] = httpx.AsyncClient(
                transport=transport, base_url="http://opsmetrics.test"
            )
        client = self._clients[address]

        async def send() -> httpx.Response:
            return await client.request(method, path, **kwargs)

        return self.portal.call(send)

    def send_events(
        self, events: list[dict[str, Any]], key: NewToken | None = None, **kwargs: Any
    ) -> httpx.Response:
        kwargs.setdefault("headers", {"Origin": SHOP, "Content-Type": "text/plain"})
        secret = (key or self.shop_key).secret
        return self.request(
            "POST", SDK_EVENTS, params={"key": secret}, content=json.dumps(events), **kwargs
        )

    def stored(self, name: str) -> list[dict[str, Any]]:
        events = self.services.storage.read_events(name, NOW - 86_400_000, NOW + 86_400_000)
        return [{"entity": e.entity, "props": e.props, "id": e.id} for e in events]

    def close(self) -> None:
        for client in self._clients.values():
            self.portal.call(client.aclose)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    clock = FakeClock(NOW)
    services = open_services(Settings(data_dir=tmp_path / "data"), clock)
    tokens = (
        new_publishable_key("shop", [SHOP, "http://localhost:3000"], NOW),
        new_publishable_key("slow", [SHOP], NOW, rate_per_min=6),
        new_token("ingest", Scope.INGEST, NOW),
        new_token("admin", Scope.ADMIN, NOW),
    )
    for t in tokens:
        services.storage.save_token(t.record)
        services.tokens.add(t.record)
    try:
        with start_blocking_portal() as portal:
            client = Api(portal, services, clock, *tokens)
            yield client
            client.close()
    finally:
        services.close()


def event(name: str, i: int = 0, **props: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ts": NOW - 1000 + i,
        "entity": "user-1",
        "props": props,
        "id": f"{name}-{i}",
    }


def bearer(token: NewToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.secret}", "Origin": SHOP}


# --- making keys ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://Shop.Example", "https://shop.example"),
        ("https://shop.example:443/", "https://shop.example"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_origins_are_kept_as_browsers_send_them(given: str, origin: str) -> None:
    assert normalise_origin(given) == origin


@pytest.mark.parametrize(
    "bad",
    [
        "shop.example",
        "ftp://shop.example",
        "https://shop.example/app",
        "https://a@shop.example",
        "https://shop.example?x=1",
        "https://shop.example:99999",
        "*",
        "null",
    ],
)
def test_an_origin_with_a_path_or_another_scheme_is_refused(bad: str) -> None:
    with pytest.raises(BadDataError, match=r"scheme://host\[:port\]"):
        new_publishable_key("k", [bad], NOW)


def test_a_publishable_key_needs_origins_and_a_sane_rate() -> None:
    with pytest.raises(BadDataError, match="at least one --origin"):
        new_publishable_key("k", [], NOW)
    with pytest.raises(BadDataError, match="--rate 0"):
        new_publishable_key("k", [SHOP], NOW, rate_per_min=0)
    with pytest.raises(BadDataError, match="needs the origins"):
        new_token("k", Scope.EVENTS, NOW)
    key = new_publishable_key("k", [SHOP, "https://SHOP.example"], NOW, rate_per_min=30)
    assert (key.record.scope, key.record.origins, key.record.rate_per_min) == (
        Scope.EVENTS,
        (SHOP,),
        30,
    )
    assert key.secret.startswith("om_pk_") and key.record.hash not in key.secret


def test_token_create_makes_a_publishable_key(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data", str(tmp_path / "data")]
    args = ["token", "create", "--scope", "events", "--name", "web", *data]
    made = runner.invoke(cli, [*args, "--origin", "https://Shop.Example/", "--origin", SHOP])
    assert made.exit_code == 0, made.output
    assert made.stdout.strip().startswith("om_pk_")
    listed = runner.invoke(cli, ["token", "list", *data])
    assert listed.exit_code == 0 and re.search(rf"events\s+web\s+{SHOP}", listed.stdout)
    no_origin = runner.invoke(cli, args)
    assert isinstance(no_origin.exception, BadDataError)
    misplaced = runner.invoke(
        cli, ["token", "create", "--scope", "ingest", "--origin", SHOP, *data]
    )
    assert isinstance(misplaced.exception, BadDataError)
    assert "--origin is for publishable keys only" in str(misplaced.exception)


# --- CORS -------------------------------------------------------------------------------
def preflight(api: Api, origin: str, key: NewToken | None = None) -> httpx.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    params = {"key": key.secret} if key else {}
    return api.request("OPTIONS", SDK_EVENTS, headers=headers, params=params)


def test_a_preflight_is_answered_for_the_keys_origins_only(api: Api) -> None:
    allowed = preflight(api, "http://localhost:3000", api.shop_key)
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert allowed.headers["access-control-allow-methods"] == "POST"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert preflight(api, SHOP).status_code == 204  # no key in the URL: any key's origins
    for refused in (
        preflight(api, OTHER, api.shop_key),
        preflight(api, "http://localhost:3000", api.slow_key),  # not one of this key's
        preflight(api, OTHER),
    ):
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers


def test_events_from_an_allowed_origin_are_stored_once(api: Api) -> None:
    batch = [event("signup", 0, plan="pro", seats=3, trial=True), event("signup", 1)]
    first = api.send_events(batch)
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "success", "data": {"events": 2}}
    assert first.headers["access-control-allow-origin"] == SHOP
    assert first.headers["vary"] == "Origin"
    assert first.headers["access-control-expose-headers"] == "Retry-After"
    assert api.send_events(batch).status_code == 200  # a retry of the same batch
    assert api.stored("signup") == [
        {"entity": "user-1", "props": {"plan": "pro", "seats": 3, "trial": True}, "id": "signup-0"},
        {"entity": "user-1", "props": {}, "id": "signup-1"},
    ]


def test_a_bearer_header_works_too(api: Api) -> None:
    sent = api.request("POST", SDK_EVENTS, headers=bearer(api.shop_key), json=[event("b")])
    assert sent.status_code == 200, sent.text
    assert len(api.stored("b")) == 1


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Origin": OTHER}, 403, "origin 'https://evil.example' may not use publishable key"),
        ({}, 403, "this request has no Origin header"),
        ({"Origin": "null"}, 403, "origin 'null' may not use"),
    ],
)
def test_events_from_another_origin_are_refused(
    api: Api, headers: dict[str, str], status: int, message: str
) -> None:
    refused = api.send_events([event("refused")], headers=headers)
    assert (refused.status_code, refused.json()["errorType"]) == (status, "forbidden")
    assert message in refused.json()["error"]
    assert "access-control-allow-origin" not in refused.headers
    assert api.stored("refused") == []


def test_only_a_publishable_key_is_taken(api: Api) -> None:
    body = json.dumps([event("x")])
    headers = {"Origin": SHOP}
    missing = api.request("POST", SDK_EVENTS, content=body, headers=headers)
    assert missing.status_code == 401 and "missing publishable key" in missing.json()["error"]
    unknown = api.request(
        "POST", SDK_EVENTS, params={"key": "om_pk_x"}, content=body, headers=headers
    )
    assert unknown.status_code == 401
    for secret in (api.ingest.secret, api.admin.secret):
        other = api.request(
            "POST", SDK_EVENTS, params={"key": secret}, content=body, headers=headers
        )
        assert other.status_code == 403
        assert "only publishable keys (scope events)" in other.json()["error"]
    assert api.stored("x") == []


def test_the_sdk_files_are_public(api: Api) -> None:
    for name in ("opsmetrics.js", "opsmetrics.mjs"):
        got = api.request("GET", f"/sdk/{name}")
        assert got.status_code == 200
        assert got.content == (SDK_DIR / name).read_bytes()
        assert got.headers["content-type"].startswith("text/javascript")
        assert got.headers["access-control-allow-origin"] == "*"
    assert api.request("GET", "/sdk/build.mjs").status_code == 404


# --- what the key cannot do -------------------------------------------------------------
WRITES = [
    (
        "/api/v1/write",
        b"",
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
    ),
    ("/api/v1/import/prometheus", b"up 1\n", {}),
    ("/v1/metrics", b"{}", {"Content-Type": "application/json"}),
    ("/api/v1/samples", b'[{"name": "up", "value": 1}]', {}),
    ("/api/v1/events", json.dumps([event("via-bearer")]).encode(), {}),
    ("/api/v1/annotations", b'[{"title": "deploy"}]', {}),
    ("/api/v1/silences", b"{}", {"Content-Type": "application/json"}),
]
READS = [
    "/api/v1/query?query=up",
    "/api/v1/series?match[]=up",
    "/api/v1/labels",
    "/api/v1/events/aggregate?name=signup",
    "/api/v1/dashboards",
    "/api/v1/alerts",
    "/api/v1/notifications",
    "/",
]


@pytest.mark.parametrize(("path", "body", "headers"), WRITES, ids=[w[0] for w in WRITES])
def test_the_key_cannot_write_anything_else(
    api: Api, path: str, body: bytes, headers: dict[str, str]
) -> None:
    as_bearer = api.request("POST", path, content=body, headers={**headers, **bearer(api.shop_key)})
    assert as_bearer.status_code == 403, as_bearer.text
    assert "has scope 'events'" in as_bearer.json()["error"]
    in_url = api.request(
        "POST", path, params={"key": api.shop_key.secret}, content=body, headers=headers
    )
    assert in_url.status_code == 401
    assert api.stored("via-bearer") == []


@pytest.mark.parametrize("path", READS)
def test_the_key_cannot_read_anything(api: Api, path: str) -> None:
    assert api.request("GET", path, headers=bearer(api.shop_key)).status_code == 403
    assert api.request("GET", path, params={"key": api.shop_key.secret}).status_code == 401


# --- validation and rate ----------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        [{"name": "", "ts": NOW}],
        [{"name": "x", "ts": NOW + 3_600_000}],
        [{"name": "x", "props": {"nested": {"a": 1}}}],
        [{"name": "x", "colour": "red"}],
        "not json",
    ],
)
def test_events_are_validated_as_at_the_ingest_endpoint(api: Api, body: Any) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    sdk = api.request(
        "POST",
        SDK_EVENTS,
        params={"key": api.shop_key.secret},
        content=content,
        headers={"Origin": SHOP},
    )
    plain = api.request("POST", "/api/v1/events", content=content, headers=bearer(api.ingest))
    assert sdk.status_code == plain.status_code == 400
    assert sdk.json() == plain.json()
    assert sdk.headers["access-control-allow-origin"] == SHOP  # the page may read why


def test_the_rate_is_per_key_and_address(api: Api) -> None:
    assert api.send_events([event("r", 0)], key=api.slow_key).status_code == 200
    limited = api.send_events([event("r", 1)], key=api.slow_key)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "10"  # 6 a minute: one every 10 s
    assert limited.headers["access-control-allow-origin"] == SHOP
    assert limited.json()["errorType"] == "rate_limited"
    assert "allows 6 requests per minute" in limited.json()["error"]
    # Another address, another key: their own buckets.
    assert api.send_events([event("r", 2)], key=api.slow_key, address="10.0.0.2").status_code == 200
    assert api.send_events([event("r", 3)]).status_code == 200
    api.clock.advance(9_000)
    again = api.send_events([event("r", 1)], key=api.slow_key)
    assert (again.status_code, again.headers["retry-after"]) == (429, "1")
    api.clock.advance(1_000)
    assert api.send_events([event("r", 1)], key=api.slow_key).status_code == 200
    assert [e["id"] for e in api.stored("r")] == ["r-0", "r-1", "r-2", "r-3"]


# --- upgrades of both state backends ----------------------------------------------------
OLD_TOKEN = "('t1', 'ops', 'ingest', 'sha256-t1', 5, NULL)"


def test_duckdb_tokens_from_before_publishable_keys_come_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    before = [m for m in DUCKDB_MIGRATIONS if m[0] < 11]
    with duckdb.connect(str(data / "opsmetrics.duckdb")) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms BIGINT)"
        )
        for version, sql in before:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, 0)", [version])
        con.execute(f"INSERT INTO tokens VALUES {OLD_TOKEN}")
    store = DuckDBStorage(data, now_ms=NOW)
    try:
        [old] = store.tokens()
        assert (old.id, old.scope, old.origins, old.rate_per_min) == ("t1", Scope.INGEST, (), None)
    finally:
        store.close()


def test_postgres_tokens_from_before_publishable_keys_come_back(pg_state_url: str) -> None:  # noqa: F811
    with psycopg.connect(pg_state_url) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_ms bigint)"
        )
        conn.execute(PG_MIGRATIONS[0][1])
        conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        conn.execute(f"INSERT INTO tokens VALUES {OLD_TOKEN}")
    store = PostgresStateStore(pg_state_url, now_ms=NOW)
    try:
        [old] = store.tokens()
        assert (old.id, old.scope, old.origins, old.rate_per_min) == ("t1", Scope.INGEST, (), None)
    finally:
        store.close()
