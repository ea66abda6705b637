"""Content-Encoding for request bodies: identity or gzip, inflated with a hard size limit."""

from __future__ import annotations

import zlib

from opsmetrics.errors import BadDataError, PayloadTooLargeError, UnsupportedMediaTypeError


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
    """All gzip members, refusing to inflate past max_bytes."""
    out: list[bytes] = []
    size, rest = 0, body
    while rest or not out:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(rest, max_bytes - size + 1)
        except zlib.error as exc:
            raise BadDataError(f"body is not valid gzip: {exc}") from None
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(
                f"body decompresses to more than the limit of {max_bytes} bytes; send "
                "smaller batches or raise OPSMETRICS_MAX_DECOMPRESSED_BYTES"
            )
        if not inflater.eof:
            raise BadDataError("body is not valid gzip: it ends in the middle of the data")
        out.append(chunk)
        rest = inflater.unused_data
    return b"".join(out)
