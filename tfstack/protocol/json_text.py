"""A JSON value as TF Serving prints it inside an error message (util/json_tensor.cc
JsonValueToString), so an error text can be compared whole, not only by substring.

TF Serving parses the body with rapidjson and prints the offending value back with rapidjson's
PrettyWriter (4-space indent, one member or element per line). A lone decimal goes through
WriteDecimal instead: TF's shortest text as a float (`%.6g` if it reads back, else `%.9g`) when
the value fits a float, as a double (`%.6g`, else `%.17g`) when not, `.0` added to a whole number.
A decimal inside an array or object is rapidjson's own Writer::Double (shortest digits, `1e30`,
`0.001234`, `12340000000.0`); a NaN or infinity there stops the writer, so the text ends there,
as TF Serving's does.

Python's parser differs from rapidjson's in what the value is, not only how it prints: rapidjson
keeps an integer that fits int64/uint64 and reads a larger one as a double; here the same rules
are applied to Python's exact integers.
"""

from __future__ import annotations

import math
import struct

FLOAT_RANGE = 3.4028234e38  # rapidjson's IsFloat(): a double in this range prints as a float
_F32 = struct.Struct("<f")
_INDENT = "    "
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}


class _Stop(Exception):
    """rapidjson's Writer refused a value (NaN or infinity): the text ends where it stopped."""


def value_text(value: object) -> str:
    """JsonValueToString(value): a lone decimal through WriteDecimal, anything else written."""
    if isinstance(value, float):
        return write_decimal(value)
    if _is_big_int(value):  # rapidjson holds it as a double
        return write_decimal(_as_double(value))
    out: list[str] = []
    try:
        _write(value, 0, out)
    except _Stop:
        pass
    return "".join(out)


def error_document(message: str, **extra: object) -> str:
    """An error answer as TF Serving writes it (json_tensor.cc MakeJsonFromStatus, PrettyWriter):
    `{\n    "error": "<message>"\n}`, members the gateway adds (a `hint`) after it."""
    return value_text({"error": message, **extra})


def write_decimal(value: float) -> str:
    """WriteDecimal<float> for a double in float range (rapidjson's GetFloat() rounds it),
    WriteDecimal<double> otherwise."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if -FLOAT_RANGE <= value <= FLOAT_RANGE:
        text = float32_text(_F32.unpack(_F32.pack(value))[0])
    else:
        text = f"{value:.6g}"
        if float(text) != value:
            text = f"{value:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def float32_text(value: float) -> str:
    """TF's text for a finite float32 value (held in a double): `%.6g` if that reads back as the
    same float32, else `%.9g`, which always does."""
    short = f"{value:.6g}"
    try:
        if _F32.unpack(_F32.pack(float(short)))[0] == value:
            return short
    except OverflowError:  # rounded past the float32 range
        pass
    return f"{value:.9g}"


def writer_double(value: float) -> str:
    """rapidjson's Writer::Double (internal/dtoa.h): shortest digits, then Prettify's layout."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    digits, k = _shortest(abs(value))
    length = len(digits)
    kk = length + k  # 10^(kk-1) <= value < 10^kk
    if 0 <= k and kk <= 21:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        text = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        text = "0." + "0" * -kk + digits
    elif length == 1:
        text = digits + "e" + str(kk - 1)
    else:
        text = digits[0] + "." + digits[1:] + "e" + str(kk - 1)
    return sign + text


def _shortest(value: float) -> tuple[str, int]:
    """Digits (no leading or trailing zeros) and k, value == int(digits) * 10**k; repr's digits
    are the shortest that read back, as Grisu2's nearly always are."""
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    k = (int(exponent) if exponent else 0) - len(fraction)
    stripped = digits.rstrip("0")
    return stripped, k + len(digits) - len(stripped)


def _as_double(value: float | int) -> float:
    """The double rapidjson holds; an integer past a double's range (json_parse.py refuses it
    before it gets here) is written as an infinity would be."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_big_int(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and not -(2**63) <= value < 2**64)


def _write(value: object, level: int, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, float) or _is_big_int(value):
        number = _as_double(value)
        if math.isnan(number) or math.isinf(number):
            raise _Stop()
        out.append(writer_double(number))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, dict):
        _container("{", "}", list(value.items()), level, out)
    elif isinstance(value, list):
        _container("[", "]", value, level, out)
    else:
        out.append(_string(str(value)))


def _container(open_: str, close: str, items: list, level: int, out: list[str]) -> None:
    out.append(open_)
    indent = _INDENT * (level + 1)
    for index, item in enumerate(items):
        out.append(",\n" if index else "\n")
        out.append(indent)
        if open_ == "{":
            key, item = item
            out.append(_string(key) + ": ")
        _write(item, level + 1, out)
    if items:
        out.append("\n" + _INDENT * level)
    out.append(close)


def _string(text: str) -> str:
    """rapidjson's Writer::WriteString: quote, backslash and control characters escaped
    (`\\u001F`, upper-case hex), everything else, non-ASCII included, as is (a lone surrogate,
    which rapidjson's parser refuses and Python's lets through, is escaped: the text stays valid
    UTF-8)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    parts = []
    for char in text:
        if char in _ESCAPES:
            parts.append(_ESCAPES[char])
        elif char < " " or "\ud800" <= char <= "\udfff":  # a lone surrogate: only escaped
            parts.append(f"\\u{ord(char):04X}")
        else:
            parts.append(char)
    return '"' + "".join(parts) + '"'
