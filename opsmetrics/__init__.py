"""opsmetrics: technical and business KPIs defined once, collected, stored, queried, alerted on."""

__version__ = "0.1.0"
