"""TF Serving's REST JSON formats (`util/json_tensor.cc`): request JSON -> numpy arrays of the
signature's dtypes, and tensors -> TF Serving's response JSON (float formatting included).
Pure functions; errors are ServingErrors carrying TF Serving's messages."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from gateway import codec
from gateway.dtypes import json_type
from modelserver.errors import ServingError, invalid_argument, unimplemented
from modelserver.tensors import dtype_name, numpy_dtype

_INT_RANGES = {
    types_pb2.DT_INT8: (-(2**7), 2**7 - 1),
    types_pb2.DT_INT16: (-(2**15), 2**15 - 1),
    types_pb2.DT_INT32: (-(2**31), 2**31 - 1),
    types_pb2.DT_UINT8: (0, 2**8 - 1),
    types_pb2.DT_UINT16: (0, 2**16 - 1),
    types_pb2.DT_INT64: (-(2**63), 2**63 - 1),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}
_FLOATS = (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE)


def parse_json(body: bytes) -> object:
    """The body as JSON, with TF Serving's parse-error messages (shared with the gateway)."""
    try:
        return codec.parse_json(body)
    except codec.CodecError as err:
        raise invalid_argument(err.message) from None


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _is_b64(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _leaf(value: object, dtype: int):
    def mismatch():
        return invalid_argument(
            f"JSON Value: {_dump(value)} Type: {json_type(value)} is not of expected type: "
            f"{dtype_name(dtype)}"
        )

    if dtype in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise mismatch()
        return value
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise mismatch()
        return value
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise mismatch()
        return value
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value) and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid_argument(f"Unable to base64 decode: {value['b64']}") from None
        raise mismatch()
    raise unimplemented(f"Conversion of JSON Value: {_dump(value)} to type: {dtype_name(dtype)}")


def _shape_and_leaves(value: object, dtype: int, leaves: list) -> list[int]:
    """Dense shape of a nested list, leaves appended in row-major order."""
    if not isinstance(value, list):
        leaves.append(_leaf(value, dtype))
        return []
    if not value:
        return [0]
    shapes = [_shape_and_leaves(item, dtype, leaves) for item in value]
    first = shapes[0]
    for shape in shapes[1:]:
        if shape != first:
            if len(shape) != len(first):
                raise invalid_argument(
                    f"Encountered list at unexpected size: {len(shape)} found at incorrect "
                    f"level: {len(first)}"
                )
            raise invalid_argument(
                f"Encountered list at unexpected size: {shape[0] if shape else 0} at "
                f"expected size: {first[0] if first else 0}"
            )
    return [len(value), *first]


def _numeric_fast_path(value: object, dtype: int) -> np.ndarray | None:
    """Numbers-only nested lists straight through numpy; None sends anything else (strings,
    booleans, nulls, ragged lists, out-of-range ints) down the checking path for its message."""
    if dtype not in _FLOATS and dtype not in _INT_RANGES:
        return None
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        return None
    kind = array.dtype.kind
    if dtype in _FLOATS and kind in "iuf":
        return array.astype(numpy_dtype(dtype))
    if dtype in _INT_RANGES and kind in "iu":
        low, high = _INT_RANGES[dtype]
        if array.size == 0 or (low <= array.min() and array.max() <= high):
            return array.astype(numpy_dtype(dtype))
    return None


def to_array(value: object, dtype: int) -> np.ndarray:
    fast = _numeric_fast_path(value, dtype)
    if fast is not None:
        return fast
    leaves: list = []
    shape = _shape_and_leaves(value, dtype, leaves)
    np_dtype = numpy_dtype(dtype)
    if np_dtype is object:
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array.reshape(shape)
    return np.array(leaves, dtype=np_dtype).reshape(shape)


def decode_predict(body: Mapping, inputs: Mapping[str, meta_graph_pb2.TensorInfo]):
    """The `instances` / `inputs` part of a predict body: (arrays by alias, row_format)."""
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances and has_inputs:
        raise invalid_argument(
            f"JSON Value: {_dump(body)} Not formatted correctly expecting only one of 'inputs' "
            "or 'instances' keys to exist "
        )
    if not has_instances and not has_inputs:
        raise invalid_argument("Missing 'inputs' or 'instances' key")
    if has_instances:
        return _decode_rows(body["instances"], inputs), True
    return _decode_columns(body["inputs"], inputs), False


def _decode_rows(instances: object, inputs: Mapping[str, meta_graph_pb2.TensorInfo]):
    if not isinstance(instances, list):
        raise invalid_argument(
            f"JSON Value: {_dump(instances)} Excepting 'instances' to be an list/array"
        )
    if not instances:
        raise invalid_argument(f"JSON Value: {_dump(instances)} No values in 'instances' array")
    names = sorted(inputs)
    named = len(names) > 1 or (isinstance(instances[0], dict) and not _is_b64(instances[0]))
    rows: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for index, element in enumerate(instances):
        if named:
            _check_row_keys(index, element, names)
            values = element
        else:
            values = {names[0]: element}
        for name in names:
            where = f"{index} [key: {name}]" if named else f"{index}"
            try:
                array = to_array(values[name], inputs[name].dtype)
            except ServingError as err:
                raise ServingError(
                    err.code,
                    f"Failed to process element: {where} of 'instances' list. Error: "
                    f"{err.code_name}: {err.message}",
                ) from None
            first = rows[name][0] if rows[name] else None
            if first is not None and first.shape != array.shape:
                raise invalid_argument(
                    f"Failed to process element: {where} of 'instances' list. Error: "
                    f"INVALID_ARGUMENT: Expecting shape {_shape_text(first.shape)} but got: "
                    f"{_shape_text(array.shape)}"
                )
            rows[name].append(array)
    return {name: np.stack(rows[name]) for name in names}


def _shape_text(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _check_row_keys(index: int, element: object, names: list[str]) -> None:
    if not isinstance(element, dict) or _is_b64(element):
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    for key in element:
        if key not in names:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"does not have named input: {key}"
            )
    if set(element) != set(names):
        raise invalid_argument(
            f"Failed to process element: {index} of 'instances' list. JSON object: "
            f"{_dump(element)} keys must be equal to: {','.join(names)}"
        )


def _decode_columns(value: object, inputs: Mapping[str, meta_graph_pb2.TensorInfo]):
    names = sorted(inputs)
    if (
        isinstance(value, dict)
        and not _is_b64(value)
        and not (len(names) == 1 and names[0] not in value)
    ):
        arrays = {}
        for name in names:
            if name not in value:
                raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
            arrays[name] = to_array(value[name], inputs[name].dtype)
        return arrays
    if len(names) != 1:
        raise invalid_argument(
            "inputs is a plain value/list, but expecting an object as multiple input tensors "
            "required as per tensorinfo_map"
        )
    return {names[0]: to_array(value, inputs[names[0]].dtype)}


# -- responses ---------------------------------------------------------------------------------
def format_float(value: float, single: bool = True) -> str:
    """absl::StrCat's float text, `.0` for whole numbers, NaN/Infinity tokens (json_tensor.cc)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = f"{value:.6g}"
    exact = np.float32(text) == np.float32(value) if single else float(text) == value
    if not exact:
        text = f"{value:.9g}" if single else f"{value:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _value_json(value, kind: str) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_value_json(v, kind) for v in value) + "]"
    if kind == "f":
        return format_float(value, True)
    if kind == "d":
        return format_float(value, False)
    if kind == "b64":
        return '{"b64":"' + base64.b64encode(value).decode("ascii") + '"}'
    if kind == "s":
        return json.dumps(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
    if kind == "b":
        return "true" if value else "false"
    return str(int(value))


def _kind(alias: str, array: np.ndarray) -> str:
    if array.dtype == object or array.dtype.kind in "SU":
        return "b64" if alias.endswith("_bytes") else "s"
    if array.dtype == np.float32 or array.dtype == np.float16:
        return "f"
    if array.dtype.kind == "f":
        return "d"
    if array.dtype.kind == "b":
        return "b"
    if array.dtype.kind in "iu":
        return "i"
    raise invalid_argument(f"Failed to write JSON value for tensor type: {array.dtype}")


def encode_predict(outputs: Mapping[str, np.ndarray], row_format: bool) -> str:
    aliases = sorted(outputs)
    kinds = {alias: _kind(alias, outputs[alias]) for alias in aliases}
    if not row_format:
        if len(aliases) == 1:
            alias = aliases[0]
            return '{"outputs":' + _value_json(outputs[alias].tolist(), kinds[alias]) + "}"
        parts = [json.dumps(a) + ":" + _value_json(outputs[a].tolist(), kinds[a]) for a in aliases]
        return '{"outputs":{' + ",".join(parts) + "}}"
    batch = None
    for alias in aliases:
        array = outputs[alias]
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {alias} has no shape information ")
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {alias} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch}"
            )
    lists = {alias: outputs[alias].tolist() for alias in aliases}
    rows = []
    for row in range(batch or 0):
        if len(aliases) == 1:
            alias = aliases[0]
            rows.append(_value_json(lists[alias][row], kinds[alias]))
        else:
            rows.append(
                "{"
                + ",".join(
                    json.dumps(a) + ":" + _value_json(lists[a][row], kinds[a]) for a in aliases
                )
                + "}"
            )
    return '{"predictions":[' + ",".join(rows) + "]}"


def encode_classify(result) -> str:
    rows = []
    for classifications in result.classifications:
        pairs = [
            "[" + json.dumps(c.label) + "," + format_float(c.score) + "]"
            for c in classifications.classes
        ]
        rows.append("[" + ",".join(pairs) + "]")
    return '{"results":[' + ",".join(rows) + "]}"


def encode_regress(result) -> str:
    return '{"results":[' + ",".join(format_float(r.value) for r in result.regressions) + "]}"
