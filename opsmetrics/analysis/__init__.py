"""Analysis of metric and KPI series: trends, anomalies, change points, forecasts, capacity
and target outlook (docs/analysis.md); and statistics for experiments (stats modules).

Entry points others call:

    fetch_series(storage, catalog, clock, source, start_ms, end_ms, step_ms) -> Series
    forecast(series, horizon_steps, season_steps=None) -> Forecast
    is_anomalous_now(series, at_ms) -> (bool, score, explanation)
"""
