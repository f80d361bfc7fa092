"""TensorProto <-> JSON values, driven by one table of TensorFlow dtypes.

Pure functions used by gateway.codec. JSON -> tensor follows TF Serving's `util/json_tensor.cc`
(shape from the nesting, one JSON kind per dtype, `{"b64": ...}` for strings); tensor -> JSON reads
both the typed `*_val` fields and packed `tensor_content`. Problems are raised as `ValueProblem`,
which the codec turns into a client error that names the input.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from itertools import chain

import numpy as np

from gateway.proto import tensor_pb2, types_pb2

# Deeper JSON nesting than this is refused before any work is done on it. TensorFlow itself caps
# tensor rank at 254; no served model takes anything near this.
MAX_RANK = 32
# Error messages quote the offending JSON value; a hostile body must not make them huge.
_MAX_QUOTED_CHARS = 256

_FLOAT32_MAX_INT = (1 << 24) - 1  # largest integer a float32 holds exactly (TF's IsLosslessDecimal)
_FLOAT64_MAX_INT = (1 << 53) - 1


class ValueProblem(Exception):
    """A JSON value that does not fit the tensor it should become (message in TF's words)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class DType:
    """How one TensorFlow dtype travels: numpy type, TensorProto field, accepted JSON kind."""

    enum: int
    numpy: np.dtype | None  # None: no packed representation the gateway builds or reads
    field: str  # TensorProto repeated field holding typed values ("" = none)
    json_kind: str  # "float" | "int" | "uint" | "bool" | "string" | "" (not convertible from JSON)

    @property
    def name(self) -> str:
        """TF's DataTypeString: DT_FLOAT -> "float"."""
        try:
            return types_pb2.DataType.Name(self.enum)[3:].lower()
        except ValueError:  # a DataType newer than our .proto
            return f"DataType({self.enum})"


def _dt(name: str, numpy: str | None, field: str, json_kind: str) -> DType:
    return DType(types_pb2.DataType.Value(name), np.dtype(numpy) if numpy else None, field,
                 json_kind)


# The one table. `json_kind` "" marks dtypes TF Serving's REST API cannot build from JSON (501).
DTYPES: dict[int, DType] = {d.enum: d for d in (
    _dt("DT_FLOAT", "<f4", "float_val", "float"),
    _dt("DT_DOUBLE", "<f8", "double_val", "float"),
    _dt("DT_INT32", "<i4", "int_val", "int"),
    _dt("DT_INT16", "<i2", "int_val", "int"),
    _dt("DT_INT8", "i1", "int_val", "int"),
    _dt("DT_UINT8", "u1", "int_val", "int"),
    _dt("DT_UINT16", "<u2", "int_val", ""),
    _dt("DT_INT64", "<i8", "int64_val", "int"),
    _dt("DT_UINT32", "<u4", "uint32_val", "uint"),
    _dt("DT_UINT64", "<u8", "uint64_val", "uint"),
    _dt("DT_BOOL", "?", "bool_val", "bool"),
    _dt("DT_STRING", None, "string_val", "string"),
    _dt("DT_HALF", "<f2", "half_val", ""),
    _dt("DT_BFLOAT16", None, "half_val", ""),
    _dt("DT_COMPLEX64", "<c8", "scomplex_val", ""),
    _dt("DT_COMPLEX128", "<c16", "dcomplex_val", ""),
)}

# JSON kinds: the Python types json.loads produces that each accepts (bool is not an int here).
_ACCEPTED = {
    "float": (float, int),
    "int": (int,),
    "uint": (int,),
    "bool": (bool,),
    "string": (str, dict),
}


def dtype_info(enum: int) -> DType:
    """The table row for a DataType enum value (a bare row for dtypes outside the table)."""
    return DTYPES.get(enum) or DType(enum, None, "", "")


def dtype_name(enum: int) -> str:
    return dtype_info(enum).name


# --- JSON text helpers -------------------------------------------------------------------------

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
    """A JSON value as text for an error message, cut short if long."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=True, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > _MAX_QUOTED_CHARS:
        text = text[:_MAX_QUOTED_CHARS] + "...(truncated)"
    return text


def _type_error(value: object, dtype: DType) -> ValueProblem:
    return ValueProblem(f"JSON Value: {quote(value)} Type: {json_type(value)} "
                        f"is not of expected type: {dtype.name}")


# --- JSON -> TensorProto -----------------------------------------------------------------------

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

    Works level by level over whole lists (not element by element), so the Python-level work is
    one step per list, and the leaves are gathered with C-speed chaining.
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
    text = value["b64"]
    try:
        # absl::Base64Unescape takes the standard alphabet with or without padding.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueProblem("Unable to base64 decode") from None


def check_kinds(leaves: list, dtype: DType) -> None:
    """Every leaf must be a JSON kind the dtype accepts; the first that is not is reported."""
    if not leaves:
        return
    if not dtype.json_kind:
        first = leaves[0]
        if isinstance(first, dict):
            raise _type_error(first, dtype)
        raise ValueProblem(f"Conversion of JSON Value: {quote(first)} to type: {dtype.name}",
                           status=501)
    accepted = _ACCEPTED[dtype.json_kind]
    if set(map(type, leaves)).issubset(accepted):
        return
    bad = next(v for v in leaves if type(v) not in accepted)
    raise _type_error(bad, dtype)


def make_tensor(leaves: list, shape: list[int], dtype: DType) -> tensor_pb2.TensorProto:
    """A TensorProto from validated leaves: packed tensor_content for numbers, string_val else."""
    check_kinds(leaves, dtype)
    tensor = tensor_pb2.TensorProto(dtype=dtype.enum)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    if dtype.json_kind == "string":
        tensor.string_val.extend(_to_bytes(v) for v in leaves)
    elif leaves:
        tensor.tensor_content = _to_array(leaves, dtype).tobytes()
    return tensor


def _to_bytes(value: str | dict) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return decode_b64(value)


def _to_array(leaves: list, dtype: DType) -> np.ndarray:
    if dtype.json_kind == "float":
        return _float_array(leaves, dtype)
    if dtype.json_kind == "bool":
        return np.array(leaves, dtype=dtype.numpy)
    # Stricter than TF Serving, which stores any int32 in int_val and lets TensorFlow wrap it.
    info = np.iinfo(dtype.numpy)
    if max(leaves) > info.max or min(leaves) < info.min:
        raise _type_error(next(v for v in leaves if not info.min <= v <= info.max), dtype)
    return np.array(leaves, dtype=dtype.numpy)


def _float_array(leaves: list, dtype: DType) -> np.ndarray:
    """TF's IsLosslessDecimal: ints must be exact in the float type, finite values in range."""
    single = dtype.numpy.itemsize == 4
    limit_int = _FLOAT32_MAX_INT if single else _FLOAT64_MAX_INT
    kinds = set(map(type, leaves))
    try:
        arr = np.array(leaves, dtype=np.float64)
    except OverflowError:  # an int beyond any double
        arr = None
    if int in kinds and (arr is None or kinds != {int} or float(np.abs(arr).max()) > limit_int):
        bad = next((v for v in leaves if type(v) is int and abs(v) > limit_int), None)
        if bad is not None:
            raise _lossy(bad, dtype)
    if single:
        too_big = np.isfinite(arr) & (np.abs(arr) > float(np.finfo(np.float32).max))
        if too_big.any():
            raise _lossy(leaves[int(np.argmax(too_big))], dtype)
    return arr.astype(dtype.numpy)


def _lossy(value: object, dtype: DType) -> ValueProblem:
    return ValueProblem(f"Cannot convert JSON value: {quote(value)} to {dtype.name} "
                        "without loss of precision.")


# --- TensorProto -> numpy / JSON ---------------------------------------------------------------

def tensor_shape(tensor: tensor_pb2.TensorProto) -> list[int]:
    return [d.size for d in tensor.tensor_shape.dim]


def to_array(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    """The tensor's values as a numpy array of its shape (strings: an object array of bytes)."""
    dtype = dtype_info(tensor.dtype)
    shape = tensor_shape(tensor)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dtype.json_kind == "string":
        values = np.empty(len(tensor.string_val), dtype=object)
        values[:] = list(tensor.string_val)
    elif dtype.enum == types_pb2.DT_BFLOAT16:
        # bfloat16 is the top half of a float32.
        bits = _typed_or_content(tensor, dtype, np.dtype("<u2"))
        values = (bits.astype(np.uint32) << 16).view(np.float32)
    elif dtype.enum == types_pb2.DT_HALF:
        values = _typed_or_content(tensor, dtype, np.dtype("<u2")).view(np.float16)
    elif dtype.numpy is not None and dtype.numpy.kind in "biuf":
        values = _typed_or_content(tensor, dtype, dtype.numpy)
    else:
        raise ValueProblem(f"Failed to write JSON value for tensor type: {dtype.name}")
    return _fill(values, count).reshape(shape)


def _typed_or_content(tensor, dtype: DType, packed: np.dtype) -> np.ndarray:
    if tensor.tensor_content:
        if len(tensor.tensor_content) % packed.itemsize:
            raise ValueProblem(f"tensor_content of {len(tensor.tensor_content)} bytes is not a "
                               f"whole number of {dtype.name} values")
        return np.frombuffer(tensor.tensor_content, dtype=packed)
    values = getattr(tensor, dtype.field)
    if dtype.field == "half_val":
        return np.array(values, dtype=np.int32).astype(np.uint16)
    return np.array(values, dtype=packed)


def _fill(values: np.ndarray, count: int) -> np.ndarray:
    """TF's rule: fewer typed values than elements repeats the last one (none means zeros)."""
    if values.size == count:
        return values
    if values.size == 0:
        return np.zeros(count, dtype=values.dtype) if values.dtype != object \
            else np.full(count, b"", dtype=object)
    if values.size < count:
        return np.concatenate([values, np.repeat(values[-1:], count - values.size)])
    raise ValueProblem(f"tensor has {values.size} values but its shape holds {count}")


def to_json_value(array: np.ndarray, as_b64: bool) -> object:
    """A numpy array (any rank) as nested JSON-ready lists with TF Serving's value formatting."""
    if array.dtype == object:
        if as_b64:
            encoded = [{"b64": base64.b64encode(b).decode("ascii")} for b in array.ravel()]
        else:
            encoded = [b.decode("utf-8", "replace") for b in array.ravel()]
        out = np.empty(len(encoded), dtype=object)
        out[:] = encoded
        return out.reshape(array.shape).tolist()
    if array.dtype.kind == "f" and array.dtype.itemsize < 8:
        # Shortest text that round-trips the float32 value ("0.1", not 0.10000000149011612),
        # as TF Serving writes it; json then prints that double as the same short text.
        array = array.astype(np.float32).astype(str).astype(np.float64)
    return array.tolist()


def float_json(value: float) -> float:
    """One float32 value with the shortest round-trip text (classify scores, regress values)."""
    return float(str(np.float32(value)))
