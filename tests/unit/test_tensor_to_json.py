"""The two TensorProto readers (tensor_to_json.py) answer alike: `read_tensor`'s plain-Python
`Dense`, which lets a gateway worker answer small predictions without importing numpy, and
`to_array`'s numpy array, which the model server and large tensors use. Same JSON text for every
dtype, layout (typed fields, packed tensor_content, values repeated to fill the shape, none at
all) and shape, and the same error for every malformed tensor."""

from __future__ import annotations

import itertools
import math
import struct
import subprocess
import sys

import numpy as np
import pytest

from tfstack.protocol import codec
from tfstack.protocol.dtypes import DT_BFLOAT16, DT_HALF, DTYPES, ValueProblem, dtype_info
from tfstack.protocol.proto import tensor_pb2, types_pb2
from tfstack.protocol.tensor_to_json import (
    PURE_MAX_FLOAT32_TEXT,
    Dense,
    _read_dense,
    read_tensor,
    tensor_shape,
    to_array,
    to_json_value,
)

FLOATS = [0.1, 1 / 3, -2.5, 3.0, 1e-40, 3.4028235e38, -0.0, math.inf, -math.inf, math.nan, 1e7]
SHAPES = [(), (1,), (3,), (2, 3), (2, 0), (0,), (0, 3), (4, 1, 2)]


def _values(enum: int, count: int) -> list:
    if enum in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, DT_HALF, DT_BFLOAT16):
        return list(itertools.islice(itertools.cycle(FLOATS), count))
    if enum == types_pb2.DT_BOOL:
        return [i % 3 == 0 for i in range(count)]
    if enum == types_pb2.DT_STRING:
        return [f"s{i}-\u00e9".encode() + b"\xff" for i in range(count)]
    signed = enum in (types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32,
                      types_pb2.DT_INT64)
    return [(i * 37 % 100) * (-1 if signed and i % 2 else 1) for i in range(count)]


def _tensor(enum: int, shape: tuple[int, ...], values: list, packed: bool):
    tensor = tensor_pb2.TensorProto(dtype=enum)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    if enum in (DT_HALF, DT_BFLOAT16):
        if enum == DT_HALF:
            with np.errstate(over="ignore"):  # 3.4e38 overflows to inf: fine, both read inf
                bits = np.array(values, dtype=np.float16).view(np.uint16)
        else:
            bits = (np.array(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
        if packed:
            tensor.tensor_content = bits.astype("<u2").tobytes()
        else:
            tensor.half_val.extend(bits.astype(int).tolist())
        return tensor
    info = dtype_info(enum)
    if packed and info.numpy is not None:
        tensor.tensor_content = np.array(values, dtype=info.numpy).tobytes()
    else:
        getattr(tensor, info.field).extend(values)
    return tensor


def _outcome(read, tensor, as_b64: bool) -> str:
    try:
        return codec.dumps(to_json_value(read(tensor), as_b64)).decode()
    except ValueProblem as problem:
        return f"error: {problem.message}"


def _pure(tensor):
    """`read_tensor`'s plain-Python reader, whatever the tensor's size."""
    return _read_dense(tensor, dtype_info(tensor.dtype), tensor_shape(tensor))


READABLE = [e for e, d in DTYPES.items() if d.numpy or e in (DT_BFLOAT16, types_pb2.DT_STRING)]


@pytest.mark.parametrize("enum", READABLE, ids=lambda e: types_pb2.DataType.Name(e))
def test_both_readers_write_the_same_json(enum):
    checked = 0
    for shape, packed, stored, as_b64 in itertools.product(
        SHAPES, (False, True), ("all", "fewer", "none", "more"), (False, True)
    ):
        if packed and enum == types_pb2.DT_STRING:
            continue
        count = math.prod(shape)
        n = {"all": count, "fewer": min(1, count), "none": 0, "more": count + 2}[stored]
        tensor = _tensor(enum, shape, _values(enum, n), packed)
        pure, numpy = _outcome(_pure, tensor, as_b64), _outcome(to_array, tensor, as_b64)
        assert pure == numpy, (shape, packed, stored, as_b64)
        checked += 1
    assert checked >= 64


@pytest.mark.parametrize(
    "fields, dims",
    [
        ({"dtype": types_pb2.DT_FLOAT, "tensor_content": b"\x00" * 7}, [2]),
        ({"dtype": types_pb2.DT_HALF, "tensor_content": b"\x00" * 3}, [2]),
        ({"dtype": types_pb2.DT_FLOAT, "float_val": [1.0]}, [-1]),
        ({"dtype": types_pb2.DT_FLOAT, "float_val": [1.0]}, [-1, -2]),
        ({"dtype": types_pb2.DT_INT32, "int_val": [1, 2, 3]}, [2]),
        ({"dtype": types_pb2.DT_COMPLEX64, "scomplex_val": [1.0, 2.0]}, [1]),
        ({"dtype": types_pb2.DT_QINT8}, [1]),
        ({"dtype": types_pb2.DT_FLOAT, "float_val": [1.0]}, [1 << 20, 1 << 20]),
    ],
)
def test_both_readers_refuse_malformed_tensors_alike(fields, dims):
    tensor = tensor_pb2.TensorProto(**fields)
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    pure, numpy = _outcome(_pure, tensor, False), _outcome(to_array, tensor, False)
    assert pure.startswith("error: ") and pure == numpy


def test_small_tensors_are_read_without_numpy_and_large_ones_with_it():
    def floats(n):
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT, float_val=[0.1] * n,
            tensor_shape={"dim": [{"size": n}]},
        )

    assert isinstance(read_tensor(floats(PURE_MAX_FLOAT32_TEXT)), Dense)
    large = read_tensor(floats(PURE_MAX_FLOAT32_TEXT + 1))
    assert isinstance(large, np.ndarray)
    assert to_json_value(large, False) == [0.1] * (PURE_MAX_FLOAT32_TEXT + 1)


def test_a_small_predict_answer_never_imports_numpy():
    script = """
import sys
from tfstack.gateway import app  # everything a gateway worker imports
from tfstack.protocol import codec
from tfstack.protocol.proto import tensor_pb2, types_pb2
t = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.25, 0.5],
                           tensor_shape={"dim": [{"size": 1}, {"size": 2}]})
s = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"a"],
                           tensor_shape={"dim": [{"size": 1}]})
out = codec.encode_predict_response({"y": t, "z_bytes": s}, row_format=True)
assert out == {"predictions": [{"y": [0.25, 0.5], "z_bytes": {"b64": "YQ=="}}]}, out
print("numpy" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_half_and_bfloat16_bits_decode_like_numpy():
    bits = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0xFC00]
    half = tensor_pb2.TensorProto(dtype=DT_HALF, half_val=bits,
                                  tensor_shape={"dim": [{"size": len(bits)}]})
    assert to_json_value(_pure(half), False) == [1.0, -2.0, 65504.0, 5.96046448e-08, math.inf,
                                                 -math.inf]
    packed = struct.pack("<2H", 0x3F80, 0xC049)  # bfloat16 1.0 and -3.140625
    bf = tensor_pb2.TensorProto(dtype=DT_BFLOAT16, tensor_content=packed,
                                tensor_shape={"dim": [{"size": 2}]})
    assert to_json_value(_pure(bf), False) == [1.0, -3.140625]
