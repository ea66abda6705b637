"""The series id function is part of the storage format: these values must never change."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from opsmetrics.storage.series_id import canonical_bytes, series_id

PINNED = {
    (("__name__", "up"), ("job", "api")): 5519673246160292049,
    (): 3797230976420062948,
    (
        ("__name__", "http_requests_total"),
        ("code", "200"),
        ("instance", "a:9100"),
    ): 32093490528451843,
}


def test_known_values_never_change() -> None:
    assert {labels: series_id(labels) for labels in PINNED} == PINNED


def test_pairs_cannot_run_into_each_other() -> None:
    # Without separators these two would encode alike.
    assert series_id((("a", "bc"),)) != series_id((("ab", "c"),))
    assert series_id((("a", ""), ("b", ""))) != series_id((("a", "b"),))
    assert canonical_bytes((("a", "b"),)) == b"a\xffb\xff"


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=5),
)
def test_ids_fit_a_signed_64_bit_column_and_ignore_pair_order(pairs: dict[str, str]) -> None:
    forward = tuple(sorted(pairs.items()))
    sid = series_id(forward)
    assert 0 <= sid < 2**63
    assert series_id(tuple(reversed(forward))) == sid  # the canonical form sorts by name
