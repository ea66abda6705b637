"""The stable id of a series: a 63-bit hash of its canonical label set.

Backends shared by several nodes (ClickHouse) name every series by `series_id(labels)`, so two
nodes that see the same new series at once give it the same id without asking each other, and
a retried write lands on the same rows. The function is part of the storage format: it must
never change (tests/test_series_id.py pins known values).

Canonical form: the label pairs sorted by name (as `Labels` always are), each pair encoded as
UTF-8 `name 0xFF value 0xFF` (0xFF never occurs in UTF-8, so no two label sets encode alike).
The id is the first 8 bytes of BLAKE2b-64 of that, little-endian, with the top bit cleared so
it fits a signed 64-bit column everywhere (numpy int64, PostgreSQL bigint, ClickHouse Int64).

Collisions: with 2^63 ids, n series collide with probability about n^2 / 2^64 — 5e-8 for a
million series, 5e-4 for a hundred million (docs/concepts.md).
"""

from __future__ import annotations

import hashlib

from opsmetrics.model import Labels

_SEP = b"\xff"
_MASK = (1 << 63) - 1


def canonical_bytes(labels: Labels) -> bytes:
    parts: list[bytes] = []
    for name, value in sorted(labels):
        parts += (name.encode(), _SEP, value.encode(), _SEP)
    return b"".join(parts)


def series_id(labels: Labels) -> int:
    digest = hashlib.blake2b(canonical_bytes(labels), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK
