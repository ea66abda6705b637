"""Starting the server process: services, the ASGI app, uvicorn, clean shutdown."""

from __future__ import annotations

import logging
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from opsmetrics.catalog.validate import validate_config_dir
from opsmetrics.cli.http_protocol import header_deadline_protocol
from opsmetrics.clock import Clock
from opsmetrics.errors import ConfigError
from opsmetrics.services import Services, open_services
from opsmetrics.settings import Settings
from opsmetrics.web.app import create_app

if TYPE_CHECKING:
    from opsmetrics.demo.runner import DemoRunner

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    from opsmetrics.cli.main import is_loopback

    return is_loopback(host)


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, which would kill the
        # process before the queued writes are committed and the database checkpointed.
        # We finish the shutdown ourselves and exit 0.
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def check_bind(services: Services) -> None:
    """Without tokens, nobody is authenticated: only loopback may reach the server."""
    host = services.settings.host
    if not services.tokens.enabled and not _is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host}: no API tokens exist, so anyone could write and "
            "read. Create one with `opsmetrics token create --scope admin`, or bind 127.0.0.1"
        )


def check_config(settings: Settings) -> None:
    """Refuse to start on a broken config directory, with every problem listed."""
    if settings.config_dir is None:
        return
    problems = validate_config_dir(settings.config_dir)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))


def _start_demo(app: Any, services: Services, url: str, days: int) -> DemoRunner:
    """History loads in the background; live traffic is posted to this server over HTTP."""
    from rich.console import Console

    from opsmetrics.demo.live import loopback_url
    from opsmetrics.demo.panel import demo_panel
    from opsmetrics.demo.runner import attach_demo

    # One line per live post would drown the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    live_url = loopback_url(services.settings.host, services.settings.port)
    runner = attach_demo(app, services, days=days, live_url=live_url)
    if runner.plan is not None:
        Console().print(demo_panel(url, runner.plan))
    return runner


def run_server(settings: Settings, clock: Clock, *, demo: bool, demo_days: int = 30) -> None:
    logging.getLogger().setLevel(settings.log_level.upper())
    check_config(settings)
    services = open_services(settings, clock)
    runner = None
    try:
        check_bind(services)
        app = create_app(services)
        url = f"http://{settings.host}:{settings.port}"
        if demo:
            runner = _start_demo(app, services, url, demo_days)
        log.info("opsmetrics listening on %s (data in %s)", url, settings.data_dir)
        print(f"opsmetrics is running at {url}", flush=True)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            timeout_graceful_shutdown=10,
            http=header_deadline_protocol(settings.limits.header_read_timeout_ms / 1000),
        )
        _Server(config).run()
    finally:
        if runner is not None:
            runner.stop()
        services.close()
