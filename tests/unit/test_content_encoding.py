"""Gzip request bodies (tfstack/protocol/content_encoding.py), read as TF Serving's HTTP server
reads them: inflated when Content-Encoding says gzip, empty when they cannot be, bounded."""

from __future__ import annotations

import gzip
import tracemalloc

import pytest

from tfstack.protocol.content_encoding import InflatedTooLarge, inflate, is_gzip

BODY = b'{"instances": [1.0, 2.0, 5.0]}'


@pytest.mark.parametrize(
    ("header", "expected"),
    [("gzip", True), ("x-gzip", True), ("gzip, identity", True), ("GZip", True),
     ("deflate", False), ("identity", False), ("", False), (None, False)],
)  # fmt: skip
def test_which_content_encodings_are_inflated(header, expected):
    assert is_gzip(header) is expected


def test_a_gzip_body_inflates_to_what_was_compressed():
    assert inflate(gzip.compress(BODY), 1000) == BODY
    assert inflate(gzip.compress(BODY), len(BODY)) == BODY  # exactly at the limit
    assert inflate(b"", 1000) == b""


@pytest.mark.parametrize(
    "broken",
    [BODY, gzip.compress(BODY)[:-4], gzip.compress(BODY)[:12], b"\x1f\x8b" + b"\x00" * 20],
    ids=["not gzip", "no trailer", "cut in the data", "bad header"],
)
def test_what_gzip_cannot_read_becomes_an_empty_body(broken):
    assert inflate(broken, 1000) == b""


def test_a_bad_checksum_is_unreadable():
    data = bytearray(gzip.compress(BODY))
    data[-8] ^= 0xFF  # CRC32 in the trailer
    assert inflate(bytes(data), 1000) == b""


def test_a_body_past_the_limit_is_refused_without_inflating_it_all():
    bomb = gzip.compress(b"\0" * 200_000_000)  # ~200 kB on the wire
    tracemalloc.start()
    try:
        with pytest.raises(InflatedTooLarge) as err:
            inflate(bomb, 1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.limit == 1_000_000
    assert peak < 5_000_000, f"inflated {peak} bytes to refuse a 1 MB limit"
