"""`opsmetrics query` against a real server."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from opsmetrics.cli.main import app
from opsmetrics.cli.query import series_name
from opsmetrics.client import Client
from opsmetrics.client.transport import RejectedError
from opsmetrics.errors import UserError
from tests.server import ServerProcess

runner = CliRunner()


def test_series_name() -> None:
    assert series_name({"__name__": "up", "job": "a"}) == 'up{job="a"}'
    assert series_name({"__name__": "up"}) == "up"


def test_range_needs_start_end_and_step() -> None:
    result = runner.invoke(app, ["query", "up", "--start", "1", "--end", "2"])
    assert isinstance(result.exception, UserError)
    assert "--step" in str(result.exception)
    result = runner.invoke(
        app, ["query", "up", "--time", "1", "--start", "1", "--end", "2", "--step", "1s"]
    )
    assert isinstance(result.exception, UserError)


@pytest.fixture
def loaded(fixed_server: ServerProcess) -> tuple[ServerProcess, int]:
    server = fixed_server
    t = server.now_ms - 60_000  # a whole second, a minute before the server's clock started
    with Client(server.url) as client:
        client.push([("up", {"job": "api"}, 1.0, t), ("up", {"job": "api"}, 0.0, t + 15_000)])
        client.push([("up", {"job": "db"}, 1.0, t)])
    assert client.errors == []
    return server, t


@pytest.mark.e2e
def test_instant_query_prints_a_table(loaded: tuple[ServerProcess, int]) -> None:
    srv, t = loaded
    result = runner.invoke(app, ["query", "up", "--time", str(t / 1000 + 20), "--url", srv.url])
    assert result.exit_code == 0, result.output
    assert "vector: 2" in result.stdout
    assert 'up{job="api"}' in result.stdout and 'up{job="db"}' in result.stdout


@pytest.mark.e2e
def test_range_query_prints_every_step(loaded: tuple[ServerProcess, int]) -> None:
    srv, t = loaded
    args = ["query", 'up{job="api"}', "--start", str(t / 1000), "--end", str(t / 1000 + 30)]
    result = runner.invoke(app, [*args, "--step", "15s", "--url", srv.url])
    assert result.exit_code == 0, result.output
    assert "matrix: 1" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "+00:00" in line]
    assert len(rows) == 3  # t, t+15s, t+30s


@pytest.mark.e2e
def test_bad_expression_reports_the_server_error(server: ServerProcess) -> None:
    result = runner.invoke(app, ["query", "up{", "--url", server.url])
    assert isinstance(result.exception, RejectedError)
    assert result.exception.status == 400
