"""TensorProto <-> numpy, written the way TF Serving writes tensors.

TF Serving answers with `Tensor::AsProtoField` (typed repeated fields such as `float_val`) unless
`--enable_serialization_as_tensor_content` asks for packed `tensor_content`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from tfstack.modelserver.errors import invalid_argument

# dtype enum -> (numpy dtype, TensorProto field holding AsProtoField values)
_FIELDS = {
    types_pb2.DT_FLOAT: (np.float32, "float_val"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val"),
    types_pb2.DT_INT32: (np.int32, "int_val"),
    types_pb2.DT_INT16: (np.int16, "int_val"),
    types_pb2.DT_INT8: (np.int8, "int_val"),
    types_pb2.DT_UINT8: (np.uint8, "int_val"),
    types_pb2.DT_UINT16: (np.uint16, "int_val"),
    types_pb2.DT_INT64: (np.int64, "int64_val"),
    types_pb2.DT_UINT32: (np.uint32, "uint32_val"),
    types_pb2.DT_UINT64: (np.uint64, "uint64_val"),
    types_pb2.DT_BOOL: (np.bool_, "bool_val"),
    types_pb2.DT_STRING: (object, "string_val"),
}


def dtype_name(dtype: int) -> str:
    """TF's DataTypeString: DT_FLOAT -> "float"."""
    try:
        return types_pb2.DataType.Name(dtype)[3:].lower()
    except ValueError:
        return f"unknown dtype {dtype}"


def numpy_dtype(dtype: int):
    """The numpy dtype for a TF dtype enum (object for strings)."""
    if dtype in _FIELDS:
        return _FIELDS[dtype][0]
    return tf.dtypes.as_dtype(dtype).as_numpy_dtype


def to_ndarray(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    try:
        return tf.make_ndarray(proto)
    except Exception as err:  # noqa: BLE001 (any parse failure is the client's bad tensor)
        raise invalid_argument(f"tensor parsing error: {alias}") from err


def dtype_of(array: np.ndarray) -> int:
    if array.dtype == object or array.dtype.kind in "SU":
        return types_pb2.DT_STRING
    return tf.dtypes.as_dtype(array.dtype).as_datatype_enum


def to_proto(array: np.ndarray, as_content: bool = False) -> tensor_pb2.TensorProto:
    dtype = dtype_of(array)
    if as_content and dtype != types_pb2.DT_STRING:
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
        ),
    )
    field = _FIELDS.get(dtype, (None, None))[1]
    if field is None:  # half, complex, ...: fall back to the packed form
        return tf.make_tensor_proto(array)
    flat = array.ravel()
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    else:
        getattr(proto, field).extend(flat.tolist())
    return proto
