"""The OpenMetrics suite through the HTTP endpoint and real storage.

Invalid cases must be answered 400 and write nothing; valid cases must be answered 200 and
every parsed sample must be read back from storage bit for bit. Each valid case gets its own
data directory, so cases that reuse names and timestamps cannot collide.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

from opsmetrics.clock import FakeClock
from opsmetrics.ingest.exposition import parse_exposition
from opsmetrics.model import Matcher, MatchOp
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings
from opsmetrics.web.app import create_app
from tests.test_openmetrics_conformance import CASES, CONTENT_TYPE

pytestmark = pytest.mark.conformance
NOW = 1_800_000_000_000

INVALID = [c for c in CASES if not c.should_parse]
#: Valid OpenMetrics whose data our storage limits refuse, on purpose, with a clear 400.
REFUSED_BY_LIMITS = {
    # a_total{foo="4"} has timestamp 12345678901234567890.1 s: beyond int64 milliseconds and
    # billions of years ahead; the future-timestamp limit rejects the request rather than
    # storing a clamped, wrong time.
    "timestamps": "too_far_in_future",
}
VALID = [c for c in CASES if c.should_parse and c.name not in REFUSED_BY_LIMITS]


def _post(services: Services, body: bytes) -> tuple[int, dict[str, object]]:
    """The real ASGI app in-process (no lifespan needed: maintenance is not under test)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                "/api/v1/import/prometheus", content=body, headers={"content-type": CONTENT_TYPE}
            )

    r = asyncio.run(send())
    return r.status_code, r.json()


def test_every_invalid_case_is_a_400_and_writes_nothing(tmp_path: Path) -> None:
    services = open_services(Settings(data_dir=tmp_path), FakeClock(NOW))
    try:
        failures = []
        for case in INVALID:
            status, body = _post(services, case.body)
            if status != 400 or body.get("errorType") != "bad_data":
                failures.append(f"{case.name}: {status} {body}")
        assert failures == []
        assert services.storage.stats().samples == 0
        print(f"OpenMetrics over HTTP: {len(INVALID)}/{len(INVALID)} invalid cases rejected")
    finally:
        services.close()


@pytest.mark.parametrize("case", VALID, ids=[c.name for c in VALID])
def test_valid_case_is_stored_exactly(tmp_path: Path, case: object) -> None:
    body = case.body  # type: ignore[attr-defined]
    expected = parse_exposition(body, CONTENT_TYPE, NOW)
    services = open_services(Settings(data_dir=tmp_path), FakeClock(NOW))
    try:
        status, answer = _post(services, body)
        assert status == 200, answer
        for i, labels in enumerate(expected.batch.series):
            matchers = [Matcher.of(k, MatchOp.EQ, v) for k, v in labels]
            found = [s for s in services.storage.select_series(matchers) if s.labels == labels]
            assert len(found) == 1, labels
            rows = services.storage.read_samples([found[0].id], -(2**62), 2**62)
            mine = expected.batch.index == i
            order = np.argsort(expected.batch.ts[mine], kind="stable")
            assert rows.ts.tolist() == expected.batch.ts[mine][order].tolist()
            want_bits = expected.batch.values[mine][order].view(np.uint64)
            assert rows.values.view(np.uint64).tolist() == want_bits.tolist()
    finally:
        services.close()


def test_valid_cases_refused_by_limits_say_why(tmp_path: Path) -> None:
    services = open_services(Settings(data_dir=tmp_path), FakeClock(NOW))
    try:
        for case in CASES:
            if case.name in REFUSED_BY_LIMITS:
                status, body = _post(services, case.body)
                assert status == 400
                assert "in the future" in str(body["error"])
        assert services.storage.stats().samples == 0
    finally:
        services.close()
