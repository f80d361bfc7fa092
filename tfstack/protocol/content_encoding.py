"""Request bodies sent gzip-compressed, read as TF Serving's REST server reads them.

TF Serving's HTTP server (util/net_http/server/internal/evhttp_request.cc) uncompresses a request
body whose Content-Encoding header contains `gzip` before its handler sees it
(`RequestHandlerOptions.auto_uncompress_input`, on by default), up to 10 MiB
(`ZLib::kMaxUncompressedBytes`, util/net_http/compression/gzip_zlib.h). A body it cannot
uncompress, or one that would be larger, reaches the handler empty: the client reads
`JSON Parse error: The document is empty`. Responses are never compressed.
"""

from __future__ import annotations

import zlib

TFSERVING_MAX_INFLATED_BYTES = 10 * 2**20


class InflatedTooLarge(Exception):
    """The body would uncompress to more than the caller's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a gzip request body inflates past {limit} bytes")
        self.limit = limit


def is_gzip(content_encoding: str | None) -> bool:
    """As evhttp_request.cc decides (the header's value contains `gzip`), but ignoring case as
    HTTP's content codings do: `GZIP` is read too, where TF Serving would answer a parse error."""
    return bool(content_encoding) and "gzip" in content_encoding.lower()


def inflate(raw: bytes, limit: int) -> bytes:
    """The uncompressed body; b"" if `raw` is not one complete gzip stream (as TF Serving hands
    its handler an empty body). Raises InflatedTooLarge past `limit` bytes, without ever holding
    more than limit + 1 of them: a small body cannot make the server inflate gigabytes."""
    if not raw:
        return raw
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip header and trailer, CRC checked
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        return b""
    if len(body) > limit:
        raise InflatedTooLarge(limit)
    if not inflater.eof:  # truncated
        return b""
    return body
