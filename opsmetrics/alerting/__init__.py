"""Rule evaluation (Prometheus rule groups), alert state, routing and notifiers."""
