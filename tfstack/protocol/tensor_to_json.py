"""TensorProto -> JSON values, written the way TF Serving writes them (util/json_tensor.cc).

Reads both the typed `*_val` fields (TF Serving's default) and packed `tensor_content`
(`--enable_serialization_as_tensor_content`, or any client-built tensor). Floats come out with
TF's text (the shortest of 6 or 9 significant digits that round-trips, `3` as `3.0`, NaN and
±Infinity tokens), integers as JSON numbers (int64 too), `_bytes` strings as `{"b64": ...}`.

Two readers with one behaviour: `read_tensor` reads a small tensor with plain Python (`Dense`) and
only a large one with numpy, so a gateway worker answering small predictions never imports numpy
(~11 MB of its RSS, and numpy's per-call overhead on a 10-value output); `to_array` always gives a
numpy array (the model server, which holds numpy anyway). tests/unit/test_tensor_to_json.py checks
that both give the same JSON for every dtype, layout and error.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import TYPE_CHECKING, Any

from tfstack.protocol.dtypes import DT_BFLOAT16, DT_HALF, DType, ValueProblem, dtype_info
from tfstack.protocol.json_text import float32_text
from tfstack.protocol.proto import tensor_pb2

if TYPE_CHECKING:
    import numpy as np

# A backend tensor may repeat one typed value over its whole shape; never expand it past this.
_MAX_ELEMENTS = 1 << 28
# Largest tensors `read_tensor` reads without numpy: TF's float text is per value in Python (numpy
# does it vectorised, see float32_text_values), everything else is a list either way.
PURE_MAX_FLOAT32_TEXT = 256
PURE_MAX_ELEMENTS = 1 << 16
# `struct` codes of the dtypes the codec reads but never packs (dtypes.py leaves theirs empty).
_READ_ONLY_CODES = {"<u2": "H", "<f2": "e"}
_ZERO = {"f": 0.0, "d": 0.0, "e": 0.0, "?": False}


class Dense:
    """A tensor read without numpy: its dtype, its values flat in row-major order, its shape."""

    __slots__ = ("dtype", "shape", "values")

    def __init__(self, dtype: DType, values: list, shape: tuple[int, ...]) -> None:
        self.dtype, self.values, self.shape = dtype, values, shape

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _float32_text(dtype: DType) -> bool:
    """Written with TF's float32 text, value by value (float, half, bfloat16)."""
    return dtype.enum == DT_BFLOAT16 or dtype.numpy in ("<f4", "<f2")


def read_tensor(tensor: tensor_pb2.TensorProto) -> Dense | np.ndarray:
    """The tensor's values: a `Dense` when small (see PURE_MAX_*), else a numpy array."""
    dtype = dtype_info(tensor.dtype)
    shape = tensor_shape(tensor)
    limit = PURE_MAX_FLOAT32_TEXT if _float32_text(dtype) else PURE_MAX_ELEMENTS
    if math.prod(shape) > limit and min(shape, default=0) >= 0:  # (malformed: the same error)
        return to_array(tensor)
    return _read_dense(tensor, dtype, shape)


def _read_dense(tensor: tensor_pb2.TensorProto, dtype: DType, shape: list[int]) -> Dense:
    """`to_array`'s rules and errors, in plain Python."""
    if dtype.json_kind == "string":
        values: list = list(tensor.string_val)
        zero: object = b""
    elif dtype.enum == DT_BFLOAT16:  # the top 16 bits of a float32
        bits = _dense_values(tensor, dtype, "H")
        values = list(struct.unpack(f"<{len(bits)}f",
                                    struct.pack(f"<{len(bits)}I", *(b << 16 for b in bits))))
        zero = 0.0
    elif dtype.numpy is not None:
        code = dtype.struct_code or _READ_ONLY_CODES[dtype.numpy]
        values = _dense_values(tensor, dtype, code)
        zero = _ZERO.get(code, 0)
    else:
        raise ValueProblem(f"Failed to write JSON value for tensor type: {dtype.name}")
    count = math.prod(shape)
    if min(shape, default=0) < 0 or count > _MAX_ELEMENTS:
        raise ValueProblem(f"tensor shape {shape} cannot be written as JSON")
    if len(values) > count:
        raise ValueProblem(f"tensor has {len(values)} values but its shape holds {count}")
    if len(values) < count:
        values.extend([values[-1] if values else zero] * (count - len(values)))
    return Dense(dtype, values, tuple(shape))


def _dense_values(tensor: tensor_pb2.TensorProto, dtype: DType, code: str) -> list:
    content = tensor.tensor_content
    if content:
        size = struct.calcsize(code)
        if len(content) % size:
            raise ValueProblem(f"tensor_content of {len(content)} bytes is not a whole number of "
                               f"{dtype.name} values")
        return list(struct.unpack(f"<{len(content) // size}{code}", content))
    typed = list(getattr(tensor, dtype.field))
    if dtype.field == "half_val":  # 16-bit patterns, one per int32
        bits = [v & 0xFFFF for v in typed]
        if code == "H":
            return bits
        return list(struct.unpack(f"<{len(bits)}{code}", struct.pack(f"<{len(bits)}H", *bits)))
    return typed


def _nest(values: list, shape: tuple[int, ...]) -> Any:
    """Row-major flat values as nested lists of `shape` (numpy's `reshape(shape).tolist()`)."""
    if not shape:
        return values[0]
    if 0 in shape:
        return [] if shape[0] == 0 else [_nest([], shape[1:]) for _ in range(shape[0])]
    for size in reversed(shape[1:]):
        values = [values[i:i + size] for i in range(0, len(values), size)]
    return values


def tensor_shape(tensor: tensor_pb2.TensorProto) -> list[int]:
    return [d.size for d in tensor.tensor_shape.dim]


def to_array(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    """The tensor's values as a numpy array of its shape (strings: an object array of bytes)."""
    import numpy as np  # noqa: PLC0415 (only here: see the module's docstring)

    dtype = dtype_info(tensor.dtype)
    shape = tensor_shape(tensor)
    if dtype.json_kind == "string":
        values = np.empty(len(tensor.string_val), dtype=object)
        values[:] = list(tensor.string_val)
    elif dtype.enum == DT_BFLOAT16:  # the top 16 bits of a float32
        values = (_values(tensor, dtype, np.dtype("<u2")).astype(np.uint32) << 16).view(np.float32)
    elif dtype.enum == DT_HALF:
        values = _values(tensor, dtype, np.dtype("<u2")).view(np.float16)
    elif dtype.numpy is not None:
        values = _values(tensor, dtype, np.dtype(dtype.numpy))
    else:
        raise ValueProblem(f"Failed to write JSON value for tensor type: {dtype.name}")
    count = math.prod(shape)
    if min(shape, default=0) < 0 or count > _MAX_ELEMENTS:
        raise ValueProblem(f"tensor shape {shape} cannot be written as JSON")
    return _fill(values, count).reshape(shape)


def _values(tensor: tensor_pb2.TensorProto, dtype: DType, packed: np.dtype) -> np.ndarray:
    import numpy as np  # noqa: PLC0415

    content = tensor.tensor_content
    if content:
        if len(content) % packed.itemsize:
            raise ValueProblem(f"tensor_content of {len(content)} bytes is not a whole number of "
                               f"{dtype.name} values")
        return np.frombuffer(content, dtype=packed)
    typed = list(getattr(tensor, dtype.field))  # a list first: ~4x faster than numpy iterating
    if dtype.field == "half_val":  # 16-bit patterns, one per int32
        return np.array(typed, dtype=np.int32).astype(np.uint16)
    return np.array(typed, dtype=packed)


def _fill(values: np.ndarray, count: int) -> np.ndarray:
    """TensorFlow's rule: fewer typed values than elements repeat the last one; none are zeros."""
    import numpy as np  # noqa: PLC0415

    if values.size == count:
        return values
    if values.size > count:
        raise ValueProblem(f"tensor has {values.size} values but its shape holds {count}")
    if values.size == 0:
        return np.full(count, b"", dtype=object) if values.dtype == object \
            else np.zeros(count, dtype=values.dtype)
    return np.concatenate([values, np.repeat(values[-1:], count - values.size)])


def to_json_value(array: Dense | np.ndarray, as_b64: bool) -> object:
    """A tensor's values (a `Dense` or a numpy array, any rank) as nested JSON-ready values."""
    if isinstance(array, Dense):
        return _nest(_dense_json(array, as_b64), array.shape)
    import numpy as np  # noqa: PLC0415

    if array.dtype == object:
        if as_b64:
            encoded = [{"b64": base64.b64encode(b).decode("ascii")} for b in array.ravel()]
        else:  # TF writes the bytes as they are; JSON text must be UTF-8
            encoded = [b.decode("utf-8", "replace") for b in array.ravel()]
        out = np.empty(len(encoded), dtype=object)
        out[:] = encoded
        return out.reshape(array.shape).tolist()
    if array.dtype.kind == "f" and array.dtype.itemsize < 8:
        if array.ndim == 1 and array.size <= _VECTOR_MIN:  # the common small output, no numpy
            return [_tf_float_text(v) for v in array.astype(np.float32).tolist()]
        array = float32_text_values(array)
    return array.tolist()


def _dense_json(array: Dense, as_b64: bool) -> list:
    if array.dtype.json_kind == "string":
        if as_b64:
            return [{"b64": base64.b64encode(b).decode("ascii")} for b in array.values]
        return [b.decode("utf-8", "replace") for b in array.values]
    if _float32_text(array.dtype):
        return [_tf_float_text(v) for v in array.values]
    return array.values


def float32_text_values(array: np.ndarray) -> np.ndarray:
    """float32 values as the float64s whose shortest text (what `json` prints) is TF's text.

    TF writes `%.6g` if that reads back as the same float32, else `%.9g` (WriteDecimal), so 0.1f
    is "0.1", not 0.10000000149011612. Small arrays go value by value; large ones are rounded in
    float64 with numpy (an exact integer over an exact power of ten is the double nearest the
    decimal, whose shortest text is that decimal), leaving the few values it cannot do exactly.
    """
    import numpy as np  # noqa: PLC0415

    exact = array.astype(np.float32)
    out = exact.astype(np.float64)
    if out.size <= _VECTOR_MIN:
        return np.array([_tf_float_text(v) for v in out.ravel().tolist()]).reshape(out.shape)
    todo = np.isfinite(out) & (out != 0)
    with np.errstate(all="ignore"):
        exponent = np.floor(np.log10(np.abs(np.where(todo, out, 1.0))))
        # Outside 1e-13..1e17 a power of ten for 6 or 9 digits may be inexact (10**22 is the last
        # exact one): those few values go the per-value way.
        by_value = todo & ((exponent < -13) | (exponent > 16))
        todo &= ~by_value
        for digits in (6, 9):
            decimals = digits - 1 - exponent
            scale = 10.0 ** np.clip(np.abs(decimals), 0, 22)
            rounded = np.where(decimals >= 0, np.round(out * scale) / scale,
                               np.round(out / scale) * scale)
            good = todo & (rounded.astype(np.float32) == exact)
            out = np.where(good, rounded, out)
            todo &= ~good
    by_value |= todo
    if by_value.any():
        flat, rest = out.reshape(-1), np.flatnonzero(by_value)
        flat[rest] = [_tf_float_text(v) for v in flat[rest].tolist()]
    return out


_VECTOR_MIN = 32


def _tf_float_text(value: float) -> float:
    if value != value or value == 0 or value in (math.inf, -math.inf):
        return value
    return float(float32_text(value))


def float_json(value: float) -> float:
    """One float32 value (a classify score, a regress value) with TF's text."""
    return _tf_float_text(value)
