"""The composition root: builds the services from one Settings object, for web/ and cli/."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from opsmetrics.auth import TokenVerifier
from opsmetrics.catalog.dashboards import DashboardSet, load_dashboards
from opsmetrics.catalog.kpi_versions import record_versions
from opsmetrics.catalog.kpis import Catalog, load_catalog
from opsmetrics.catalog.retention import load_retention
from opsmetrics.clock import Clock
from opsmetrics.ingest.archive_hook import (
    RetentionArchiver,
    archived_maintenance,
    retention_archiver,
)
from opsmetrics.ingest.pipeline import Ingestor, maintenance_task
from opsmetrics.settings import Settings
from opsmetrics.storage.base import RetentionPolicy, Storage
from opsmetrics.storage.lease import Lease
from opsmetrics.storage.open import open_stores, state_is_shared
from opsmetrics.telemetry import Telemetry


@dataclass
class Services:
    settings: Settings
    clock: Clock
    storage: Storage
    telemetry: Telemetry
    ingestor: Ingestor
    tokens: TokenVerifier
    retention: RetentionPolicy
    catalog: Catalog
    #: Rule evaluation and notification; compaction and retention: one node each.
    alerting_lease: Lease
    maintenance_lease: Lease
    dashboards: DashboardSet = field(default_factory=lambda: DashboardSet({}))
    #: Archives what retention would delete, first (OPSMETRICS_ARCHIVE_BEFORE_RETENTION).
    archiver: RetentionArchiver | None = None

    def run_maintenance(self) -> None:
        """Compact closed partitions and apply retention, on the writer thread."""
        if self.archiver is not None:
            archiver = self.archiver
            self.ingestor.run_maintenance(
                lambda: archived_maintenance(self.storage, self.clock, self.retention, archiver)
            )
            return
        self.ingestor.run_maintenance(maintenance_task(self.storage, self.clock, self.retention))

    def close(self) -> None:
        self.ingestor.stop()
        self.alerting_lease.release()
        self.maintenance_lease.release()
        self.storage.close()


def open_services(settings: Settings, clock: Clock) -> Services:
    retention = load_retention(settings.config_dir)
    catalog = load_catalog(settings.config_dir)
    dashboards = load_dashboards(settings.config_dir, catalog)
    storage = open_stores(settings, clock)
    record_versions(catalog, storage, clock.now_ms())
    telemetry = Telemetry()
    try:
        archiver = retention_archiver(settings, storage, telemetry.registry)
    except BaseException:
        storage.close()
        raise
    ingestor = Ingestor(storage, clock, settings.limits, telemetry)
    ingestor.start()
    holder = settings.node_name or f"{socket.gethostname()}:{os.getpid()}"
    shared = storage if state_is_shared(settings) else None
    return Services(
        settings=settings,
        clock=clock,
        storage=storage,
        telemetry=telemetry,
        ingestor=ingestor,
        tokens=TokenVerifier(storage.tokens()),
        retention=retention,
        catalog=catalog,
        dashboards=dashboards,
        alerting_lease=Lease(shared, clock, "alerting", holder),
        maintenance_lease=Lease(shared, clock, "maintenance", holder),
        archiver=archiver,
    )
