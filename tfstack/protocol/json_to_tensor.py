"""JSON values -> TensorProto, following TF Serving's util/json_tensor.cc.

The shape comes from the nesting (first elements, then every list is checked against it); every
leaf must be the JSON kind the signature's dtype accepts; numbers are packed into
`tensor_content` in one C call (struct), strings go to `string_val` (`{"b64": ...}` decoded).
Work is linear in the body and nesting is capped, whatever the client sends.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import struct
from itertools import chain

from tfstack.protocol.dtypes import DType, ValueProblem, quote, type_error
from tfstack.protocol.proto import tensor_pb2

# Deeper JSON nesting than this is refused before any work is done on it (TensorFlow's own limit
# on tensor rank is 254; no served model takes anything near this).
MAX_RANK = 32

# absl's base64 alphabet and padding characters, and its ascii_isspace.
_B64 = re.compile(r"([A-Za-z0-9+/]*)([=.]*)")
_B64_SPACE = re.compile(r"[ \t\n\v\f\r]+")

# TF's IsLosslessDecimal: the largest integers a float / double holds exactly.
_MAX_EXACT_INT = {"f": (1 << 24) - 1, "d": (1 << 53) - 1}

# The Python types json.loads produces that each JSON kind accepts (a bool is not a number here).
_ACCEPTED = {
    "float": (float, int),
    "int": (int,),
    "bool": (bool,),
    "string": (str, dict),
}


def dense_shape(value: object) -> list[int]:
    """Shape from the nesting, following first elements (TF's GetDenseTensorShape)."""
    shape: list[int] = []
    while isinstance(value, list):
        if len(shape) == MAX_RANK:
            raise ValueProblem(f"JSON list nesting deeper than {MAX_RANK} levels")
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def flatten(value: object, shape: list[int]) -> list:
    """Row-major leaves of a nested list, checking it is dense with exactly `shape`.

    Works level by level over whole lists, so the Python-level work is one step per list (not per
    value), and the leaves are gathered with C-speed chaining.
    """
    rank = len(shape)
    nodes = [value]
    for level, want in enumerate(shape):
        for node in nodes:
            if not isinstance(node, list):
                raise ValueProblem(f"JSON Value: {quote(node)} found at incorrect level: "
                                   f"{level + 1} in the JSON DOM. Expected at level: {rank}")
            if len(node) != want:
                raise ValueProblem(f"Encountered list at unexpected size: {len(node)} at level: "
                                   f"{level} expected size: {want}")
        nodes = list(chain.from_iterable(nodes))
    if list in set(map(type, nodes)):
        raise ValueProblem(f"Encountered list at unexpected level: {rank} expected < {rank}")
    return nodes


def is_b64_object(value: object) -> bool:
    """`{"b64": "<base64>"}`: exactly one key, a string (TF's IsValBase64Object)."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64(value: object) -> bytes:
    if not is_b64_object(value):
        raise ValueProblem(f"JSON Value: {quote(value)} not formatted correctly for base64 data")
    decoded = b64_unescape(value["b64"])
    if decoded is None:
        raise ValueProblem("Unable to base64 decode")
    return decoded


def b64_unescape(text: str) -> bytes | None:
    """absl::Base64Unescape, which TF Serving decodes `{"b64": ...}` with: the standard alphabet;
    white space anywhere is skipped; the padding (`=`, or absl's `.`) is either absent or exactly
    what the length calls for, and only white space may follow it. None if it refuses the text."""
    if len(text) % 4 == 0:  # the usual, canonical case in one C call
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass
    match = _B64.fullmatch(_B64_SPACE.sub("", text))
    if match is None:
        return None
    data, padding = match.groups()
    missing = -len(data) % 4
    if missing == 3 or (padding and len(padding) != missing):  # 6 bits left over; wrong padding
        return None
    return base64.b64decode(data + "=" * missing)


def make_tensor(leaves: list, shape: list[int], dtype: DType) -> tensor_pb2.TensorProto:
    """A TensorProto of `dtype` and `shape` from row-major leaves (as `flatten` returns them)."""
    kinds = _check_kinds(leaves, dtype)
    tensor = tensor_pb2.TensorProto(dtype=dtype.enum)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    if dtype.json_kind == "string":
        tensor.string_val.extend(_to_bytes(v) for v in leaves)
    elif leaves:
        tensor.tensor_content = _pack(leaves, kinds, dtype)
    return tensor


def _check_kinds(leaves: list, dtype: DType) -> set[type]:
    """Every leaf must be a JSON kind the dtype accepts; the first that is not is reported."""
    kinds = set(map(type, leaves))
    if not leaves:
        return kinds
    if not dtype.json_kind:
        first = leaves[0]
        if isinstance(first, dict):
            raise type_error(first, dtype)
        raise ValueProblem(f"Conversion of JSON Value: {quote(first)} to type: {dtype.name}",
                           status=501)
    accepted = _ACCEPTED[dtype.json_kind]
    if not kinds.issubset(accepted):
        raise type_error(next(v for v in leaves if type(v) not in accepted), dtype)
    return kinds


def string_bytes(text: str) -> bytes:
    """A JSON string's bytes, as TF Serving hands them to the model: UTF-8, and a byte of the
    body that was not UTF-8 (json_parse.py keeps it as U+DC80..U+DCFF) as that byte."""
    return text.encode("utf-8", _RAW_BYTES)


def _raw_bytes(err: UnicodeEncodeError) -> tuple[bytes, int]:
    """Encoding error handler: U+DC80..U+DCFF are the body's own bytes; another lone surrogate
    (from a `\\u` escape) is encoded as it is (surrogatepass)."""
    chunk = err.object[err.start : err.end]
    return b"".join(
        bytes((ord(char) - 0xDC00,)) if "\udc80" <= char <= "\udcff"
        else char.encode("utf-8", "surrogatepass")
        for char in chunk
    ), err.end


_RAW_BYTES = "tfstack-json-raw-bytes"
codecs.register_error(_RAW_BYTES, _raw_bytes)


def _to_bytes(value: str | dict) -> bytes:
    if isinstance(value, str):
        return string_bytes(value)
    return decode_b64(value)


def _pack(leaves: list, kinds: set[type], dtype: DType) -> bytes:
    """Little-endian packed values; struct refuses out-of-range ints and too-large floats."""
    code = dtype.struct_code
    if dtype.json_kind == "float" and int in kinds:
        _check_exact_ints(leaves, kinds, dtype)
    try:
        return struct.pack(f"<{len(leaves)}{code}", *leaves)
    except (struct.error, OverflowError):
        pass
    packer = struct.Struct(f"<{code}")
    for value in leaves:  # find the value to name (only on the error path)
        try:
            packer.pack(value)
        except (struct.error, OverflowError):
            if dtype.json_kind == "float":
                raise _lossy(value, dtype) from None
            # Stricter than TF Serving, which would store any int32 and let TensorFlow wrap it.
            raise type_error(value, dtype) from None
    raise ValueProblem(f"could not pack values as {dtype.name}")


def _check_exact_ints(leaves: list, kinds: set[type], dtype: DType) -> None:
    limit = _MAX_EXACT_INT[dtype.struct_code]
    if kinds == {int} and -limit <= min(leaves) and max(leaves) <= limit:
        return
    for value in leaves:
        if type(value) is int and abs(value) > limit:
            raise _lossy(value, dtype)


def _lossy(value: object, dtype: DType) -> ValueProblem:
    return ValueProblem(f"Cannot convert JSON value: {quote(value)} to {dtype.name} "
                        "without loss of precision.")
