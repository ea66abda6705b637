"""Prometheus remote_write 1.0 decoding: round trips, both decoding paths, errors and limits."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Sequence

import cramjam
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsmetrics.errors import (
    BadDataError,
    LimitExceededError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from opsmetrics.ingest.decoded import DecodedSamples
from opsmetrics.ingest.proto import remote_pb2 as pb
from opsmetrics.ingest.protowire import Wire, varints
from opsmetrics.ingest.remote_write import LabelsCache, decode_remote_write
from opsmetrics.ingest.remote_write_fast import MAX_SAMPLE_STEPS
from opsmetrics.model import (
    STALE_NAN,
    STALE_NAN_BITS,
    Labels,
    MetricMetadata,
    MetricType,
    SampleBatch,
)
from opsmetrics.settings import Limits

LIMITS = Limits()
Pairs = Sequence[tuple[str, str]]
Points = Sequence[tuple[int, float]]
#: An exemplar (TimeSeries field 3) the decoder must skip; it forces the plain decoding path.
EXEMPLAR = b"\x1a\x11\x0a\x06\x0a\x01a\x12\x01b\x11" + struct.pack("<d", 1.5)


def series(labels: Pairs, points: Points = ((1000, 1.0),)) -> pb.TimeSeries:
    return pb.TimeSeries(
        labels=[pb.Label(name=n, value=v) for n, v in labels],
        samples=[pb.Sample(timestamp=t, value=v) for t, v in points],
    )


def encode(*timeseries: pb.TimeSeries, exemplars: bool = False) -> bytes:
    """A WriteRequest, optionally with an exemplar after each series' samples."""
    parts = []
    for ts in timeseries:
        data = ts.SerializeToString() + (EXEMPLAR if exemplars else b"")
        parts.append(_field(0x0A, data))  # WriteRequest.timeseries
    return b"".join(parts)


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def decode(
    raw: bytes,
    limits: Limits = LIMITS,
    cache: LabelsCache | None = None,
    content_type: str | None = "application/x-protobuf",
) -> DecodedSamples:
    return decode_remote_write(snappy(raw), content_type, "snappy", limits, cache=cache)


def rows(batch: SampleBatch) -> list[tuple[Labels, int, int]]:
    """(labels, ts, value bits) per sample, so NaN payloads compare exactly."""
    bits = batch.values.view(np.uint64).tolist()
    index = batch.index.tolist()
    return [(batch.series[i], t, b) for i, t, b in zip(index, batch.ts.tolist(), bits, strict=True)]


def bits(value: float) -> int:
    return int(np.array([value]).view(np.uint64)[0])


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return bytes([tag]) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("exemplars", [False, True], ids=["fast", "plain"])
def test_round_trip_sorts_labels_and_keeps_samples_in_order(exemplars: bool) -> None:
    raw = encode(
        series([("job", "api"), ("__name__", "up")], [(1000, 1.0), (2000, 0.0)]),
        series([("__name__", "http_requests_total"), ("code", "500")], [(1500, 7.0)]),
        exemplars=exemplars,
    )
    batch = decode(raw).batch
    up = (("__name__", "up"), ("job", "api"))
    total = (("__name__", "http_requests_total"), ("code", "500"))
    assert batch.series == [up, total]
    assert rows(batch) == [(up, 1000, bits(1.0)), (up, 2000, bits(0.0)), (total, 1500, bits(7.0))]
    assert batch.index.dtype == np.int32 and batch.ts.dtype == np.int64
    assert batch.values.dtype == np.float64


@pytest.mark.parametrize("exemplars", [False, True], ids=["fast", "plain"])
def test_special_values_and_timestamps_are_bit_exact(exemplars: bool) -> None:
    other_nan = float(np.array([0x7FF8000000000123], np.uint64).view(np.float64)[0])
    values = [STALE_NAN, other_nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, -1.5]
    stamps = [0, -1, -(2**62), 2**62, 1_700_000_000_000, 1, 127, 128]
    points = list(zip(stamps, values, strict=True))
    batch = decode(encode(series([("__name__", "x")], points), exemplars=exemplars)).batch
    assert batch.values.view(np.uint64).tolist() == [bits(v) for v in values]
    assert batch.values.view(np.uint64)[0] == STALE_NAN_BITS
    assert batch.ts.tolist() == stamps


def test_both_paths_agree_on_many_series() -> None:
    timeseries = [
        series(
            [("__name__", f"m{i % 3}"), ("instance", f"host{i}"), ("zone", "" if i % 4 else "a")],
            [(1000 * j, float(i * j)) for j in range(i % 5)],
        )
        for i in range(50)
    ]
    fast = decode(encode(*timeseries)).batch
    plain = decode(encode(*timeseries, exemplars=True)).batch
    assert fast.series == plain.series
    assert rows(fast) == rows(plain)


@pytest.mark.parametrize("exemplars", [False, True], ids=["fast", "plain"])
def test_long_series_decode(exemplars: bool) -> None:
    points = [(i, float(i)) for i in range(MAX_SAMPLE_STEPS * 3)]
    raw = encode(
        series([("__name__", "a")], points),
        series([("__name__", "b")], points[:2]),
        exemplars=exemplars,
    )
    batch = decode(raw).batch
    assert len(batch) == len(points) + 2
    assert batch.ts.tolist() == [t for t, _ in points] + [0, 1]
    assert np.bincount(batch.index).tolist() == [len(points), 2]


def test_samples_before_labels_still_decode() -> None:
    ts = series([("__name__", "up"), ("job", "a")], [(5, 2.0)])
    data = b"".join(
        [pb.TimeSeries(samples=ts.samples).SerializeToString()]
        + [pb.TimeSeries(labels=[label]).SerializeToString() for label in ts.labels]
    )
    raw = b"\x0a" + _varint(len(data)) + data
    batch = decode(raw).batch
    assert rows(batch) == [((("__name__", "up"), ("job", "a")), 5, bits(2.0))]


def test_unknown_fields_in_a_sample_are_skipped() -> None:
    raw = _field(0x0A, NAME_LABEL + _field(0x12, b"\x09" + struct.pack("<d", 2.5) + b"\x18\x01"))
    assert rows(decode(raw).batch) == [((("__name__", "a"),), 0, bits(2.5))]


def test_empty_values_drop_the_label() -> None:
    raw = encode(series([("__name__", "up"), ("env", ""), ("job", "a")]))
    assert decode(raw).batch.series == [(("__name__", "up"), ("job", "a"))]


def test_label_values_may_hold_any_unicode() -> None:
    raw = encode(series([("__name__", "up"), ("path", "/ü/\x00/✓"), ("a", "é")]))
    assert decode(raw).batch.series == [(("__name__", "up"), ("a", "é"), ("path", "/ü/\x00/✓"))]


@pytest.mark.parametrize(
    ("label", "value"),
    [
        (b"\x0a\x01z\x12\x00", ""),  # an empty value sent explicitly
        (b"\x0a\x01z", ""),  # an empty value left out
        (b"\x12\x01v\x0a\x01z", "v"),  # value before name
        (b"\x0a\x01z\x12\x01v\x18\x01", "v"),  # an unknown field
        (b"\x0a\x01z\x12\x01v\x12\x01w", "w"),  # the value twice: the last one counts
    ],
)
def test_unusual_label_encodings(label: bytes, value: str) -> None:
    raw = _field(0x0A, NAME_LABEL + _field(0x0A, label) + _field(0x12, b""))
    want = (("__name__", "a"), ("z", value)) if value else (("__name__", "a"),)
    assert decode(raw).batch.series == [want]


def test_long_names_and_values() -> None:
    name, value = "n" * 200, "v" * 300
    raw = encode(series([("__name__", "up"), (name, value), ("a", "2")]))
    assert decode(raw).batch.series == [(("__name__", "up"), ("a", "2"), (name, value))]


def test_repeated_series_are_merged_and_series_without_samples_left_out() -> None:
    raw = encode(
        series([("__name__", "up")], [(1, 1.0)]),
        series([("__name__", "idle")], []),
        series([("job", ""), ("__name__", "up")], [(2, 2.0)]),
    )
    batch = decode(raw).batch
    assert batch.series == [(("__name__", "up"),)]
    assert batch.index.tolist() == [0, 0]
    assert batch.ts.tolist() == [1, 2]


def test_an_empty_request_decodes_to_nothing() -> None:
    decoded = decode(b"")
    assert len(decoded.batch) == 0 and decoded.metadata == []
    assert len(decoded.deltas) == 0


def test_metadata_is_mapped() -> None:
    kinds = pb.MetricMetadata.MetricType
    request = pb.WriteRequest(
        metadata=[
            pb.MetricMetadata(
                type=kinds.COUNTER, metric_family_name="reqs", help="Requests.", unit="requests"
            ),
            pb.MetricMetadata(type=kinds.GAUGEHISTOGRAM, metric_family_name="lat"),
            pb.MetricMetadata(type=kinds.STATESET, metric_family_name=""),
        ]
    )
    decoded = decode(request.SerializeToString())
    assert decoded.metadata == [
        MetricMetadata("reqs", MetricType.COUNTER, "Requests.", "requests"),
        MetricMetadata("lat", MetricType.GAUGE_HISTOGRAM),
    ]


def test_unknown_metadata_types_are_unknown() -> None:
    raw = b"\x1a\x05\x08\x2a\x12\x01m"  # metadata {type: 42, metric_family_name: "m"}
    assert decode(raw).metadata == [MetricMetadata("m", MetricType.UNKNOWN)]


# --- the labels cache ----------------------------------------------------------------------


def test_cache_gives_the_same_result_and_shares_label_tuples() -> None:
    cache = LabelsCache()
    raw = encode(*(series([("__name__", "up"), ("i", str(i))], [(i, 1.0)]) for i in range(20)))
    first = decode(raw, cache=cache).batch
    second = decode(raw, cache=cache).batch
    assert len(cache) == 20
    assert rows(first) == rows(second)
    assert all(a is b for a, b in zip(first.series, second.series, strict=True))


def test_cache_starts_over_when_full() -> None:
    cache = LabelsCache(max_series=3)
    for i in range(5):
        batch = decode(encode(series([("__name__", f"m{i}")])), cache=cache).batch
        assert batch.series == [(("__name__", f"m{i}"),)]
    assert len(cache) <= 3


def test_differently_encoded_equal_series_are_one_series() -> None:
    cache = LabelsCache()
    raw = encode(series([("__name__", "up"), ("a", "1")]), series([("a", "1"), ("__name__", "up")]))
    batch = decode(raw, cache=cache).batch
    assert batch.series == [(("__name__", "up"), ("a", "1"))]
    assert batch.index.tolist() == [0, 0]


# --- content negotiation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/x-protobuf",
        "application/x-protobuf;proto=prometheus.WriteRequest",
        'Application/X-Protobuf; proto="prometheus.WriteRequest"',
    ],
)
def test_accepted_content_types(content_type: str | None) -> None:
    raw = encode(series([("__name__", "up")]))
    assert len(decode(raw, content_type=content_type).batch) == 1


def test_other_content_types_are_unsupported() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="application/json"):
        decode(b"", content_type="application/json")


def test_remote_write_2_is_unsupported() -> None:
    ctype = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    with pytest.raises(UnsupportedMediaTypeError, match=r"only remote write 1\.0"):
        decode(b"", content_type=ctype)


@pytest.mark.parametrize("encoding", [None, "snappy", "SNAPPY"])
def test_snappy_is_the_encoding(encoding: str | None) -> None:
    body = snappy(encode(series([("__name__", "up")])))
    assert len(decode_remote_write(body, None, encoding, LIMITS).batch) == 1


@pytest.mark.parametrize("encoding", ["gzip", "identity", "zstd"])
def test_other_encodings_are_unsupported(encoding: str) -> None:
    body = snappy(encode(series([("__name__", "up")])))
    with pytest.raises(UnsupportedMediaTypeError, match="snappy"):
        decode_remote_write(body, None, encoding, LIMITS)


def test_framed_snappy_is_rejected() -> None:
    body = bytes(cramjam.snappy.compress(encode(series([("__name__", "up")]))))
    with pytest.raises(UnsupportedMediaTypeError, match="block format"):
        decode_remote_write(body, None, "snappy", LIMITS)


# --- corrupt bodies and limits -------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"\xff\xff\xff\xff\xff\xff", b"\x10abc", b"\x05\x00"])
def test_corrupt_snappy_is_bad_data(body: bytes) -> None:
    with pytest.raises(BadDataError, match="snappy"):
        decode_remote_write(body, None, "snappy", LIMITS)


NAME_LABEL = _field(0x0A, b"\x0a\x08__name__\x12\x01a")


@pytest.mark.parametrize(
    "raw",
    [
        _field(0x0A, b"\x0a\x05\x0a\x01a"),  # a label runs past its series
        _field(0x0A, b"\x0a\xff\xff\xff\xff\x0f"),  # a label longer than the request
        _field(0x0A, NAME_LABEL + b"\x12\x05\x09"),  # a sample runs past its series
        _field(0x0A, NAME_LABEL + b"\x12\x04\x09\x00") + _field(0x0A, b"\x00\x00"),
        _field(0x0A, NAME_LABEL + b"\x12\x02\x09\x00"),  # a value cut short
        _field(0x0A, NAME_LABEL + b"\x12\x03\x10\xff\xff"),  # a timestamp cut short
        b"\xff\xff\xff",  # not protobuf at all
        encode(series([("__name__", "up")]))[:-3],  # truncated
    ],
)
def test_corrupt_protobuf_is_bad_data(raw: bytes) -> None:
    with pytest.raises(BadDataError, match="not a valid protobuf prometheus.WriteRequest"):
        decode(raw)


@pytest.mark.parametrize("exemplars", [False, True], ids=["fast", "plain"])
def test_invalid_utf8_in_a_label_is_bad_data(exemplars: bool) -> None:
    label = b"\x0a\x08__name__\x12\x02\xc3\x28"
    data = b"\x0a" + _varint(len(label)) + label + (EXEMPLAR if exemplars else b"")
    with pytest.raises(BadDataError, match="UTF-8"):
        decode(b"\x0a" + _varint(len(data)) + data)


def test_snappy_bomb_is_refused_before_decompressing() -> None:
    body = snappy(bytes(2_000_000))
    assert len(body) < 100_000
    limits = Limits(max_decompressed_bytes=1_000_000)
    with pytest.raises(PayloadTooLargeError, match="2000000 bytes"):
        decode_remote_write(body, None, "snappy", limits)


def test_oversized_body_is_refused() -> None:
    body = snappy(encode(series([("__name__", "up")])))
    with pytest.raises(PayloadTooLargeError):
        decode_remote_write(body, None, "snappy", Limits(max_body_bytes=len(body) - 1))


@pytest.mark.parametrize("exemplars", [False, True], ids=["fast", "plain"])
def test_too_many_samples(exemplars: bool) -> None:
    raw = encode(series([("__name__", "up")], [(i, 1.0) for i in range(11)]), exemplars=exemplars)
    with pytest.raises(LimitExceededError, match=r"11 samples .* limit of 10") as info:
        decode(raw, Limits(max_samples_per_request=10))
    assert info.value.reason == "too_many_samples"
    assert len(decode(raw, Limits(max_samples_per_request=11)).batch) == 11


@pytest.mark.parametrize("exemplars", [False, True], ids=["fast", "plain"])
@pytest.mark.parametrize(
    ("labels", "message", "reason"),
    [
        ([("job", "a")], r"series \{job=\"a\"\} has no metric name", "missing_metric_name"),
        ([("__name__", ""), ("job", "a")], "has no metric name", "missing_metric_name"),
        ([], "has no metric name", "missing_metric_name"),
        (
            [("__name__", "up"), ("job", "a"), ("job", "b")],
            r"series up\{job=\"a\",job=\"b\"\} has the label 'job' twice",
            "duplicate_label",
        ),
        ([("__name__", "up"), ("", "x")], "empty name", "invalid_label_name"),
    ],
)
def test_invalid_series_are_bad_data(
    exemplars: bool, labels: Pairs, message: str, reason: str
) -> None:
    raw = encode(series([("__name__", "ok")]), series(labels), exemplars=exemplars)
    with pytest.raises(BadDataError, match=message) as info:
        decode(raw)
    assert info.value.reason == reason


def test_series_without_samples_are_still_checked() -> None:
    with pytest.raises(BadDataError, match="no metric name"):
        decode(encode(series([("job", "a")], [])))


# --- the numpy wire reader --------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40), st.binary(max_size=3))
def test_varints_decode_like_protobuf(numbers: list[int], junk: bytes) -> None:
    encoded = [_varint(n) for n in numbers]
    data = b"".join(junk + e for e in encoded)
    at = np.cumsum([len(junk) + len(e) for e in encoded]) - [len(e) for e in encoded]
    values, sizes = varints(Wire.of([data]), at.astype(np.int64))
    assert values.tolist() == numbers
    assert sizes.tolist() == [len(e) for e in encoded]


def test_varints_longer_than_ten_bytes_have_no_size() -> None:
    _, sizes = varints(Wire.of([b"\xff" * 11 + b"\x01"]), np.array([0, 2, 1]))
    assert sizes.tolist() == [0, 10, 0]


# --- property: any request round-trips, on both paths --------------------------------------

NAMES = st.sampled_from(["a", "b", "job", "instance", "le", "zz", "é", "A_1"])
VALUES = st.text(st.characters(codec="utf-8"), max_size=12) | st.text(min_size=100, max_size=200)
FLOAT_BITS = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([STALE_NAN_BITS, bits(math.nan), bits(math.inf), bits(-math.inf), 0]),
)
POINTS = st.lists(
    st.tuples(st.integers(-(2**63), 2**63 - 1), FLOAT_BITS), max_size=MAX_SAMPLE_STEPS + 3
)
SERIES = st.tuples(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=10),
    st.dictionaries(NAMES, VALUES, max_size=6),
    POINTS,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SERIES, max_size=12), st.booleans(), st.randoms(use_true_random=False))
def test_any_request_round_trips(
    data: list[tuple[str, dict[str, str], list[tuple[int, int]]]],
    exemplars: bool,
    rnd: random.Random,
) -> None:
    timeseries, expected = [], []
    for name, extra, points in data:
        pairs = [("__name__", name), *extra.items()]
        rnd.shuffle(pairs)
        floats = [struct.unpack("<d", struct.pack("<Q", b))[0] for _, b in points]
        timeseries.append(series(pairs, list(zip([t for t, _ in points], floats, strict=True))))
        labels = tuple(sorted(p for p in pairs if p[1]))
        expected += [(labels, t, b) for t, b in points]
    batch = decode(encode(*timeseries, exemplars=exemplars)).batch
    assert rows(batch) == expected
    assert len(set(batch.series)) == len(batch.series)
    assert sorted(set(batch.index.tolist())) == list(range(len(batch.series)))
