"""Content-Encoding for request bodies: identity or gzip, inflated with a hard size limit."""

from __future__ import annotations

import zlib

from opsmetrics.errors import BadDataError, PayloadTooLargeError, UnsupportedMediaTypeError

#: Bytes inflated per zlib call.
GUNZIP_SLICE = 1 << 20


def decompress_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        return gunzip_bounded(body, max_bytes)
    if encoding != "identity":
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {content_encoding!r} is not supported; use gzip or none"
        )
    return body


def gunzip_bounded(body: bytes, max_bytes: int) -> bytes:
    """All gzip members, refusing to inflate past max_bytes.

    Inflated a slice at a time: zlib's own output buffer for one big call holds its blocks
    and then their joined copy, so a bomb would cost twice the limit before being refused;
    with slices it costs the limit at most.
    """
    out: list[bytes] = []
    size, rest = 0, body
    while rest or not out:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while not inflater.eof:
            try:
                chunk = inflater.decompress(rest, min(GUNZIP_SLICE, max_bytes - size + 1))
            except zlib.error as exc:
                raise BadDataError(f"body is not valid gzip: {exc}") from None
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLargeError(
                    f"body decompresses to more than the limit of {max_bytes} bytes; send "
                    "smaller batches or raise OPSMETRICS_MAX_DECOMPRESSED_BYTES"
                )
            out.append(chunk)
            rest = inflater.unconsumed_tail
            if not chunk and not rest:
                break
        if not inflater.eof:
            raise BadDataError("body is not valid gzip: it ends in the middle of the data")
        rest = inflater.unused_data
    return b"".join(out)
