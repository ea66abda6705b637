"""Protocol-buffer wire format read with numpy: many varints and fields at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opsmetrics.model import Int64Array

Uint8Array = npt.NDArray[np.uint8]
Uint64Array = npt.NDArray[np.uint64]

#: Zero bytes after the data, so 8-byte reads and 10-byte varints never run off the end.
PAD = 16
_FINAL_BITS = np.uint64(0x8080808080808080)  # bit 7 of every byte: clear on a varint's last byte
_ONE = np.uint64(1)
# Masks and shifts that pack the 7-bit groups of up to 8 varint bytes into 56 bits.
_PACK = [
    (np.uint64(0x007F007F007F007F), np.uint64(0x7F007F007F007F00), np.uint64(1)),
    (np.uint64(0x00003FFF00003FFF), np.uint64(0x3FFF00003FFF0000), np.uint64(2)),
    (np.uint64(0x000000000FFFFFFF), np.uint64(0x0FFFFFFF00000000), np.uint64(4)),
]


@dataclass(frozen=True, slots=True)
class Wire:
    """Bytes as numpy arrays: `u8[i]` is byte i, `u64[i]` the little-endian 8 bytes from i.

    `data` is the bytes themselves followed by PAD zero bytes.
    """

    data: bytes
    u8: Uint8Array
    u64: Uint64Array

    @staticmethod
    def of(parts: list[bytes]) -> Wire:
        """The parts laid end to end."""
        data = b"".join([*parts, bytes(PAD)])
        words = np.ndarray((len(data) - 7,), np.dtype("<u8"), data, strides=(1,))
        return Wire(data, np.frombuffer(data, np.uint8), words)

    @property
    def size(self) -> int:
        """The length of the data, without the padding."""
        return len(self.data) - PAD

    def words(self, at: Int64Array) -> Uint64Array:
        """The 8 bytes from each position, as little-endian integers."""
        return self.u64[at].astype(np.uint64, copy=False)


def payloads(wire: Wire, at: Int64Array) -> tuple[Int64Array, Int64Array] | None:
    """For the length prefix at each position: where the payload starts and ends.

    None if a prefix is not a valid varint or points past the end of the data.
    """
    first = wire.u8[at]
    if (first < 0x80).all():
        start = at + 1
        return start, start + first
    length, size = varints(wire, at)
    if not size.all() or (length > np.uint64(wire.size)).any():
        return None
    start = at + size
    return start, start + length.astype(np.int64)


def varints(wire: Wire, at: Int64Array) -> tuple[Uint64Array, Int64Array]:
    """The varint starting at each position: values and sizes in bytes (0 if over 10 bytes)."""
    word = wire.words(at)
    if not (word & 0x80).any():
        return word & np.uint64(0x7F), np.ones(at.size, np.int64)
    finals = ~word & _FINAL_BITS
    lowest = finals & (~finals + _ONE)
    bit = np.log2(np.maximum(lowest, _ONE)).astype(np.int64)  # 7, 15, … 63: the final byte
    size = np.where(finals != 0, bit // 8 + 1, 0)
    value = _pack(word & ((lowest << _ONE) - _ONE))
    long = np.flatnonzero(finals == 0)
    if long.size:
        value[long], size[long] = _long_varints(wire, at[long])
    return value, size


def _pack(word: Uint64Array) -> Uint64Array:
    """Drop the continuation bit of each byte and pack the 7-bit groups together."""
    value = word & np.uint64(0x7F7F7F7F7F7F7F7F)
    for keep, move, shift in _PACK:
        value = (value & keep) | ((value & move) >> shift)
    return value


def _long_varints(wire: Wire, at: Int64Array) -> tuple[Uint64Array, Int64Array]:
    """Varints of 9 or 10 bytes (negative int64s, for one), a byte at a time."""
    value = np.zeros(at.size, np.uint64)
    size = np.zeros(at.size, np.int64)
    going = np.ones(at.size, np.bool_)
    for i in range(10):
        byte = wire.u8[at + i]
        part = (byte & 0x7F).astype(np.uint64) << np.uint64(7 * i)
        value |= np.where(going, part, np.uint64(0))
        size = np.where(going & (byte < 0x80), i + 1, size)
        going &= byte >= 0x80
    return value, size


def encode_varint(n: int) -> bytes:
    """One value as a varint; a negative one as its 64-bit two's complement (int32/int64)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint_sizes(values: Int64Array) -> Int64Array:
    """How many bytes each non-negative value takes as a varint."""
    sizes = np.ones(values.size, np.int64)
    for bits in range(7, 63, 7):
        sizes += values >= (1 << bits)
    return sizes


def ranges(starts: Int64Array, lengths: Int64Array) -> Int64Array:
    """The concatenation of range(start, start + length) for each pair."""
    return np.repeat(starts - offsets(lengths), lengths) + np.arange(int(lengths.sum()))


def offsets(sizes: Int64Array) -> Int64Array:
    """Where each item starts when items of these sizes are laid end to end."""
    return np.cumsum(sizes) - sizes
