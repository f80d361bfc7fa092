"""Request bodies as JSON, failing with the texts TF Serving's REST API answers.

TF Serving parses with rapidjson (`kParseNanAndInfFlag`) and reports
`JSON Parse error: <rapidjson's English message> at offset: <n>` (util/json_tensor.cc ParseJson);
an empty body is `JSON Parse error: The document is empty`. Python's json module finds the same
mistakes under other names, so its message is translated here: a client that matches on TF
Serving's text (`JSON Parse error: Invalid value`) sees the same text from the gateway and the
model server.

rapidjson reads the body as UTF-8 from memory (`EncodedInputStream<UTF8<>, MemoryStream>`): it
skips a UTF-8 byte-order mark, and its offsets count bytes, the mark included. So here: the body is
decoded as UTF-8 (not with json's guess of UTF-16 or UTF-32, which TF Serving never makes) and an
error's offset is the byte offset in the body as sent.
"""

from __future__ import annotations

import json
import math
import re

from tfstack.protocol.errors import CodecError

# json.JSONDecodeError.msg (prefix) -> (rapidjson's GetParseError_En text, offset shift).
# The shift moves Python's position to the byte rapidjson reports.
_RAPIDJSON_TEXT = {
    "Expecting value": ("Invalid value.", 0),
    "Extra data": ("The document root must not be followed by other values.", 0),
    "Expecting property name enclosed in double quotes": ("Missing a name for object member.", 0),
    "Expecting ':' delimiter": ("Missing a colon after a name of object member.", 0),
    "Invalid control character at": ("Invalid encoding in string.", 0),
    "Invalid \\uXXXX escape": ("Incorrect hex digit after \\u escape in string.", -1),
    "Invalid \\escape": ("Invalid escape character in string.", 0),
    "Unexpected UTF-8 BOM": ("Invalid value.", 0),  # a second mark, where a value should be
}
_MISSING_COMMA = {
    "{": "Missing a comma or '}' after an object member.",
    "[": "Missing a comma or ']' after an array element.",
}
_UNTERMINATED = "Unterminated string starting at"
_TOO_BIG = "Number too big to be stored in double."
# A number rapidjson may refuse has an exponent of 3+ digits or 309+ digits in a row; a body
# with neither is never scanned. Both checks run in C: regexes with a literal first byte, and a
# byte search in a copy with every digit made "0" and everything else a space.
_LONG_EXPONENT = (re.compile(rb"e[+]?[0-9]{3}"), re.compile(rb"E[+]?[0-9]{3}"))
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 309
# The tokens of a JSON document that matter here: strings (skipped) and numbers.
_TOKENS = re.compile(
    rb'"(?:[^"\\]|\\.)*"|-?(?:0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?'
)


def parse_json(raw: bytes) -> object:
    """Parse a request body. NaN/Infinity/-Infinity are accepted (as in TF Serving); nesting is
    bounded by the interpreter's recursion limit and reported as a parse error, never a crash."""
    if not raw:
        raise CodecError("JSON Parse error: The document is empty")
    skipped = _byte_order_mark(raw)
    body = raw[skipped:] if skipped else raw
    if not body or body.isspace():
        raise _parse_error("The document is empty.", len(raw))
    too_big = _first_too_big_number(body) if _maybe_too_big(body) else None
    if too_big is not None:
        too_big += skipped
    try:
        parsed = json.loads(_text(body))
    except json.JSONDecodeError as exc:
        offset = _byte_offset(exc, skipped)
        if too_big is not None and too_big < offset:  # rapidjson stops at the number first
            raise _parse_error(_TOO_BIG, too_big) from None
        raise _translate(exc, offset, len(raw)) from None
    except RecursionError:
        raise CodecError("JSON Parse error: nesting too deep") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        if too_big is not None:
            raise _parse_error(_TOO_BIG, too_big) from None
        raise CodecError(f"JSON Parse error: {exc}") from None
    if too_big is not None:
        raise _parse_error(_TOO_BIG, too_big)
    return parsed


def _byte_order_mark(raw: bytes) -> int:
    """How many leading bytes rapidjson skips as a UTF-8 byte-order mark: EF, then BB, then BF,
    each only if present (encodedstream.h, the UTF-8 MemoryStream specialization)."""
    skipped = 0
    for byte in (0xEF, 0xBB, 0xBF):
        if skipped < len(raw) and raw[skipped] == byte:
            skipped += 1
    return skipped


def _byte_offset(exc: json.JSONDecodeError, skipped: int) -> int:
    """Python's position (characters into the decoded text) as rapidjson's (bytes into the body)."""
    if exc.doc.isascii():
        return exc.pos + skipped
    return len(exc.doc[: exc.pos].encode("utf-8", "surrogateescape")) + skipped


def _text(body: bytes) -> str:
    """The body as text. rapidjson (no kParseValidateEncodingFlag in TF Serving) takes any byte
    inside a string as it is: a byte that is not UTF-8 is kept as U+DC80..U+DCFF
    (`json_to_tensor.string_bytes` gives the byte back); outside a string it is a syntax error at
    its place (a UTF-16 body's first byte: `Invalid value.`)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("utf-8", "surrogateescape")


def _maybe_too_big(raw: bytes) -> bool:
    return any(pattern.search(raw) for pattern in _LONG_EXPONENT) or (
        len(raw) >= len(_LONG_RUN) and _LONG_RUN in raw.translate(_DIGITS_AS_ZEROS)
    )


def _first_too_big_number(raw: bytes) -> int | None:
    """The offset of the first number rapidjson refuses as too big for a double, or None.

    Python reads `1e400` as infinity and keeps integers exact; rapidjson (reader.h ParseNumber)
    stops with kParseErrorNumberTooBig at the number's first byte when a positive exponent is
    over 308 plus the fraction's digits (even `0e400`) or when the value overflows a double."""
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token.startswith(b'"'):
            continue
        fraction, exponent = match.group(1, 2)
        if exponent is not None and not exponent.startswith(b"-"):
            digits = exponent.lstrip(b"+").lstrip(b"0")
            # Compared by length first: int() refuses strings past 4,300 digits.
            if len(digits) > 6 or int(digits or b"0") > 308 + len(fraction or b""):
                return match.start()
        if math.isinf(float(token)):  # a valid number token: float() gives inf, never raises
            return match.start()
    return None


def _parse_error(text: str, offset: int) -> CodecError:
    return CodecError(f"JSON Parse error: {text} at offset: {offset}")


def _translate(exc: json.JSONDecodeError, offset: int, length: int) -> CodecError:
    """`offset`: where Python stopped, in bytes into the body; `length`: the body's bytes."""
    if exc.msg.startswith(_UNTERMINATED):
        # rapidjson reads on to the end of the body looking for the closing quote.
        return _parse_error("Missing a closing quotation mark in string.", length)
    if exc.msg == "Expecting ',' delimiter":
        return _parse_error(_MISSING_COMMA[_innermost_open(exc.doc, exc.pos)], offset)
    for prefix, (text, shift) in _RAPIDJSON_TEXT.items():
        if exc.msg.startswith(prefix):
            return _parse_error(text, offset + shift)
    return _parse_error(exc.msg, offset)


def _innermost_open(doc: str, end: int) -> str:
    """"{" or "[": the bracket still open at `end` in a document that parsed fine up to there."""
    stack: list[str] = []
    in_string = escaped = False
    for char in doc[:end]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]":
            stack.pop()
    return stack[-1] if stack else "["
