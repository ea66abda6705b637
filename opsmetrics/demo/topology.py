"""The simulated estate: services, instances, routes, and the series they expose."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from opsmetrics.model import Labels, MetricMetadata, MetricType, make_labels

INSTANCES_PER_SERVICE = 2
#: Prometheus's default histogram buckets; +Inf is added last.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Status codes per route: success, client error, server error.
CODES: tuple[str, ...] = ("200", "400", "500")


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    #: Requests per second across all instances at a load factor of 1.
    rps: float
    memory_bytes: float
    cpu_per_request_s: float


@dataclass(frozen=True, slots=True)
class Route:
    service: str
    method: str
    path: str
    #: Share of the service's requests.
    share: float
    #: Median latency in seconds at a load factor of 1.
    median_s: float


SERVICES: tuple[Service, ...] = (
    Service("api", 42.0, 380e6, 0.0025),
    Service("checkout", 6.0, 290e6, 0.006),
    Service("search", 24.0, 910e6, 0.004),
    Service("worker", 7.0, 520e6, 0.009),
)

ROUTES: tuple[Route, ...] = (
    Route("api", "GET", "/api/products", 0.55, 0.045),
    Route("api", "GET", "/api/products/{id}", 0.30, 0.030),
    Route("api", "POST", "/api/cart", 0.15, 0.060),
    Route("checkout", "POST", "/checkout", 0.60, 0.240),
    Route("checkout", "GET", "/checkout/{id}/status", 0.40, 0.040),
    Route("search", "GET", "/search", 0.80, 0.090),
    Route("search", "GET", "/search/suggest", 0.20, 0.020),
    Route("worker", "POST", "/jobs", 1.00, 0.400),
)

QUEUES: tuple[str, ...] = ("emails", "orders")


class Kind(enum.Enum):
    """How a column's values evolve: running totals (counters, MRR) or levels (gauges)."""

    TOTAL = "total"
    LEVEL = "level"


def instance_name(service: str, replica: int) -> str:
    return f"{service}-{replica}:9100"


def instances(service: str) -> list[str]:
    return [instance_name(service, i) for i in range(INSTANCES_PER_SERVICE)]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route served by one instance."""

    route: Route
    replica: int

    @property
    def instance(self) -> str:
        return instance_name(self.route.service, self.replica)

    def labels(self, name: str, **extra: str) -> Labels:
        pairs = {
            "__name__": name,
            "service": self.route.service,
            "instance": self.instance,
            "method": self.route.method,
            "route": self.route.path,
        }
        pairs.update(extra)
        return make_labels(pairs)


def endpoints() -> list[Endpoint]:
    return [Endpoint(r, i) for r in ROUTES for i in range(INSTANCES_PER_SERVICE)]


def process_labels(name: str, service: str, instance: str) -> Labels:
    return make_labels({"__name__": name, "service": service, "instance": instance})


def format_le(le: float) -> str:
    return "+Inf" if le == float("inf") else repr(le)


METADATA: tuple[MetricMetadata, ...] = (
    MetricMetadata("http_requests_total", MetricType.COUNTER, "HTTP requests served."),
    MetricMetadata(
        "http_request_duration_seconds", MetricType.HISTOGRAM, "HTTP request latency.", "seconds"
    ),
    MetricMetadata("process_cpu_seconds_total", MetricType.COUNTER, "CPU time used.", "seconds"),
    MetricMetadata("process_resident_memory_bytes", MetricType.GAUGE, "Resident memory.", "bytes"),
    MetricMetadata("up", MetricType.GAUGE, "Whether the target is up (1) or down (0)."),
    MetricMetadata("db_connections_open", MetricType.GAUGE, "Open database connections."),
    MetricMetadata("queue_depth", MetricType.GAUGE, "Jobs waiting in a work queue."),
    MetricMetadata(
        "business_funnel_step_total", MetricType.COUNTER, "Shop sessions reaching a funnel step."
    ),
    MetricMetadata(
        "business_revenue_cents_total", MetricType.COUNTER, "Shop revenue in cents.", "cents"
    ),
    MetricMetadata(
        "business_feature_usage_total", MetricType.COUNTER, "Product feature interactions."
    ),
    MetricMetadata("business_active_users", MetricType.GAUGE, "Active users in a window."),
    MetricMetadata(
        "marketing_spend_cents_total", MetricType.COUNTER, "Marketing spend in cents.", "cents"
    ),
    MetricMetadata("shop_cart_views_total", MetricType.COUNTER, "Cart views in the shop."),
    MetricMetadata("shop_orders_total", MetricType.COUNTER, "Orders placed in the shop."),
    MetricMetadata("shop_revenue_eur_total", MetricType.COUNTER, "Shop revenue.", "eur"),
    MetricMetadata("saas_signups_total", MetricType.COUNTER, "SaaS sign-ups."),
    MetricMetadata("saas_mrr_eur", MetricType.GAUGE, "Monthly recurring revenue.", "eur"),
    MetricMetadata("saas_subscriptions_active", MetricType.GAUGE, "Active paid subscriptions."),
)
