"""probes.yaml: HTTP(S) and TCP probes that the server runs itself (blackbox_exporter's checks).

Every problem is reported as `file:line: field: message`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field

from opsmetrics.catalog.config_fields import ConfigModel, label_names
from opsmetrics.catalog.scrape import DurationMs
from opsmetrics.catalog.yamlfile import LinePath, parse_model, problem, read_config_text
from opsmetrics.errors import ConfigError

FILE = "probes.yaml"
_HOST_PORT = re.compile(r"(?:[^/\s:@?#\[\]]+|\[[0-9a-fA-F:.]+\]):\d{1,5}")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _regex(value: object) -> object:
    # Bodies are matched as bytes, so the pattern is compiled as a bytes pattern.
    if isinstance(value, str):
        try:
            re.compile(value.encode())
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def _header_names(value: object) -> object:
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
    return value


Regex = Annotated[str, BeforeValidator(_regex)]
IpProtocol = Literal["ip4", "ip6"]


class TlsConfig(ConfigModel):
    #: Probe without checking the certificate; its expiry is still reported.
    insecure_skip_verify: bool = False
    #: PEM file of the CAs to trust instead of the system's, relative to probes.yaml.
    ca_file: str | None = None


class HttpProbe(ConfigModel):
    method: str = Field(default="GET", pattern=r"^[A-Z]+$")
    headers: Annotated[dict[str, str], BeforeValidator(_header_names)] = Field(default_factory=dict)
    body: str = ""
    #: Empty means any 2xx, as in blackbox_exporter.
    valid_status_codes: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    fail_if_body_matches_regexp: list[Regex] = Field(default_factory=list)
    fail_if_body_not_matches_regexp: list[Regex] = Field(default_factory=list)
    follow_redirects: bool = True
    tls_config: TlsConfig = Field(default_factory=TlsConfig)
    preferred_ip_protocol: IpProtocol = "ip6"
    #: Bytes of body read at most; a longer body fails the probe. 0 means no limit.
    body_size_limit: int = Field(default=10 * 1024 * 1024, ge=0)

    def status_ok(self, status: int) -> bool:
        if self.valid_status_codes:
            return status in self.valid_status_codes
        return 200 <= status < 300


class TcpProbe(ConfigModel):
    preferred_ip_protocol: IpProtocol = "ip6"


class ProbeGroup(ConfigModel):
    #: The `job` label of the group's series.
    name: str = Field(min_length=1)
    interval: DurationMs | None = None
    timeout: DurationMs | None = None
    labels: Annotated[dict[str, str], BeforeValidator(label_names)] = Field(default_factory=dict)
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    #: URLs for `http`, host:port for `tcp`; each is one `instance`.
    targets: list[str] = Field(min_length=1)


class GlobalConfig(ConfigModel):
    interval: DurationMs = 60_000
    timeout: DurationMs = 5_000
    #: Probes that run at the same moment at most; the others wait for a free slot.
    max_concurrency: int = Field(default=64, ge=1)


class ProbesConfig(ConfigModel):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    probes: list[ProbeGroup] = Field(default_factory=list)

    def interval_ms(self, group: ProbeGroup) -> int:
        return group.interval or self.global_.interval

    def timeout_ms(self, group: ProbeGroup) -> int:
        # As scrape.yaml: an unset timeout is the global one, capped at the group's interval.
        if group.timeout is not None:
            return group.timeout
        return min(self.global_.timeout, self.interval_ms(group))


def load_probes_config(path: Path) -> ProbesConfig:
    """Read and validate probes.yaml; `ca_file`s come back as absolute paths."""
    text = read_config_text(path)
    return parse_probes_config(text, str(path), base_dir=path.parent)


def parse_probes_config(
    text: str, source: str = FILE, base_dir: Path | None = None
) -> ProbesConfig:
    """Validate a probes.yaml; every problem is reported as `file:line: field: message`."""
    config, lines = parse_model(text, source, ProbesConfig)
    problems: list[str] = []
    names: set[str] = set()
    for i, group in enumerate(config.probes):
        for loc, message in _group_problems(config, group, names, base_dir):
            problems.append(problem(source, lines, ("probes", i, *loc), message))
        names.add(group.name)
    if problems:
        raise ConfigError("\n".join(problems))
    if base_dir is None:
        return config
    groups = [_with_absolute_ca_file(group, base_dir) for group in config.probes]
    return config.model_copy(update={"probes": groups})


Problem = tuple[LinePath, str]


def _group_problems(
    config: ProbesConfig, group: ProbeGroup, names: set[str], base_dir: Path | None
) -> list[Problem]:
    found: list[Problem] = []
    if group.name in names:
        found.append((("name",), f"name {group.name!r} is used twice; names must be unique"))
    if config.timeout_ms(group) > config.interval_ms(group):
        found.append((("timeout",), "timeout must not be longer than interval"))
    if (group.http is None) == (group.tcp is None):
        found.append((("http",), "give exactly one of `http` or `tcp`"))
        return found
    check = _http_target if group.http is not None else _tcp_target
    for j, target in enumerate(group.targets):
        message = check(target)
        if message:
            found.append((("targets", j), message))
    ca_file = group.http.tls_config.ca_file if group.http is not None else None
    if ca_file is not None and base_dir is not None and not (base_dir / ca_file).is_file():
        loc = ("http", "tls_config", "ca_file")
        found.append((loc, f"{ca_file!r} is not a file (paths are relative to {FILE})"))
    return found


def _http_target(target: str) -> str:
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{target!r} is not an http:// or https:// URL, such as https://example.com/health"
    try:
        _ = parts.port  # raises ValueError on a port out of range
    except ValueError:
        return f"{target!r} has an invalid port"
    return ""


def _tcp_target(target: str) -> str:
    if not _HOST_PORT.fullmatch(target) or int(target.rsplit(":", 1)[1]) > 65535:
        return f"{target!r} is not host:port, such as db.internal:5432"
    return ""


def _with_absolute_ca_file(group: ProbeGroup, base_dir: Path) -> ProbeGroup:
    if group.http is None or group.http.tls_config.ca_file is None:
        return group
    tls = group.http.tls_config
    absolute = str((base_dir / str(tls.ca_file)).resolve())
    http = group.http.model_copy(
        update={"tls_config": tls.model_copy(update={"ca_file": absolute})}
    )
    return group.model_copy(update={"http": http})


def probe_kind(group: ProbeGroup) -> Literal["http", "tcp"]:
    return "http" if group.http is not None else "tcp"
