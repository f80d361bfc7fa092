"""TensorProto -> JSON values, written the way TF Serving writes them (util/json_tensor.cc).

Reads both the typed `*_val` fields (TF Serving's default) and packed `tensor_content`
(`--enable_serialization_as_tensor_content`, or any client-built tensor). Floats come out with
TF's text (the shortest of 6 or 9 significant digits that round-trips, `3` as `3.0`, NaN and
±Infinity tokens), integers as JSON numbers (int64 too), `_bytes` strings as `{"b64": ...}`.
"""

from __future__ import annotations

import base64
import math
import struct

import numpy as np

from tfstack.protocol.dtypes import DT_BFLOAT16, DT_HALF, DType, ValueProblem, dtype_info
from tfstack.protocol.proto import tensor_pb2

_UINT16 = np.dtype("<u2")
# A backend tensor may repeat one typed value over its whole shape; never expand it past this.
_MAX_ELEMENTS = 1 << 28


def tensor_shape(tensor: tensor_pb2.TensorProto) -> list[int]:
    return [d.size for d in tensor.tensor_shape.dim]


def to_array(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    """The tensor's values as a numpy array of its shape (strings: an object array of bytes)."""
    dtype = dtype_info(tensor.dtype)
    shape = tensor_shape(tensor)
    if dtype.json_kind == "string":
        values = np.empty(len(tensor.string_val), dtype=object)
        values[:] = list(tensor.string_val)
    elif dtype.enum == DT_BFLOAT16:  # the top 16 bits of a float32
        values = (_values(tensor, dtype, _UINT16).astype(np.uint32) << 16).view(np.float32)
    elif dtype.enum == DT_HALF:
        values = _values(tensor, dtype, _UINT16).view(np.float16)
    elif dtype.numpy is not None:
        values = _values(tensor, dtype, dtype.numpy)
    else:
        raise ValueProblem(f"Failed to write JSON value for tensor type: {dtype.name}")
    count = math.prod(shape)
    if min(shape, default=0) < 0 or count > _MAX_ELEMENTS:
        raise ValueProblem(f"tensor shape {shape} cannot be written as JSON")
    return _fill(values, count).reshape(shape)


def _values(tensor: tensor_pb2.TensorProto, dtype: DType, packed: np.dtype) -> np.ndarray:
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
    if values.size == count:
        return values
    if values.size > count:
        raise ValueProblem(f"tensor has {values.size} values but its shape holds {count}")
    if values.size == 0:
        return np.full(count, b"", dtype=object) if values.dtype == object \
            else np.zeros(count, dtype=values.dtype)
    return np.concatenate([values, np.repeat(values[-1:], count - values.size)])


def to_json_value(array: np.ndarray, as_b64: bool) -> object:
    """A numpy array (any rank) as nested JSON-ready Python values."""
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


def float32_text_values(array: np.ndarray) -> np.ndarray:
    """float32 values as the float64s whose shortest text (what `json` prints) is TF's text.

    TF writes `%.6g` if that reads back as the same float32, else `%.9g` (WriteDecimal), so 0.1f
    is "0.1", not 0.10000000149011612. Small arrays go value by value; large ones are rounded in
    float64 with numpy (an exact integer over an exact power of ten is the double nearest the
    decimal, whose shortest text is that decimal), leaving the few values it cannot do exactly.
    """
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
_F32 = struct.Struct("<f")


def _tf_float_text(value: float) -> float:
    if value != value or value == 0 or value in (math.inf, -math.inf):
        return value
    short = float(f"{value:.6g}")
    try:
        if _F32.unpack(_F32.pack(short))[0] == value:
            return short
    except OverflowError:  # rounded past the float32 range
        pass
    return float(f"{value:.9g}")


def float_json(value: float) -> float:
    """One float32 value (a classify score, a regress value) with TF's text."""
    return _tf_float_text(value)
