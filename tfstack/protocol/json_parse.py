"""Request bodies as JSON, failing with the texts TF Serving's REST API answers.

TF Serving parses with rapidjson (`kParseNanAndInfFlag`) and reports
`JSON Parse error: <rapidjson's English message> at offset: <n>` (util/json_tensor.cc ParseJson);
an empty body is `JSON Parse error: The document is empty`. Python's json module finds the same
mistakes under other names, so its message is translated here: a client that matches on TF
Serving's text (`JSON Parse error: Invalid value`) sees the same text from the gateway and the
model server.
"""

from __future__ import annotations

import json

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
}
_MISSING_COMMA = {
    "{": "Missing a comma or '}' after an object member.",
    "[": "Missing a comma or ']' after an array element.",
}
_UNTERMINATED = "Unterminated string starting at"


def parse_json(raw: bytes) -> object:
    """Parse a request body. NaN/Infinity/-Infinity are accepted (as in TF Serving); nesting is
    bounded by the interpreter's recursion limit and reported as a parse error, never a crash."""
    if not raw:
        raise CodecError("JSON Parse error: The document is empty")
    if raw.isspace():
        raise _parse_error("The document is empty.", len(raw))
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _translate(exc) from None
    except UnicodeDecodeError as exc:
        raise _parse_error("Invalid encoding in string.", exc.start) from None
    except RecursionError:
        raise CodecError("JSON Parse error: nesting too deep") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise CodecError(f"JSON Parse error: {exc}") from None


def _parse_error(text: str, offset: int) -> CodecError:
    return CodecError(f"JSON Parse error: {text} at offset: {offset}")


def _translate(exc: json.JSONDecodeError) -> CodecError:
    if exc.msg.startswith(_UNTERMINATED):
        # rapidjson reads on to the end of the body looking for the closing quote.
        return _parse_error("Missing a closing quotation mark in string.", len(exc.doc))
    if exc.msg == "Expecting ',' delimiter":
        return _parse_error(_MISSING_COMMA[_innermost_open(exc.doc, exc.pos)], exc.pos)
    for prefix, (text, shift) in _RAPIDJSON_TEXT.items():
        if exc.msg.startswith(prefix):
            return _parse_error(text, exc.pos + shift)
    return _parse_error(exc.msg, exc.pos)


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
