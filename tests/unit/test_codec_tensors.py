"""The codec's building blocks: the dtype table, JSON -> TensorProto packing, TensorProto -> JSON
values (TF Serving's float text), and bounded work on hostile input."""

from __future__ import annotations

import json
import math
import struct
import time

import numpy as np
import pytest

from tfstack.protocol import codec
from tfstack.protocol.dtypes import DTYPES, dtype_info, quote
from tfstack.protocol.json_to_tensor import dense_shape, flatten, make_tensor
from tfstack.protocol.proto import tensor_pb2, types_pb2
from tfstack.protocol.tensor_to_json import (
    _tf_float_text,
    float32_text_values,
    to_array,
    to_json_value,
)

PACKED = [d for d in DTYPES.values() if d.struct_code]


@pytest.mark.parametrize("dtype", PACKED, ids=lambda d: d.name)
def test_every_packed_dtype_round_trips_little_endian(dtype):
    values = [True, False, True] if dtype.json_kind == "bool" else [0, 1, 100]
    tensor = make_tensor(values, [3], dtype)
    assert tensor.tensor_content == np.array(values, dtype=dtype.numpy).tobytes()
    assert to_array(tensor).tolist() == values


@pytest.mark.parametrize(
    "enum, name",
    [(types_pb2.DT_FLOAT, "float"), (types_pb2.DT_INT64, "int64"), (types_pb2.DT_STRING, "string"),
     (types_pb2.DT_BFLOAT16, "bfloat16"), (types_pb2.DT_QINT8, "qint8"), (99, "DataType(99)")],
)
def test_dtype_names_are_tf_data_type_strings(enum, name):
    assert dtype_info(enum).name == name


@pytest.mark.parametrize(
    "value, text",
    [
        (0.1, "0.1"), (3.0, "3.0"), (2.5, "2.5"), (1e-7, "1e-07"), (123456789.0, "123456792.0"),
        (16777217.0, "16777216.0"), (3.4028235e38, "3.40282347e+38"), (1e-45, "1.4013e-45"),
        (0.0, "0.0"), (-0.0, "-0.0"), (math.nan, "NaN"), (math.inf, "Infinity"),
        (-math.inf, "-Infinity"), (1 / 3, "0.333333343"),
    ],
)
def test_float32_text_like_tf_serving(value, text):
    small = to_json_value(np.array([value], dtype=np.float32), as_b64=False)
    large = to_json_value(np.full(100, value, dtype=np.float32), as_b64=False)
    assert codec.dumps(small) == f"[{text}]".encode()
    assert codec.dumps(large[:1]) == f"[{text}]".encode()


def test_vectorized_float_text_equals_per_value_text():
    rng = np.random.default_rng(7)
    scales = np.float32(10) ** rng.integers(-40, 38, 20_000).astype(np.float32)
    values = np.concatenate([rng.standard_normal(20_000).astype(np.float32) * scales,
                             rng.random(20_000).astype(np.float32)])
    vectorized = float32_text_values(values)
    per_value = np.array([_tf_float_text(v) for v in values.astype(np.float64).tolist()])
    np.testing.assert_array_equal(vectorized, per_value)
    np.testing.assert_array_equal(vectorized.astype(np.float32), values)  # nothing lost


def test_typed_values_shorter_than_the_shape_repeat_the_last():
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=[1, 2])
    for size in (2, 2):
        tensor.tensor_shape.dim.add(size=size)
    assert to_array(tensor).tolist() == [[1, 2], [2, 2]]


@pytest.mark.parametrize(
    "fields, text",
    [
        ({"float_val": [1, 2, 3]}, "tensor has 3 values but its shape holds 2"),
        ({"tensor_content": b"\x00" * 7}, "tensor_content of 7 bytes is not a whole number"),
        ({"float_val": [1.0], "dims": [-1]}, r"tensor shape \[-1\] cannot be written as JSON"),
        ({"float_val": [1.0], "dims": [1 << 20, 1 << 20]}, "cannot be written as JSON"),
    ],
)
def test_malformed_backend_tensors_are_codec_errors(fields, text):
    values = {k: v for k, v in fields.items() if k != "dims"}
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, **values)
    for size in fields.get("dims", [2]):
        tensor.tensor_shape.dim.add(size=size)
    with pytest.raises(codec.CodecError, match=text):
        codec.encode_predict_response({"y": tensor}, row_format=False)


def test_quote_cuts_long_values():
    assert len(quote("x" * 10_000)) < 600


def test_quote_survives_values_too_deep_to_print():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert quote(deep) == "<Array nested too deeply to quote>"
    with pytest.raises(codec.CodecError, match="Is not object"):
        codec.decode_predict_body(deep, {})


def test_float_packing_matches_struct_for_extremes():
    values = [0.0, -1.5, 3.4028234663852886e38, math.inf, -math.inf]
    tensor = make_tensor(values, [5], dtype_info(types_pb2.DT_FLOAT))
    assert tensor.tensor_content == struct.pack("<5f", *values)


# --- bounded work ------------------------------------------------------------------------------

# Wall-clock bound on the work below, which takes 0.3 s at most here (2 cores, `nice -n 19`, load
# average near 3). Only a super-linear path reaches it (minutes at these sizes); 50 times the
# measured time is headroom a busy CI machine does not use up. The codec's cost per request is
# measured by the benchmarks (docs/benchmarks.md, gateway overhead), not here.
LINEAR_TIME_BOUND_S = 15.0


def refused_in_linear_time(fn) -> codec.CodecError:
    start = time.perf_counter()
    with pytest.raises(codec.CodecError) as err:
        fn()
    elapsed = time.perf_counter() - start
    assert elapsed < LINEAR_TIME_BOUND_S, f"took {elapsed:.2f}s"
    return err.value


def test_million_leaves_are_flattened_in_linear_time():
    value = [[float(i)] * 100 for i in range(10_000)]
    shape = dense_shape(value)
    start = time.perf_counter()
    leaves = flatten(value, shape)
    assert time.perf_counter() - start < LINEAR_TIME_BOUND_S
    assert shape == [10_000, 100] and len(leaves) == 1_000_000


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 200_000 + b"]" * 200_000,                     # far past the parser's recursion limit
        json.dumps({"inputs": json.loads("[" * 900 + "]" * 900)}).encode(),  # parses; too deep
        json.dumps({"inputs": {f"k{i}": [1] for i in range(30_000)}}).encode(),  # 30k names
        json.dumps({"instances": [{"x": 1.0}] * 30_000 + [{"y": 1}]}).encode(),  # late bad key
        json.dumps({"instances": [[1.0] * 1000] * 299 + [[1.0] * 999]}).encode(),  # late ragged row
        b'{"inputs": "' + b"a" * 5_000_000 + b'"}',          # a 5 MB string for a float input
    ],
)
def test_hostile_bodies_are_refused_quickly(raw):
    signatures = {"serving_default": codec.Signature(
        "serving_default", "tensorflow/serving/predict",
        {"x": codec.TensorSpec("x", types_pb2.DT_FLOAT, None)}, {})}
    err = refused_in_linear_time(
        lambda: codec.decode_predict_body(codec.parse_json(raw), signatures))
    assert len(err.message) < 1000
