"""TF Serving's REST JSON <-> the gateway's protobuf messages. Pure functions: no Flask, no gRPC.

Behaviour follows tensorflow_model_server's REST API (util/json_tensor.cc,
http_rest_api_handler.cc): row (`instances`) and columnar (`inputs`) predict bodies,
`{"b64": ...}` strings, `_bytes` outputs, `predictions`/`outputs`/`results` keys, and TF Serving's
error texts. As in TF Serving, JSON is converted with the signature's dtypes and a signature's
declared shapes never gate a request (TF1-era exports often declare shapes their graphs do not
enforce); `shape_hint` says which inputs disagree with them, for when the backend refuses one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.protobuf import json_format

from tfstack.protocol.dtypes import CodecError, ValueProblem, dtype_info, quote
from tfstack.protocol.examples import fill_example
from tfstack.protocol.json_parse import parse_json
from tfstack.protocol.json_to_tensor import dense_shape, flatten, is_b64_object, make_tensor
from tfstack.protocol.proto import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    regression_pb2,
    tensor_pb2,
)
from tfstack.protocol.tensor_to_json import Dense, float_json, read_tensor, to_json_value

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CodecError",
    "PredictCall",
    "Signature",
    "TensorSpec",
    "decode_examples_body",
    "decode_predict_body",
    "dumps",
    "encode_classify_response",
    "encode_predict_arrays",
    "encode_predict_response",
    "encode_regress_response",
    "metadata_to_json",
    "parse_json",
    "shape_hint",
    "signature_name_of",
    "signatures_from_metadata",
    "status_to_json",
]

DEFAULT_SIGNATURE = "serving_default"
_BYTES_SUFFIX = "_bytes"


@dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: dtype is a tensorflow.DataType value; shape uses -1 for an
    unknown dimension and is None when even the rank is unknown."""

    name: str
    dtype: int
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


@dataclass(frozen=True)
class PredictCall:
    """A decoded predict body: the resolved signature name and one TensorProto per input."""

    signature_name: str
    inputs: dict[str, tensor_pb2.TensorProto]
    row_format: bool


# --- JSON text ---------------------------------------------------------------------------------

def dumps(obj: object) -> bytes:
    """Response JSON. Non-finite floats are written as NaN/Infinity/-Infinity, like TF Serving.

    ASCII-only (non-ASCII as \\u escapes): always valid, even when an error message quotes a
    client's lone surrogate."""
    return json.dumps(obj, allow_nan=True, separators=(",", ":")).encode("ascii")


# --- signatures --------------------------------------------------------------------------------

def _spec(name: str, info) -> TensorSpec:
    # A sparse or composite (e.g. ragged) input is not one dense tensor: no shape to check.
    dense = info.WhichOneof("encoding") in ("name", None) and not info.tensor_shape.unknown_rank
    shape = tuple(d.size for d in info.tensor_shape.dim) if dense else None
    return TensorSpec(name, info.dtype, shape)


def signatures_from_metadata(
        response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict[str, Signature]:
    """The signatures in a GetModelMetadata response (metadata["signature_def"] is an Any)."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    packed = response.metadata.get("signature_def")
    if packed is None or not packed.Unpack(sig_map):
        raise CodecError("model metadata has no signature_def map", status=502)
    return {
        name: Signature(
            name=name,
            method_name=sig.method_name,
            inputs={k: _spec(k, v) for k, v in sorted(sig.inputs.items())},
            outputs={k: _spec(k, v) for k, v in sorted(sig.outputs.items())},
        )
        for name, sig in sig_map.signature_def.items()
    }


# --- predict -----------------------------------------------------------------------------------

def _signature_name(body: dict) -> str:
    name = body.get("signature_name", "")
    if not isinstance(name, str):
        raise CodecError(f"JSON Value: {quote(body)} not formatted correctly. "
                         "'signature_name' key must be a string value.")
    return name or DEFAULT_SIGNATURE


def _require_object(body: object) -> dict:
    if not isinstance(body, dict):
        raise CodecError(f"JSON Value: {quote(body)} Is not object")
    return body


def signature_name_of(body: object) -> str:
    """The signature a predict/classify/regress body names ("serving_default" if none), after
    TF Serving's first two checks: the body is an object, its `signature_name` a string."""
    return _signature_name(_require_object(body))


def decode_predict_body(body: object, signatures: Mapping[str, Signature]) -> PredictCall:
    """A parsed predict body -> typed input tensors for the chosen signature (TF Serving rules)."""
    body = _require_object(body)
    name = _signature_name(body)
    signature = signatures.get(name)
    if signature is None:
        raise CodecError(f'Serving signature name: "{name}" not found in signature def')
    specs = signature.inputs
    if not specs:
        raise CodecError(f"Failed to get input map for signature: {name}")
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances and has_inputs:
        raise CodecError(f"JSON Value: {quote(body)} Not formatted correctly expecting only one of "
                         "'inputs' or 'instances' keys to exist ")
    if has_instances:
        rows, named = _rows_by_input(body["instances"], body, specs)
        inputs = {key: _batch(key, rows[key], specs[key], named) for key in specs}
    elif has_inputs:
        values = _values_by_input(body["inputs"], specs)
        inputs = {key: _columnar(key, values[key], specs[key]) for key in specs}
    else:
        raise CodecError("Missing 'inputs' or 'instances' key")
    return PredictCall(name, inputs, row_format=has_instances)


def _values_by_input(value: object, specs: dict[str, TensorSpec]) -> dict[str, object]:
    """Columnar `inputs`: one plain value/list for a single input, else an object by name."""
    if not isinstance(value, dict) or is_b64_object(value):
        if len(specs) > 1:
            raise CodecError("inputs is a plain value/list, but expecting an object as multiple "
                             "input tensors required as per tensorinfo_map")
        return {next(iter(specs)): value}
    for name in specs:
        if name not in value:
            raise CodecError(f"Missing named input: {name} in 'inputs' object.")
    # Names the signature lacks are ignored, as TF Serving ignores them.
    return value


def _columnar(name: str, value: object, spec: TensorSpec) -> tensor_pb2.TensorProto:
    try:
        shape = dense_shape(value)
        tensor = make_tensor(flatten(value, shape), shape, dtype_info(spec.dtype))
    except ValueProblem as problem:
        raise CodecError(problem.message, problem.status) from None
    return tensor


def _is_element_object(value: object) -> bool:
    return isinstance(value, dict) and not is_b64_object(value)


def _rows_by_input(instances: object, body: dict,
                   specs: dict[str, TensorSpec]) -> tuple[dict[str, list], bool]:
    """Row `instances`: per input, the list of its per-instance values; and whether the
    instances were objects naming their inputs."""
    if not isinstance(instances, list):
        raise CodecError(f"JSON Value: {quote(body)} Excepting 'instances' to be an list/array")
    if not instances:
        raise CodecError(f"JSON Value: {quote(body)} No values in 'instances' array")
    objects = _is_element_object(instances[0])
    if not objects:
        if len(specs) > 1:
            raise CodecError("instances is a plain list, but expecting list of objects as "
                             "multiple input tensors required as per tensorinfo_map")
        for index, element in enumerate(instances):
            if _is_element_object(element):
                raise CodecError(f"Expecting value/list but got object at item {index} of input "
                                 "list")
        return {next(iter(specs)): instances}, False
    rows: dict[str, list] = {name: [] for name in specs}
    for index, element in enumerate(instances):
        if not _is_element_object(element):
            raise CodecError(f"Expecting object but got list at item {index} of input list")
        for key, value in element.items():
            if key not in rows:
                raise CodecError(f"Failed to process element: {index} key: {key} of 'instances' "
                                 "list. Error: INVALID_ARGUMENT: JSON object: does not have "
                                 f"named input: {key}")
            rows[key].append(value)
        if len(element) != len(specs):
            raise CodecError(f"Failed to process element: {index} of 'instances' list. JSON "
                             f"object: {quote(element)} keys must be equal to: "
                             f"{','.join(sorted(specs))}")
    return rows, True


def _batch(name: str, rows: list, spec: TensorSpec, named: bool) -> tensor_pb2.TensorProto:
    """Stack one input's per-instance values into a [len(rows), ...] tensor. TF Serving's
    message names the input (`key: <name>`) only when the instances were objects.

    Fast path: the rows as one nested list (dense only if every row has the first row's shape).
    Any problem is then re-diagnosed row by row for TF Serving's per-element message."""
    try:
        shape = dense_shape(rows)
        tensor = make_tensor(flatten(rows, shape), shape, dtype_info(spec.dtype))
    except ValueProblem as problem:
        # Rows fine one by one but not together can only mean the batch is nested too deep.
        index, problem = _first_bad_row(rows, spec) or (0, problem)
        where = f"{index} key: {name}" if named else f"{index}"
        raise CodecError(f"Failed to process element: {where} of 'instances' list. "
                         f"Error: INVALID_ARGUMENT: {problem.message}", problem.status) from None
    return tensor


def _first_bad_row(rows: list, spec: TensorSpec) -> tuple[int, ValueProblem] | None:
    first_shape, first_size = None, 0
    for index, row in enumerate(rows):
        try:
            shape = dense_shape(row)
            leaves = flatten(row, shape)
            make_tensor(leaves, shape, dtype_info(spec.dtype))
            if first_shape is None:
                first_shape, first_size = shape, len(leaves)
            elif len(leaves) != first_size:
                raise ValueProblem(f"Expecting tensor size: {first_size} but got: {len(leaves)}")
            elif shape != first_shape:
                raise ValueProblem(f"Expecting shape {_shape_text(first_shape)} but got: "
                                   f"{_shape_text(shape)}")
        except ValueProblem as problem:
            return index, problem
    return None


def _shape_text(shape) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def _fits(declared: tuple[int, ...] | None, shape: list[int]) -> bool:
    return declared is None or (len(shape) == len(declared) and all(
        d == -1 or d == s for d, s in zip(declared, shape, strict=True)))


def shape_hint(signature: Signature, inputs: Mapping[str, tensor_pb2.TensorProto]) -> str | None:
    """Which inputs were sent with a shape the signature does not declare, or None if all fit.

    Never a reason to refuse a request (TF Serving runs whatever the graph accepts); it is what a
    client needs when the backend does refuse one, since a TF runtime message names graph nodes."""
    parts = []
    for name in sorted(inputs):
        spec = signature.inputs.get(name)
        shape = [d.size for d in inputs[name].tensor_shape.dim]
        if spec is not None and not _fits(spec.shape, shape):
            parts.append(f"input {name} was sent with shape {_shape_text(shape)}, the signature "
                         f"declares {_shape_text(spec.shape)}")
    if not parts:
        return None
    return "; ".join(parts) + " (-1 = any size)"


def encode_predict_response(outputs: Mapping[str, tensor_pb2.TensorProto],
                            row_format: bool) -> dict:
    """Predict outputs -> `{"predictions": ...}` (row request) or `{"outputs": ...}` (columnar)."""
    arrays = {}
    for name in sorted(outputs):
        try:
            arrays[name] = read_tensor(outputs[name])
        except ValueProblem as problem:
            raise CodecError(f"{problem.message} (output: {name})", problem.status) from None
    return encode_predict_arrays(arrays, row_format)


def encode_predict_arrays(arrays: Mapping[str, Dense | np.ndarray], row_format: bool) -> dict:
    """encode_predict_response for outputs already read (numpy arrays, strings as object arrays
    of bytes, or `Dense`; `{"b64": ...}` when the output's name ends in `_bytes`)."""
    if not arrays:
        raise CodecError("Cannot convert empty tensor map to JSON")
    names = sorted(arrays)
    values = {name: to_json_value(arrays[name], name.endswith(_BYTES_SUFFIX)) for name in names}
    if not row_format:
        return {"outputs": values[names[0]] if len(names) == 1 else values}
    batch = None
    for name in names:
        if arrays[name].ndim == 0:
            raise CodecError(f"Tensor name: {name} has no shape information ")
        if batch is not None and arrays[name].shape[0] != batch:
            raise CodecError(f"Tensor name: {name} has inconsistent batch size: "
                             f"{arrays[name].shape[0]} expecting: {batch}")
        batch = arrays[name].shape[0]
    if len(names) == 1:
        return {"predictions": values[names[0]]}
    return {"predictions": [{name: values[name][i] for name in names} for i in range(batch)]}


# --- classify / regress ------------------------------------------------------------------------

def decode_examples_body(body: object, method: str) -> tuple[str, input_pb2.Input]:
    """A classify/regress body -> (signature name, Input with tf.Examples). `method` is
    "classify" or "regress"; TF Serving's missing-key message says "classify" for both."""
    if method not in ("classify", "regress"):
        raise ValueError(f"method must be 'classify' or 'regress', not {method!r}")
    body = _require_object(body)
    name = _signature_name(body)
    request_input = input_pb2.Input()
    if "context" in body:
        target = request_input.example_list_with_context
        fill_example(body["context"], target.context)
    else:
        target = request_input.example_list
    if "examples" not in body:
        raise CodecError(f"JSON Value: {quote(body)} When method is classify, key 'examples' is "
                         "expected and was not found")
    examples = body["examples"]
    if not isinstance(examples, list):
        raise CodecError(f"JSON Value: {quote(body)} Expecting 'examples' value to be an "
                         "list/array")
    if not examples:
        raise CodecError(f"JSON Value: {quote(body)} 'examples' value is an empty array")
    for example in examples:
        fill_example(example, target.examples.add())
    return name, request_input


def encode_classify_response(result: classification_pb2.ClassificationResult) -> dict:
    if not result.classifications:
        raise CodecError("Cannot convert empty ClassificationResults to JSON")
    return {"results": [[[c.label, float_json(c.score)] for c in classifications.classes]
                        for classifications in result.classifications]}


def encode_regress_response(result: regression_pb2.RegressionResult) -> dict:
    if not result.regressions:
        raise CodecError("Cannot convert empty RegressionResults to JSON")
    return {"results": [float_json(r.value) for r in result.regressions]}


# --- status and metadata -----------------------------------------------------------------------

def _proto_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def status_to_json(response: get_model_status_pb2.GetModelStatusResponse) -> dict:
    """`{"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {...}}]}`."""
    return _proto_json(response)


def metadata_to_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict:
    """TF Serving's metadata JSON, including its doubled `signature_def` key."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    metadata = {}
    packed = response.metadata.get("signature_def")
    if packed is not None:
        if not packed.Unpack(sig_map):
            raise CodecError("model metadata signature_def is not a SignatureDefMap", status=502)
        metadata["signature_def"] = _proto_json(sig_map)
    return {"model_spec": _proto_json(response.model_spec), "metadata": metadata}
