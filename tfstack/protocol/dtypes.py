"""One table of TensorFlow dtypes for the codec, plus the shared bits of its error messages.

Each row says how a dtype travels: its JSON kind (what TF Serving's REST API accepts for it),
its TensorProto typed field, its little-endian `struct` code for packed `tensor_content`, and its
numpy type for reading tensors back (a name: numpy is imported only where a tensor is too large
for the pure-Python reader, tensor_to_json.py, so a gateway worker never loads it for small ones).
"""

from __future__ import annotations

from dataclasses import dataclass

from tfstack.protocol import json_text
from tfstack.protocol.errors import CodecError
from tfstack.protocol.proto import types_pb2

# Error messages quote the offending JSON value (TF Serving quotes it whole, pretty-printed); a
# hostile body must not make them huge.
_MAX_QUOTED_CHARS = 512


class ValueProblem(CodecError):
    """A problem with one value or tensor, before the codec adds which input it is about."""


@dataclass(frozen=True)
class DType:
    enum: int
    json_kind: str  # "float" | "int" | "bool" | "string" | "" (TF Serving cannot build it: 501)
    field: str  # TensorProto repeated field with the typed values
    struct_code: str  # struct format letter for packed tensor_content ("" = not packed by us)
    numpy: str | None  # numpy's name for reading values back, little-endian (None = it cannot)

    @property
    def name(self) -> str:
        """TF's DataTypeString: DT_FLOAT -> "float"."""
        try:
            return types_pb2.DataType.Name(self.enum)[3:].lower()
        except ValueError:  # a DataType newer than our .proto
            return f"DataType({self.enum})"


def _row(name: str, json_kind: str, field: str, struct_code: str, numpy: str | None) -> DType:
    return DType(types_pb2.DataType.Value(name), json_kind, field, struct_code, numpy)


# TF Serving converts JSON to: float, double, int8/16/32, uint8, int64, uint32/64, bool, string
# (util/json_tensor.cc AddValueToTensor); everything else is UNIMPLEMENTED. Reading outputs also
# covers half and bfloat16 (half_val) and uint16.
DTYPES: dict[int, DType] = {d.enum: d for d in (
    _row("DT_FLOAT", "float", "float_val", "f", "<f4"),
    _row("DT_DOUBLE", "float", "double_val", "d", "<f8"),
    _row("DT_INT32", "int", "int_val", "i", "<i4"),
    _row("DT_INT16", "int", "int_val", "h", "<i2"),
    _row("DT_INT8", "int", "int_val", "b", "i1"),
    _row("DT_UINT8", "int", "int_val", "B", "u1"),
    _row("DT_INT64", "int", "int64_val", "q", "<i8"),
    _row("DT_UINT32", "int", "uint32_val", "I", "<u4"),
    _row("DT_UINT64", "int", "uint64_val", "Q", "<u8"),
    _row("DT_BOOL", "bool", "bool_val", "?", "?"),
    _row("DT_STRING", "string", "string_val", "", None),
    _row("DT_UINT16", "", "int_val", "", "<u2"),
    _row("DT_HALF", "", "half_val", "", "<f2"),
    _row("DT_BFLOAT16", "", "half_val", "", None),
    _row("DT_COMPLEX64", "", "scomplex_val", "", None),
    _row("DT_COMPLEX128", "", "dcomplex_val", "", None),
)}

DT_STRING = types_pb2.DT_STRING
DT_HALF = types_pb2.DT_HALF
DT_BFLOAT16 = types_pb2.DT_BFLOAT16


def dtype_info(enum: int) -> DType:
    """The table row for a DataType value (a bare, unconvertible row for any other dtype)."""
    return DTYPES.get(enum) or DType(enum, "", "", "", None)


def json_type(value: object) -> str:
    """rapidjson's type names, as TF Serving prints them in messages."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def quote(value: object) -> str:
    """A JSON value as TF Serving prints it in an error message (json_text.py), cut short if
    long."""
    try:
        text = json_text.value_text(value)
    except RecursionError:  # parsed, but too deep to print again from here
        return f"<{json_type(value)} nested too deeply to quote>"
    if len(text) > _MAX_QUOTED_CHARS:
        text = text[:_MAX_QUOTED_CHARS] + "...(truncated)"
    return text


def type_error(value: object, dtype: DType) -> ValueProblem:
    return ValueProblem(f"JSON Value: {quote(value)} Type: {json_type(value)} "
                        f"is not of expected type: {dtype.name}")
