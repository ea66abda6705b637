"""The PromQL function library: importing this package registers every function in FUNCTIONS."""

from opsmetrics.query.promql.functions import (
    histogram_funcs,
    label_funcs,
    math_funcs,
    misc_funcs,
    over_time_funcs,
    query_funcs,
    rate_funcs,
)

__all__ = [
    "histogram_funcs",
    "label_funcs",
    "math_funcs",
    "misc_funcs",
    "over_time_funcs",
    "query_funcs",
    "rate_funcs",
]
