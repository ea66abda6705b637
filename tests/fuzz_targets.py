"""Fuzz targets: one per decoder or parser, each taking raw bytes as a client could send them.

The invariant (`check`): every input either decodes or raises a `UserError` (bad input the
caller can fix, a 4xx). Any other exception is a finding. tests/test_fuzz_decoders.py runs
every target briefly under hypothesis; bench/fuzz.py runs them for minutes under atheris
(coverage-guided); tests/fuzz_regressions/<target>/ holds the exact inputs of past findings.

A target goes through the same call the server, the CLI or the config loader makes, and for
samples and events also through the pipeline's validation (it needs no storage), since a
decoder that hands the writer something the validator crashes on is as much a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from opsmetrics.catalog import alert_templates
from opsmetrics.catalog.dashboards import dashboard_problems
from opsmetrics.catalog.experiments import load_experiments
from opsmetrics.catalog.kpi_alert_files import read_kpi_alert_rules
from opsmetrics.catalog.kpis import Catalog, load_catalog, read_catalog
from opsmetrics.catalog.notify import load_notify
from opsmetrics.catalog.probes import load_probes_config
from opsmetrics.catalog.retention import load_retention
from opsmetrics.catalog.rules import load_rule_file
from opsmetrics.catalog.scrape import load_scrape_config
from opsmetrics.client.fileformats import (
    ImportFormat,
    Position,
    ReadContext,
    detect_format,
    read_chunks,
)
from opsmetrics.errors import UserError
from opsmetrics.ingest import exposition, json_formats, json_samples
from opsmetrics.ingest.compression import decompress_body
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.otlp import decode_otlp
from opsmetrics.ingest.remote_write import decode_remote_write
from opsmetrics.ingest.validate import check_not_future, validate_event, validate_series
from opsmetrics.model import Event, Series, make_labels
from opsmetrics.query.promql.engine import evaluate_instant, evaluate_range
from opsmetrics.settings import Limits
from opsmetrics.storage.base import Storage, WriteBatch
from tests import fuzz_seeds as seeds
from tests.stores import open_store

#: The instant every target decodes at (Monday 2026-12-07 00:46 UTC): never the wall clock.
NOW = 1_796_604_360_000
#: Smaller than the server's defaults so that a bounded run cannot allocate gigabytes: the
#: decoders must refuse past these, and the fuzzer checks they do.
LIMITS = Limits(
    max_body_bytes=1 << 20,
    max_decompressed_bytes=4 << 20,
    max_samples_per_request=100_000,
    max_events_per_request=10_000,
)


class FuzzEnv:
    """What some targets need besides the bytes: a scratch directory and a small store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def file(self, rel: str, data: bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def config_dir(self, name: str, rel: str, data: bytes) -> Path:
        """A config directory holding only `rel` with `data` (rewritten on every call)."""
        folder = self.root / "config" / name
        self.file(f"config/{name}/{rel}", data)
        return folder

    @cached_property
    def demo_catalog(self) -> Catalog:
        return load_catalog(seeds.EXAMPLE_CONFIG)

    @cached_property
    def store(self) -> Storage:
        """A DuckDB store with a few series around NOW, for PromQL to read."""
        storage = open_store(self.root / "promql-data", NOW)
        names = [
            {"__name__": "up", "job": "api", "instance": "a:9"},
            {"__name__": "http_requests_total", "job": "api", "code": "200"},
            {"__name__": "h_bucket", "le": "0.5"},
            {"__name__": "h_bucket", "le": "+Inf"},
        ]
        labels = [make_labels(n) for n in names]
        ids = storage.allocate_series_ids(labels)
        ts = np.arange(NOW - 3_600_000, NOW, 60_000, dtype=np.int64)
        storage.write(
            WriteBatch(
                new_series=[Series(i, lab) for i, lab in zip(ids, labels, strict=True)],
                series_ids=np.repeat(np.array(ids, np.int64), len(ts)),
                ts=np.tile(ts, len(ids)),
                values=np.tile(np.arange(len(ts), dtype=np.float64), len(ids)),
            )
        )
        return storage


Run = Callable[[FuzzEnv, bytes], object]


@dataclass(frozen=True)
class Target:
    name: str
    run: Run
    seeds: Callable[[], list[bytes]]
    #: What the target covers, for BENCHMARKS.md.
    covers: str


def check(target: Target, env: FuzzEnv, data: bytes) -> None:
    """The invariant: decode, or refuse with a UserError. Anything else propagates."""
    try:
        target.run(env, data)
    except UserError as exc:
        assert exc.message.strip(), f"{type(exc).__name__} without a message"


# --- the decoders --------------------------------------------------------------------------
def validated(decoded: DecodedSamples) -> DecodedSamples:
    for batch in (decoded.batch, decoded.deltas):
        for labels in batch.series:
            validate_series(labels, LIMITS)
        check_not_future(batch.ts, NOW, LIMITS, "fuzz")
    return decoded


def validated_events(events: list[Event]) -> list[Event]:
    for i, event in enumerate(events):
        validate_event(event, i, NOW, LIMITS)
    return events


def remote_write(env: FuzzEnv, data: bytes) -> object:
    return validated(decode_remote_write(data, None, None, LIMITS))


def remote_write_proto(env: FuzzEnv, data: bytes) -> object:
    body = seeds.snappy(data)
    return validated(decode_remote_write(body, "application/x-protobuf", "snappy", LIMITS))


def otlp_protobuf(env: FuzzEnv, data: bytes) -> object:
    return validated(decode_otlp(data, "application/x-protobuf", None, LIMITS).decoded)


def otlp_json(env: FuzzEnv, data: bytes) -> object:
    return validated(decode_otlp(data, "application/json", None, LIMITS).decoded)


def gzip_body(env: FuzzEnv, data: bytes) -> object:
    return decompress_body(data, "gzip", LIMITS.max_decompressed_bytes)


def prometheus_text(env: FuzzEnv, data: bytes) -> object:
    return validated(exposition.parse_exposition(data, "text/plain; version=0.0.4", NOW))


def openmetrics(env: FuzzEnv, data: bytes) -> object:
    content_type = "application/openmetrics-text; version=1.0.0"
    return validated(exposition.parse_exposition(data, content_type, NOW))


def samples_json(env: FuzzEnv, data: bytes) -> object:
    return validated(json_samples.decode_samples_json(data, NOW))


def events_json(env: FuzzEnv, data: bytes) -> object:
    return validated_events(json_formats.decode_events_json(data, NOW))


def annotations_json(env: FuzzEnv, data: bytes) -> object:
    return json_formats.decode_annotations_json(data, NOW)


def _import(env: FuzzEnv, path: Path, fmt: ImportFormat) -> object:
    """`opsmetrics import`: read the file in chunks, then decode each as the server would."""
    ctx = ReadContext(path, "fuzz", NOW, batch_size=50)
    for chunk in read_chunks(fmt, ctx, Position()):
        if fmt.path == "/api/v1/events":
            validated_events(json_formats.decode_events_json(chunk.body, NOW))
        elif fmt.path == "/api/v1/samples":
            validated(json_samples.decode_samples_json(chunk.body, NOW))
        else:
            validated(exposition.parse_exposition(chunk.body, chunk.content_type, NOW))
    return None


def csv_import(env: FuzzEnv, data: bytes) -> object:
    return _import(env, env.file("import/events.csv", data), ImportFormat.EVENTS_CSV)


def file_import(env: FuzzEnv, data: bytes) -> object:
    """A file without a telling suffix: the format is detected from its first bytes."""
    path = env.file("import/data", data)
    return _import(env, path, detect_format(path))


# --- query and template text ---------------------------------------------------------------
def _text(data: bytes) -> str:
    # Command-line arguments reach us with undecodable bytes as lone surrogates; HTTP
    # parameters are decoded with U+FFFD. The first is the harder case.
    return data.decode("utf-8", "surrogateescape")


def promql(env: FuzzEnv, data: bytes) -> object:
    text = _text(data)
    evaluate_instant(env.store, text, NOW, max_samples=200_000, timeout_s=5)
    return evaluate_range(
        env.store, text, NOW - 3_600_000, NOW, 300_000, max_samples=200_000, timeout_s=5
    )


def alert_template(env: FuzzEnv, data: bytes) -> object:
    template = alert_templates.parse(_text(data), "fuzz")
    labels = {"job": "api", "instance": "a:9", "alertname": "Down"}
    return template.render(alert_templates.AlertData(labels, 0.25, {"env": "prod"}, "http://x"))


# --- config files: the loaders the server and `opsmetrics validate` call ------------------
def retention_file(env: FuzzEnv, data: bytes) -> object:
    return load_retention(env.config_dir("retention", "retention.yaml", data))


def scrape_file(env: FuzzEnv, data: bytes) -> object:
    return load_scrape_config(env.file("config/scrape.yaml", data))


def probes_file(env: FuzzEnv, data: bytes) -> object:
    return load_probes_config(env.file("config/probes.yaml", data))


def rules_file(env: FuzzEnv, data: bytes) -> object:
    return load_rule_file(env.file("config/rules/fuzz.yaml", data))


def notify_file(env: FuzzEnv, data: bytes) -> object:
    return load_notify(env.config_dir("notify", "notify.yaml", data))


def kpis_file(env: FuzzEnv, data: bytes) -> object:
    return read_catalog(env.config_dir("kpis", "kpis/fuzz.yaml", data))


def kpi_alerts_file(env: FuzzEnv, data: bytes) -> object:
    folder = env.config_dir("kpi_alerts", "rules/alerts.yaml", data)
    return read_kpi_alert_rules(env.demo_catalog, folder)


def dashboards_file(env: FuzzEnv, data: bytes) -> object:
    folder = env.config_dir("dashboards", "dashboards/fuzz.yaml", data)
    return dashboard_problems(folder, env.demo_catalog)


def experiments_file(env: FuzzEnv, data: bytes) -> object:
    return load_experiments(env.config_dir("experiments", "experiments/fuzz.yaml", data))


def _target(run: Run, make_seeds: Callable[[], list[bytes]], covers: str) -> Target:
    return Target(run.__name__, run, make_seeds, covers)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        _target(
            remote_write,
            lambda: [seeds.snappy(p) for p in seeds.remote_write_protos()],
            "remote_write body: snappy block + WriteRequest",
        ),
        _target(
            remote_write_proto,
            seeds.remote_write_protos,
            "remote_write WriteRequest protobuf (fast and plain paths)",
        ),
        _target(otlp_protobuf, seeds.otlp_protos, "OTLP/HTTP metrics, protobuf"),
        _target(otlp_json, seeds.otlp_jsons, "OTLP/HTTP metrics, JSON"),
        _target(gzip_body, seeds.gzip_bodies, "Content-Encoding: gzip, bounded"),
        _target(prometheus_text, seeds.prometheus_texts, "text exposition 0.0.4"),
        _target(openmetrics, seeds.openmetrics_texts, "OpenMetrics 1.0 text"),
        _target(samples_json, seeds.samples_jsons, "JSON/NDJSON samples"),
        _target(events_json, seeds.events_jsons, "JSON/NDJSON events"),
        _target(annotations_json, seeds.annotations_jsons, "JSON annotations"),
        _target(csv_import, seeds.csv_files, "`opsmetrics import` CSV events"),
        _target(file_import, seeds.import_files, "`opsmetrics import`, format detected"),
        _target(promql, seeds.promql_queries, "PromQL text: parse + instant and range eval"),
        _target(alert_template, seeds.alert_templates, "alert/annotation templates"),
        _target(retention_file, lambda: [seeds.demo_file("retention.yaml")], "retention.yaml"),
        _target(scrape_file, lambda: [seeds.demo_file("scrape.yaml")], "scrape.yaml"),
        _target(probes_file, lambda: [seeds.demo_file("probes.yaml")], "probes.yaml"),
        _target(rules_file, lambda: seeds.demo_files("rules"), "rules/*.yaml (groups:)"),
        _target(notify_file, seeds.notify_files, "notify.yaml, time intervals"),
        _target(kpis_file, lambda: seeds.demo_files("kpis"), "kpis/*.yaml"),
        _target(kpi_alerts_file, seeds.kpi_alert_files, "rules/*.yaml (alerts:)"),
        _target(dashboards_file, lambda: seeds.demo_files("dashboards"), "dashboards/*.yaml"),
        _target(experiments_file, lambda: seeds.demo_files("experiments"), "experiments/*.yaml"),
    ]
}
