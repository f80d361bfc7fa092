"""JSON examples -> tf.Example, for :classify and :regress (TF Serving's util/json_tensor.cc).

A feature's kind comes from its first value and every later value must match it: JSON float ->
float_list, integer or bool -> int64_list, string or `{"b64": ...}` -> bytes_list.
"""

from __future__ import annotations

import math

from tfstack.protocol.dtypes import ValueProblem, json_type, quote
from tfstack.protocol.json_to_tensor import decode_b64, is_b64_object, string_bytes
from tfstack.protocol.proto import example_pb2

_FEATURE_KINDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1
_FLOAT32_MAX = 3.4028234663852886e38


def fill_example(value: object, example: example_pb2.Example) -> None:
    if not isinstance(value, dict):
        raise ValueProblem(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            kind, converted = _feature_value(name, item)
            current = feature.WhichOneof("kind")
            if current not in (None, kind):
                raise ValueProblem(f"Unexpected element type in feature: {name} expecting type: "
                                   f"{_FEATURE_KINDS[current]}")
            getattr(feature, kind).value.append(converted)


def _feature_value(name: str, value: object) -> tuple[str, object]:
    """(feature list kind, value) for one JSON value of feature `name`."""
    if value is None or isinstance(value, list) or (isinstance(value, dict)
                                                     and not is_b64_object(value)):
        raise ValueProblem(f"Feature: {name} has element with unexpected JSON type: "
                           f"{json_type(value)}")
    if isinstance(value, bool):
        return "int64_list", int(value)
    if isinstance(value, int) and _INT64_MIN <= value <= _UINT64_MAX:
        if value > _INT64_MAX:
            raise ValueProblem(f"Feature: {name} has uint64 element. Only int64 is supported.")
        return "int64_list", value
    if isinstance(value, int | float):
        return "float_list", _float_feature(value)
    if isinstance(value, str):
        return "bytes_list", string_bytes(value)
    return "bytes_list", decode_b64(value)


def _float_feature(value: int | float) -> float:
    """rapidjson reads an integer beyond int64/uint64 as a double: it becomes a float too."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if (isinstance(value, int) and math.isinf(number)) or \
            (math.isfinite(number) and abs(number) > _FLOAT32_MAX):
        raise ValueProblem(f"Cannot convert JSON value: {quote(value)} to float without loss of "
                           "precision.")
    return number
