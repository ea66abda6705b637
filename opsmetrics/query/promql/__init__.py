"""PromQL: parsed with promql-parser, evaluated on numpy arrays over all steps at once."""
