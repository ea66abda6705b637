"""Where in its interval a rule group runs: Prometheus's offset, so both spread groups alike.

Prometheus hashes a group's label set {file, name} (xxHash64 of `file\\xff<file>\\xffname\\xff
<name>\\xff`, label names in order) and runs the group `hash % interval` nanoseconds after each
multiple of the interval. The same hash here puts a group at the same point of its interval as
Prometheus would (to the millisecond), and keeps it there across restarts.

xxHash64 is written out from its specification (github.com/Cyan4973/xxHash, doc/xxhash_spec.md)
rather than pulled in as a library: it runs once per group at start.
"""

from __future__ import annotations

import struct

_MASK = (1 << 64) - 1
_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
_SEP = b"\xff"


def group_offset_ms(file: str, name: str, interval_ms: int) -> int:
    """Milliseconds after each multiple of the interval at which the group is evaluated."""
    interval_ns = interval_ms * 1_000_000
    return group_hash(file, name) % interval_ns // 1_000_000


def group_hash(file: str, name: str) -> int:
    """Prometheus's `Group.hash()`: the hash of the label set {file, name}."""
    data = b"".join((b"file", _SEP, file.encode(), _SEP, b"name", _SEP, name.encode(), _SEP))
    return xxh64(data)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _MASK
    return (_rotl(acc, 31) * _P1) & _MASK


def _merge(acc: int, value: int) -> int:
    acc ^= _round(0, value)
    return (acc * _P1 + _P4) & _MASK


def _stripes(data: bytes, seed: int) -> tuple[int, int]:
    """The accumulator after every whole 32-byte stripe, and where the tail starts."""
    if len(data) < 32:
        return (seed + _P5) & _MASK, 0
    acc = [(seed + _P1 + _P2) & _MASK, (seed + _P2) & _MASK, seed, (seed - _P1) & _MASK]
    end = len(data) // 32 * 32
    for start in range(0, end, 32):
        lanes = struct.unpack_from("<4Q", data, start)
        acc = [_round(a, lane) for a, lane in zip(acc, lanes, strict=True)]
    h = (_rotl(acc[0], 1) + _rotl(acc[1], 7) + _rotl(acc[2], 12) + _rotl(acc[3], 18)) & _MASK
    for a in acc:
        h = _merge(h, a)
    return h, end


def xxh64(data: bytes, seed: int = 0) -> int:
    h, pos = _stripes(data, seed)
    h = (h + len(data)) & _MASK
    while pos + 8 <= len(data):
        (lane,) = struct.unpack_from("<Q", data, pos)
        h = (_rotl(h ^ _round(0, lane), 27) * _P1 + _P4) & _MASK
        pos += 8
    if pos + 4 <= len(data):
        (word,) = struct.unpack_from("<I", data, pos)
        h = (_rotl(h ^ (word * _P1 & _MASK), 23) * _P2 + _P3) & _MASK
        pos += 4
    for byte in data[pos:]:
        h = (_rotl(h ^ (byte * _P5 & _MASK), 11) * _P1) & _MASK
    h ^= h >> 33
    h = (h * _P2) & _MASK
    h ^= h >> 29
    h = (h * _P3) & _MASK
    return h ^ (h >> 32)
