"""The text exposition decoders: Prometheus text 0.0.4 (lenient) and OpenMetrics 1.0 (strict)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client import generate_latest as text_exposition
from prometheus_client.openmetrics.exposition import generate_latest as om_exposition

from opsmetrics.errors import BadDataError
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.exposition import (
    is_openmetrics,
    normalize_float_label,
    parse_exposition,
)
from opsmetrics.model import METRIC_NAME, MetricMetadata, MetricType, is_stale

TS = 1_700_000_000_000
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"

Row = tuple[dict[str, str], int, float]


def text(body: str) -> DecodedSamples:
    return parse_exposition(body.encode(), TEXT, TS)


def om(body: str) -> DecodedSamples:
    return parse_exposition(body.encode(), OM, TS)


def rows(decoded: DecodedSamples) -> list[Row]:
    b = decoded.batch
    return [(dict(b.series[b.index[i]]), int(b.ts[i]), float(b.values[i])) for i in range(len(b))]


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def series(name: str, **labels: str) -> dict[str, str]:
    return {METRIC_NAME: name, **labels}


# --- text format 0.0.4 -----------------------------------------------------------------------


def test_counter_with_metadata_labels_and_default_timestamp() -> None:
    decoded = text(
        "# HELP http_requests_total Requests served.\n"
        "# TYPE http_requests_total counter\n"
        'http_requests_total{method="GET",code="200"} 1027\n'
        'http_requests_total{method="POST",code="400"} 3 1395066363000\n'
    )
    assert rows(decoded) == [
        (series("http_requests_total", code="200", method="GET"), TS, 1027.0),
        (series("http_requests_total", code="400", method="POST"), 1395066363000, 3.0),
    ]
    assert decoded.metadata == [
        MetricMetadata("http_requests_total", MetricType.COUNTER, "Requests served.")
    ]
    assert len(decoded.deltas) == 0


def test_labels_are_canonical_sorted_and_empty_values_dropped() -> None:
    decoded = text('m{zeta="1",alpha="2",empty=""} 1\n')
    assert decoded.batch.series == [(("__name__", "m"), ("alpha", "2"), ("zeta", "1"))]


def test_histogram_buckets_and_le_normalization() -> None:
    decoded = text(
        "# TYPE rpc_seconds histogram\n"
        'rpc_seconds_bucket{le="0.05"} 24054\n'
        'rpc_seconds_bucket{le="1"} 33444\n'
        'rpc_seconds_bucket{le="+Inf"} 144320\n'
        "rpc_seconds_sum 53423\n"
        "rpc_seconds_count 144320\n"
    )
    got = [(r[0][METRIC_NAME], r[0].get("le"), r[2]) for r in rows(decoded)]
    assert got == [
        ("rpc_seconds_bucket", "0.05", 24054.0),
        ("rpc_seconds_bucket", "1.0", 33444.0),  # stored as Prometheus 3 stores it
        ("rpc_seconds_bucket", "+Inf", 144320.0),
        ("rpc_seconds_sum", None, 53423.0),
        ("rpc_seconds_count", None, 144320.0),
    ]
    assert decoded.metadata == [MetricMetadata("rpc_seconds", MetricType.HISTOGRAM)]


def test_le_of_an_untyped_metric_is_left_as_written() -> None:
    [(labels, _, _)] = rows(text('x_bucket{le="1"} 1\n'))
    assert labels["le"] == "1"


def test_summary_quantiles() -> None:
    decoded = text(
        "# HELP rpc_duration_seconds RPC latency.\n"
        "# TYPE rpc_duration_seconds summary\n"
        'rpc_duration_seconds{quantile="0.5"} 4773\n'
        'rpc_duration_seconds{quantile="1"} 76656\n'
        "rpc_duration_seconds_sum 1.7560473e+07\n"
        "rpc_duration_seconds_count 2693\n"
    )
    got = [(r[0][METRIC_NAME], r[0].get("quantile"), r[2]) for r in rows(decoded)]
    assert got == [
        ("rpc_duration_seconds", "0.5", 4773.0),
        ("rpc_duration_seconds", "1.0", 76656.0),
        ("rpc_duration_seconds_sum", None, 17560473.0),
        ("rpc_duration_seconds_count", None, 2693.0),
    ]
    assert decoded.metadata[0].type is MetricType.SUMMARY


def test_label_value_and_help_escapes() -> None:
    decoded = text(
        "# HELP m Line one\\nback\\\\slash \\q kept\n"
        'm{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb",other="\\d"} 1\n'
    )
    [(labels, _, _)] = rows(decoded)
    assert labels == series("m", path="C:\\dir", quote='say "hi"', nl="a\nb", other="\\d")
    assert decoded.metadata[0].help == "Line one\nback\\slash \\q kept"


def test_lenient_layout_blank_lines_comments_whitespace() -> None:
    decoded = text(
        "\n"
        "# just a comment\n"
        "#another one\n"
        "  \t\n"
        '  spaced { a = "1" , b="2", } \t 5   \n'
        "tabbed\t7\t1000\r\n"
        "# EOF\n"
    )
    assert rows(decoded) == [
        (series("spaced", a="1", b="2"), TS, 5.0),
        (series("tabbed"), 1000, 7.0),
    ]
    assert decoded.metadata == []


def test_untyped_metric_and_metadata_without_samples() -> None:
    decoded = text("# TYPE legacy untyped\nlegacy 3\n# HELP lonely Only help.\n")
    assert decoded.metadata == [
        MetricMetadata("legacy", MetricType.UNKNOWN),
        MetricMetadata("lonely", MetricType.UNKNOWN, "Only help."),
    ]


def test_special_values_are_bit_exact_and_nan_is_not_stale() -> None:
    decoded = text(
        "a NaN\nb +Inf\nc -Inf\nd -0\ne 9007199254740993\nf 1e308\ng 4.9e-324\nh nan\ni inf\n"
    )
    values = [r[2] for r in rows(decoded)]
    assert bits(values[0]) == bits(float("nan"))
    assert values[1:3] == [math.inf, -math.inf]
    assert bits(values[3]) == bits(-0.0)
    assert values[4] == 9007199254740992.0  # correctly rounded, as Go's ParseFloat
    assert values[5:7] == [1e308, 5e-324]
    assert math.isnan(values[7]) and values[8] == math.inf
    assert not is_stale(decoded.batch.values).any()


def test_text_timestamps_are_integer_milliseconds() -> None:
    assert [r[1] for r in rows(text("a 1 -5\nb 1 0\nc 1 9223372036854775807\n"))] == [
        -5,
        0,
        2**63 - 1,
    ]


def test_repeated_sample_at_the_same_millisecond_keeps_the_first() -> None:
    assert rows(text("a 1\na 2\na 3 5\na 4 5\n")) == [
        (series("a"), TS, 1.0),
        (series("a"), 5, 3.0),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("ok 1\nbad\n", r'^line 2: sample "bad" has no value'),
        ("a 1\nb x\n", r"^line 2: invalid value 'x'"),
        ("a 1 1.5\n", r"^line 1: invalid timestamp '1.5'; expected integer milliseconds"),
        ("a 1 99999999999999999999\n", r"^line 1: timestamp 99999999999999999999 is out of range"),
        ("a 1 2 3\n", r"^line 1: unexpected text '3' after the timestamp"),
        ('a{b="1",b="2"} 1\n', r'^line 1: label "b" appears twice'),
        ('a{b="1} 1\n', r'^line 1: the value of label "b" has no closing quote'),
        ("a{b=1} 1\n", r'^line 1: the value of label "b" must be quoted'),
        ('a{1b="1"} 1\n', r"^line 1: expected a label name"),
        ('a{b="1" c="2"} 1\n', r'^line 1: expected "," or "\}"'),
        ('a{__name__="x"} 1\n', r"^line 1: label name \"__name__\" is reserved"),
        ("a-b 1\n", r"^line 1: invalid metric name"),
        ("1a 1\n", r"^line 1: expected a metric name"),
        ("# TYPE a gaugehistogram\n", r'^line 1: unknown metric type "gaugehistogram"'),
        ("# TYPE a\n", r'^line 1: unknown metric type ""'),
        ("# HELP\n", r"^line 1: HELP needs a metric name"),
    ],
)
def test_text_errors_name_the_line_and_the_problem(body: str, message: str) -> None:
    with pytest.raises(BadDataError, match=message):
        text(body)


def test_invalid_utf8_is_rejected_with_its_line() -> None:
    with pytest.raises(BadDataError, match=r"^line 2: the body is not valid UTF-8"):
        parse_exposition(b'a 1\nb{x="\xff"} 1\n', None, TS)


# --- choosing the format ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, False),
        ("", False),
        ("text/plain; version=0.0.4", False),
        ("text/plain", False),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text; version=0.0.1; charset=utf-8", True),
        ("Application/OpenMetrics-Text;version=1.0.0", True),
    ],
)
def test_content_type_selects_the_parser(content_type: str | None, expected: bool) -> None:
    assert is_openmetrics(content_type) is expected


def test_openmetrics_content_type_requires_eof_and_text_does_not() -> None:
    assert len(parse_exposition(b"a 1\n", "text/plain", TS).batch) == 1
    assert len(parse_exposition(b"a 1\n", None, TS).batch) == 1
    with pytest.raises(BadDataError, match=r"must end with a '# EOF' line"):
        parse_exposition(b"a 1\n", OM, TS)


# --- OpenMetrics --------------------------------------------------------------------------------


def test_openmetrics_families_timestamps_in_seconds_and_created() -> None:
    decoded = om(
        "# TYPE req counter\n"
        "# HELP req Requests.\n"
        'req_total{code="200"} 10 1700000000.5 # {trace_id="abc"} 1 1700000000.4\n'
        'req_created{code="200"} 1699999000.25\n'
        "# TYPE latency_seconds histogram\n"
        "# UNIT latency_seconds seconds\n"
        'latency_seconds_bucket{le="0.1"} 2\n'
        'latency_seconds_bucket{le="1"} 5 # {trace_id="x"} 0.7\n'
        'latency_seconds_bucket{le="+Inf"} 6\n'
        "latency_seconds_count 6\n"
        "latency_seconds_sum 3.5\n"
        "# EOF\n"
    )
    assert rows(decoded) == [
        (series("req_total", code="200"), 1_700_000_000_500, 10.0),
        (series("req_created", code="200"), TS, 1699999000.25),
        (series("latency_seconds_bucket", le="0.1"), TS, 2.0),
        (series("latency_seconds_bucket", le="1.0"), TS, 5.0),
        (series("latency_seconds_bucket", le="+Inf"), TS, 6.0),
        (series("latency_seconds_count"), TS, 6.0),
        (series("latency_seconds_sum"), TS, 3.5),
    ]
    assert decoded.metadata == [
        MetricMetadata("req", MetricType.COUNTER, "Requests."),
        MetricMetadata("latency_seconds", MetricType.HISTOGRAM, "", "seconds"),
    ]


def test_openmetrics_info_stateset_gaugehistogram_and_unknown() -> None:
    decoded = om(
        "# TYPE build info\n"
        'build_info{version="1.2"} 1\n'
        "# TYPE mode stateset\n"
        'mode{mode="a"} 1\n'
        'mode{mode="b"} 0\n'
        "# TYPE queue gaugehistogram\n"
        'queue_bucket{le="-1"} 1\n'
        'queue_bucket{le="+Inf"} 4\n'
        "queue_gcount 4\n"
        "queue_gsum -2\n"
        "# TYPE other unknown\n"
        "other 12\n"
        "# EOF"
    )
    assert [r[0][METRIC_NAME] for r in rows(decoded)] == [
        "build_info",
        "mode",
        "mode",
        "queue_bucket",
        "queue_bucket",
        "queue_gcount",
        "queue_gsum",
        "other",
    ]
    assert [m.type for m in decoded.metadata] == [
        MetricType.INFO,
        MetricType.STATESET,
        MetricType.GAUGE_HISTOGRAM,
        MetricType.UNKNOWN,
    ]


HISTOGRAM_HEAD = "# TYPE foo histogram\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            HISTOGRAM_HEAD
            + 'foo_bucket{le="2"} 1\nfoo_bucket{le="1"} 1\nfoo_bucket{le="+Inf"} 1\n',
            r'^line 3: histogram "foo" bucket le="1" is not above the previous bucket le="2"; '
            r"buckets must be sorted by le$",
        ),
        (
            HISTOGRAM_HEAD
            + 'foo_bucket{le="1"} 5\nfoo_bucket{le="2"} 3\nfoo_bucket{le="+Inf"} 5\n',
            r'^line 3: histogram "foo" bucket le="2" count 3.0 is lower than the previous '
            r"bucket's 5.0; buckets must be cumulative$",
        ),
        (
            HISTOGRAM_HEAD + 'foo_bucket{le="1"} 1\nfoo_count 1\nfoo_sum 1\n',
            r'^line 4: histogram "foo" has no le="\+Inf" bucket',
        ),
        (
            HISTOGRAM_HEAD + 'foo_bucket{le="+Inf"} 2\nfoo_count 3\nfoo_sum 1\n',
            r'^line 4: histogram "foo" _count 3.0 differs from the le="\+Inf" bucket 2.0',
        ),
        (
            HISTOGRAM_HEAD + "foo_bucket 1\n",
            r'^line 2: histogram "foo" bucket foo_bucket has no "le"',
        ),
        ("# TYPE c counter\nc_total -1\n", r'^line 2: counter "c" sample c_total is -1.0'),
        ("# TYPE c counter\nc 1\n", r'^line 2: metric family "c" appears again'),
        ('# TYPE s summary\ns{quantile="2"} 1\n', r'^line 2: summary "s" quantile="2" must be'),
        ("# TYPE i info\ni_info 2\n", r'^line 2: info "i" value is 2.0; info values are 1'),
        (
            '# TYPE g gauge\ng 1 # {a="b"} 1\n',
            r'^line 2: gauge "g" sample g cannot have an exemplar',
        ),
        ("# UNIT g seconds\n", r'^line 1: metric "g" must end with "_seconds"'),
        ("a 1\n\n", r"^line 2: blank lines are not allowed in OpenMetrics"),
        ("# a comment\n", r"^line 1: unexpected comment '# a comment'"),
        ("a 1 1000\na 1 999\n", r"^line 2: timestamp 999 of a is before the previous one \(1000\)"),
        (
            "a 1\na 2\n",
            r"^line 2: second sample for a; repeated samples of a series need timestamps",
        ),
        ("a 1 1700000000000\n", None),
        ('a{b="1" } 1\n', r'^line 1: expected "," or "\}"'),
        ("a 1  \n", r"^line 1: value and timestamp must be separated by single spaces"),
        ("a 0x10\n", r"^line 1: invalid value '0x10'"),
        (
            "a 1 1e3.5\n",
            r"^line 1: invalid timestamp '1e3.5'; OpenMetrics timestamps are Unix seconds",
        ),
        ('# TYPE c counter\nc_total 1 # {a="' + "x" * 128 + '"} 1\n', r"exemplar labels have 129"),
    ],
)
def test_openmetrics_errors_name_the_line_and_rule(body: str, message: str | None) -> None:
    if message is None:  # a well-formed body: the contrast case
        assert len(om(body + "# EOF\n").batch) == 1
        return
    with pytest.raises(BadDataError, match=message):
        om(body + "# EOF\n")


def test_openmetrics_text_after_eof_is_rejected() -> None:
    with pytest.raises(BadDataError, match=r"^line 3: unexpected text after '# EOF'"):
        om("a 1\n# EOF\nb 2\n")


def test_openmetrics_timestamps_keep_millisecond_precision() -> None:
    decoded = om("a 1 1.001\nb 1 -1.5\nc 1 1e3\nd 1 0.0009\n# EOF\n")
    assert [r[1] for r in rows(decoded)] == [1001, -1500, 1_000_000, 0]


# --- shared ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("1", "1.0"),
        ("0", "0.0"),
        ("-0", "0.0"),
        ("0.5", "0.5"),
        ("1e6", "1e+06"),
        ("123456", "123456.0"),
        ("0.0001", "0.0001"),
        ("0.00001", "1e-05"),
        ("2.5e-7", "2.5e-07"),
        ("+Inf", "+Inf"),
        ("inf", "+Inf"),
        ("not-a-number", "not-a-number"),
    ],
)
def test_normalize_float_label(raw: str, normal: str) -> None:
    assert normalize_float_label(raw) == normal


def render_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


label_values = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)


@given(
    samples=st.lists(
        st.tuples(label_values, st.floats(allow_nan=True), st.integers(-(2**62), 2**62)),
        min_size=1,
        max_size=20,
        unique_by=lambda s: s[0],
    )
)
def test_text_round_trip_is_bit_exact(samples: list[tuple[str, float, int]]) -> None:
    body = "".join(
        f'm{{v="{escape(v)}"}} {render_value(x)} {ts}\n' for v, x, ts in samples
    ).encode()
    decoded = parse_exposition(body, None, TS)
    got = rows(decoded)
    assert [r[0]["v"] for r in got] == [v for v, _, _ in samples]
    assert [r[1] for r in got] == [ts for _, _, ts in samples]
    want = np.array([x for _, x, _ in samples], dtype=np.float64)
    if np.isnan(want).any():  # NaN payloads are not kept by the text format: any NaN is NaN
        assert (np.isnan(decoded.batch.values) == np.isnan(want)).all()
        keep = ~np.isnan(want)
        assert decoded.batch.values[keep].tobytes() == want[keep].tobytes()
    else:
        assert decoded.batch.values.tobytes() == want.tobytes()


def test_prometheus_client_output_parses_in_both_formats() -> None:
    registry = CollectorRegistry()
    Counter("jobs", "Jobs run.", ["queue"], registry=registry).labels('a\\b"c\nd').inc(3)
    Gauge("temperature_celsius", "Temp.", unit="celsius", registry=registry).set(-4.5)
    Histogram("latency_seconds", "Latency.", registry=registry).observe(0.3)
    Summary("size_bytes", "Sizes.", registry=registry).observe(512)
    Info("build", "Build.", registry=registry).info({"version": "1.2"})
    Enum("mode", "Mode.", states=["on", "off"], registry=registry).state("off")

    as_text = parse_exposition(text_exposition(registry), TEXT, TS)
    as_om = parse_exposition(om_exposition(registry), OM, TS)
    text_rows, om_rows = rows(as_text), rows(as_om)
    assert len(text_rows) == len(om_rows) > 20
    jobs = [r for r in om_rows if r[0][METRIC_NAME] == "jobs_total"]
    assert jobs == [(series("jobs_total", queue='a\\b"c\nd'), TS, 3.0)]
    buckets = [r[0]["le"] for r in text_rows if r[0][METRIC_NAME] == "latency_seconds_bucket"]
    assert buckets[:3] == ["0.005", "0.01", "0.025"] and buckets[-1] == "+Inf"
    om_types = {m.metric: m.type for m in as_om.metadata}
    assert om_types["mode"] is MetricType.STATESET and om_types["build"] is MetricType.INFO
    assert {m.metric: m.unit for m in as_om.metadata}["temperature_celsius"] == "celsius"
