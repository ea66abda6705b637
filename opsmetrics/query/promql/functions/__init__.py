"""The PromQL function library: importing this package registers every function in FUNCTIONS.

Import FUNCTIONS from here rather than from values.py to be sure the registry is complete.
"""

from opsmetrics.query.promql.functions import (
    histogram_funcs,
    label_funcs,
    math_funcs,
    misc_funcs,
    over_time_funcs,
    query_funcs,
    rate_funcs,
)
from opsmetrics.query.promql.values import FUNCTIONS

__all__ = [
    "FUNCTIONS",
    "histogram_funcs",
    "label_funcs",
    "math_funcs",
    "misc_funcs",
    "over_time_funcs",
    "query_funcs",
    "rate_funcs",
]
