"""SQL sources: config/sources/*.yaml, queries the server runs on a business database.

    - name: shop_orders
      url: postgresql://reporting@db.internal/shop     # never a password in the URL
      password_env: SHOP_DB_PASSWORD                   # or password_file: secrets/shop.txt
      interval: 1m
      query: |
        SELECT id, customer_id, total_cents, currency, status, updated_at
        FROM orders WHERE updated_at > $cursor ORDER BY updated_at LIMIT 10000
      cursor: {column: updated_at, initial: 2026-01-01T00:00:00Z}
      emit:
        events: {name: order, id: "order-{id}-{status}", entity: customer_id, ts: updated_at,
                 value: total_cents, props: [currency, status]}

Every problem is reported as `file:line: field: message`. docs/sources.md has the details.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, RootModel, field_validator

from opsmetrics.catalog.config_fields import ConfigModel
from opsmetrics.catalog.scrape import DurationMs
from opsmetrics.catalog.yamlfile import LinePath, parse_model, problem, read_config_text
from opsmetrics.errors import ConfigError

FOLDER = "sources"
CURSOR_PLACEHOLDER = "$cursor"
Driver = Literal["postgresql", "mysql", "sqlite", "sqlalchemy"]
_DRIVERS: dict[str, Driver] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_NAME = r"^[a-z][a-z0-9_]*$"
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _column(value: object) -> object:
    if isinstance(value, str) and not _COLUMN.fullmatch(value):
        raise ValueError(f"{value!r} is not a column name (letters, digits and _)")
    return value


Column = Annotated[str, BeforeValidator(_column)]


def _initial(value: object) -> object:
    """A timestamp (YAML reads an unquoted one as a datetime) or an integer id."""
    if isinstance(value, bool):
        raise ValueError("give a timestamp such as 2026-01-01T00:00:00Z or an integer id")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is neither a timestamp such as 2026-01-01T00:00:00Z nor an integer id"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


class CursorModel(ConfigModel):
    #: The column the query orders by and compares with `$cursor`.
    column: Column
    #: Where the first run starts: a timestamp (UTC) or an integer id.
    initial: Annotated[datetime | int, BeforeValidator(_initial)]


class EventsEmit(ConfigModel):
    #: The event name every row becomes.
    name: str = Field(min_length=1, max_length=256)
    #: The idempotent id: a template of columns, such as "order-{id}-{status}".
    id: str | None = None
    entity: Column | None = None
    ts: Column
    value: Column | None = None
    props: list[Column] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        fields = template_columns(value)
        if not fields:
            raise ValueError("the id template names no column; write e.g. order-{id}")
        for field in fields:
            if not _COLUMN.fullmatch(field):
                raise ValueError(f"{{{field}}} is not a column name; write {{column}}")
        return value


class SamplesEmit(ConfigModel):
    #: The metric name; with several value columns, each is `<metric>_<column>`.
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    value: Column | list[Column]
    labels: list[Column] = Field(default_factory=list)
    #: The sample's timestamp column; without it, the time of the run.
    ts: Column | None = None

    def value_columns(self) -> list[str]:
        return [self.value] if isinstance(self.value, str) else list(self.value)


class EmitModel(ConfigModel):
    events: EventsEmit | None = None
    samples: SamplesEmit | None = None


class SourceModel(ConfigModel):
    name: str = Field(pattern=_NAME, max_length=100)
    url: str = Field(min_length=1)
    password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    password_file: str | None = None
    interval: DurationMs = 60_000
    query: str = Field(min_length=1)
    cursor: CursorModel | None = None
    emit: EmitModel
    #: The statement timeout on the source database.
    timeout: DurationMs = 30_000
    #: Rows read in one run at most; the next run continues from the cursor.
    max_rows: int = Field(default=100_000, ge=1)
    #: Rows fetched and written at a time; the cursor advances after each batch is stored.
    batch: int = Field(default=10_000, ge=1, le=100_000)
    #: Queries of this source that run on its database at once, at most.
    concurrency: int = Field(default=1, ge=1, le=16)


class SourceFile(RootModel[list[SourceModel]]):
    pass


@dataclass(frozen=True, slots=True)
class SqlSource:
    spec: SourceModel
    driver: Driver
    #: file:line of the definition.
    source: str
    #: password_file and sqlite paths are relative to the config directory.
    base_dir: Path

    @property
    def name(self) -> str:
        return self.spec.name

    def tables(self) -> list[str]:
        """The tables the query reads (FROM and JOIN), for lineage."""
        return query_tables(self.spec.query)

    def event_name(self) -> str | None:
        events = self.spec.emit.events
        return events.name if events is not None else None


@dataclass(frozen=True, slots=True)
class SourceSet:
    sources: tuple[SqlSource, ...] = ()

    def named(self, name: str) -> SqlSource | None:
        return next((s for s in self.sources if s.name == name), None)

    def emitting(self, event: str) -> list[SqlSource]:
        """The sources whose rows become events of this name."""
        return [s for s in self.sources if s.event_name() == event]


def template_columns(template: str) -> list[str]:
    return _TEMPLATE_FIELD.findall(template)


#: A name after FROM or JOIN, not followed by "(" (that is a function: pg_sleep(1)).
_TABLE = re.compile(
    r"\b(?:FROM|JOIN)\s+((?:[A-Za-z_][\w$]*\.)?[A-Za-z_][\w$]*)\b(?!\s*\()", re.IGNORECASE
)


def query_tables(query: str) -> list[str]:
    return list(dict.fromkeys(_TABLE.findall(query)))


def driver_of(url: str) -> Driver:
    scheme = urlsplit(url).scheme.lower()
    return _DRIVERS.get(scheme, "sqlalchemy")


def source_files(config_dir: Path | None) -> list[Path]:
    if config_dir is None or not (config_dir / FOLDER).is_dir():
        return []
    return sorted((config_dir / FOLDER).glob("*.yaml"))


def load_sources(config_dir: Path | None) -> SourceSet:
    """Every source of config_dir/sources/, or ConfigError listing every problem."""
    sources, problems = read_sources(config_dir)
    if problems:
        raise ConfigError("\n".join(problems))
    return sources


def read_sources(config_dir: Path | None) -> tuple[SourceSet, list[str]]:
    """The sources and the problems (`file:line: field: message`) found reading them."""
    out: list[SqlSource] = []
    problems: list[str] = []
    for path in source_files(config_dir):
        assert config_dir is not None
        try:
            out += parse_sources(read_config_text(path), str(path), config_dir)
        except ConfigError as exc:
            problems += exc.message.splitlines()
    seen: dict[str, str] = {}
    for s in out:
        if s.name in seen:
            problems.append(f"{s.source}: name: source {s.name!r} is defined at {seen[s.name]}")
        seen.setdefault(s.name, s.source)
    return SourceSet(tuple(out)), problems


def parse_sources(text: str, source: str, base_dir: Path) -> list[SqlSource]:
    if not text.strip():
        return []
    parsed, lines = parse_model(text, source, SourceFile)
    found = [
        problem(source, lines, (i, *loc), message)
        for i, spec in enumerate(parsed.root)
        for loc, message in source_problems(spec, base_dir)
    ]
    if found:
        raise ConfigError("\n".join(found))
    return [
        SqlSource(spec, driver_of(spec.url), f"{source}:{lines.get((i,), 1)}", base_dir)
        for i, spec in enumerate(parsed.root)
    ]


Problem = tuple[LinePath, str]


def source_problems(spec: SourceModel, base_dir: Path) -> list[Problem]:
    return [*_url_problems(spec, base_dir), *_query_problems(spec), *_emit_problems(spec)]


def _url_problems(spec: SourceModel, base_dir: Path) -> list[Problem]:
    found: list[Problem] = []
    parts = urlsplit(spec.url)
    if not parts.scheme:
        found.append((("url",), "not a URL; write e.g. postgresql://user@host/db"))
        return found
    if parts.password is not None:
        found.append(
            (
                ("url",),
                "the URL holds a password; remove it from the URL and set password_env: "
                "VARIABLE (or password_file: PATH) instead",
            )
        )
    if spec.password_env and spec.password_file:
        found.append((("password_file",), "give password_env or password_file, not both"))
    if spec.password_file and not (base_dir / spec.password_file).is_file():
        found.append(
            (
                ("password_file",),
                f"{spec.password_file!r} is not a file (paths are relative to "
                "the config directory)",
            )  # fmt: skip
        )
    driver = driver_of(spec.url)
    if driver == "sqlite":
        found += _sqlite_problems(spec.url)
    if driver == "sqlalchemy" and importlib.util.find_spec("sqlalchemy") is None:
        found.append(
            (
                ("url",),
                f"{parts.scheme}:// needs SQLAlchemy, which is not installed; "
                "pip install 'opsmetrics[sources]' (postgresql://, mysql://, mariadb:// and "
                "sqlite:/// need nothing more)",
            )
        )
    return found


def _sqlite_problems(url: str) -> list[Problem]:
    if not url.lower().startswith("sqlite:///"):
        return [(("url",), "write sqlite:///relative/path.db or sqlite:////absolute/path.db")]
    path = url[len("sqlite:///") :]
    if "{" in path and not path.startswith("{data_dir}/"):
        return [(("url",), "only a leading {data_dir}/ is replaced: sqlite:///{data_dir}/file.db")]
    return []


def _query_problems(spec: SourceModel) -> list[Problem]:
    has_placeholder = CURSOR_PLACEHOLDER in spec.query
    if spec.cursor is not None and not has_placeholder:
        return [(("query",), "a source with a cursor compares it in the query: add $cursor, "
                 "e.g. WHERE updated_at > $cursor ORDER BY updated_at")]  # fmt: skip
    if spec.cursor is None and has_placeholder:
        return [(("cursor",), "the query uses $cursor: add cursor: {column: ..., initial: ...}")]
    return []


def _emit_problems(spec: SourceModel) -> list[Problem]:
    emit = spec.emit
    if (emit.events is None) == (emit.samples is None):
        return [(("emit",), "give exactly one of emit.events or emit.samples")]
    if emit.events is not None and spec.cursor is None:
        return [
            (
                ("cursor",),
                "a source that emits events needs a cursor, or every run re-reads every row; "
                "add cursor: {column: updated_at, initial: 2026-01-01T00:00:00Z}",
            )
        ]
    return []


def cursor_text(value: datetime | int) -> str:
    """How a cursor value is stored: an ISO timestamp in UTC or the integer's digits."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def cursor_value(text: str, like: datetime | int) -> datetime | int:
    """The stored text back as a value of the same kind as the source's `initial`."""
    if isinstance(like, datetime):
        return datetime.fromisoformat(text)
    return int(text)
