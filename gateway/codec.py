"""TF Serving's REST JSON <-> the gateway's protobuf messages. Pure functions: no Flask, no gRPC.

Behaviour follows tensorflow_model_server's REST API (util/json_tensor.cc,
http_rest_api_handler.cc): row (`instances`) and columnar (`inputs`) predict bodies,
`{"b64": ...}` strings, `_bytes` outputs, `predictions`/`outputs`/`results` keys, and TF Serving's
error texts. Unlike TF Serving, inputs are checked against the signature's dtypes *and shapes*
before anything is sent to a backend, and every message names the input it is about.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import json_format

from gateway.proto import (
    classification_pb2,
    example_pb2,
    feature_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    regression_pb2,
    tensor_pb2,
    types_pb2,
)
from gateway.tensors import (
    MAX_RANK,
    ValueProblem,
    decode_b64,
    dense_shape,
    dtype_info,
    dtype_name,
    flatten,
    float_json,
    is_b64_object,
    json_type,
    make_tensor,
    quote,
    to_array,
    to_json_value,
)

DEFAULT_SIGNATURE = "serving_default"
_BYTES_SUFFIX = "_bytes"
_FLOAT32_MAX = 3.4028234663852886e38


class CodecError(Exception):
    """A request or response the codec cannot convert; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


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

def parse_json(raw: bytes) -> object:
    """Parse a request body. NaN/Infinity/-Infinity are accepted (as in TF Serving); nesting is
    bounded by the interpreter's recursion limit and reported as a parse error, never a crash."""
    if not raw or not raw.strip():
        raise CodecError("JSON Parse error: The document is empty")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CodecError(f"JSON Parse error: {exc.msg} at offset: {exc.pos}") from None
    except UnicodeDecodeError as exc:
        raise CodecError(f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}") \
            from None
    except RecursionError:
        raise CodecError("JSON Parse error: nesting too deep") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise CodecError(f"JSON Parse error: {exc}") from None


def dumps(obj: object) -> bytes:
    """Response JSON. Non-finite floats are written as NaN/Infinity/-Infinity, like TF Serving."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode()


# --- signatures --------------------------------------------------------------------------------

def _spec(name: str, info) -> TensorSpec:
    shape = None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim)
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


def decode_predict_body(body: object, signatures: Mapping[str, Signature]) -> PredictCall:
    """A parsed predict body -> typed input tensors for the chosen signature (TF Serving rules)."""
    body = _require_object(body)
    name = _signature_name(body)
    signature = signatures.get(name)
    if signature is None:
        raise CodecError(f'Serving signature name: "{name}" not found in signature def')
    if not signature.inputs:
        raise CodecError(f"Failed to get input map for signature: {name}")
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances and has_inputs:
        raise CodecError(f"JSON Value: {quote(body)} Not formatted correctly expecting only one of "
                         "'inputs' or 'instances' keys to exist ")
    if has_instances:
        inputs = _decode_instances(body["instances"], body, signature.inputs)
    elif has_inputs:
        inputs = _decode_inputs(body["inputs"], signature.inputs)
    else:
        raise CodecError("Missing 'inputs' or 'instances' key")
    for input_name, tensor in inputs.items():
        _check_signature_shape(signature.inputs[input_name], tensor)
    return PredictCall(name, inputs, row_format=has_instances)


def _tensor(value: object, spec: TensorSpec) -> tensor_pb2.TensorProto:
    dtype = dtype_info(spec.dtype)
    shape = dense_shape(value)
    return make_tensor(flatten(value, shape), shape, dtype)


def _decode_inputs(value: object, specs: dict[str, TensorSpec]) -> dict:
    if not isinstance(value, dict) or is_b64_object(value):
        if len(specs) > 1:
            raise CodecError("inputs is a plain value/list, but expecting an object as multiple "
                             "input tensors required as per tensorinfo_map")
        named = {next(iter(specs)): value}
    else:
        for name in specs:
            if name not in value:
                raise CodecError(f"Missing named input: {name} in 'inputs' object.")
        # TF Serving ignores extra names here; a typo then fails late or not at all, so refuse it.
        for name in value:
            if name not in specs:
                raise CodecError(f"Input: {name} is not an input of the signature; its inputs "
                                 f"are: {','.join(sorted(specs))}")
        named = {name: value[name] for name in specs}
    out = {}
    for name, item in named.items():
        try:
            out[name] = _tensor(item, specs[name])
        except ValueProblem as problem:
            raise CodecError(f"{problem.message} (input: {name})", problem.status) from None
    return out


def _is_element_object(value: object) -> bool:
    return isinstance(value, dict) and not is_b64_object(value)


def _decode_instances(instances: object, body: dict, specs: dict[str, TensorSpec]) -> dict:
    if not isinstance(instances, list):
        raise CodecError(f"JSON Value: {quote(body)} Excepting 'instances' to be an list/array")
    if not instances:
        raise CodecError(f"JSON Value: {quote(body)} No values in 'instances' array")
    objects = _is_element_object(instances[0])
    if not objects and len(specs) > 1:
        raise CodecError("instances is a plain list, but expecting list of objects as multiple "
                         "input tensors required as per tensorinfo_map")
    columns: dict[str, list] = {name: [] for name in specs}
    for index, element in enumerate(instances):
        if objects != _is_element_object(element):
            kind = "object but got list" if objects else "value/list but got object"
            raise CodecError(f"Expecting {kind} at item {index} of input list")
        items = element if objects else {next(iter(specs)): element}
        for key in items:
            if key not in specs:
                raise CodecError(f"Failed to process element: {index} key: {key} of 'instances' "
                                 f"list. Error: INVALID_ARGUMENT: JSON object: does not have "
                                 f"named input: {key}")
        if objects and set(items) != set(specs):
            raise CodecError(f"Failed to process element: {index} of 'instances' list. JSON "
                             f"object: {quote(element)} keys must be equal to: "
                             f"{','.join(sorted(specs))}")
        for key, value in items.items():
            columns[key].append(value)
    return {name: _batch(name, column, specs[name]) for name, column in columns.items()}


def _batch(name: str, rows: list, spec: TensorSpec) -> tensor_pb2.TensorProto:
    """Stack one input's per-instance values into a [len(rows), ...] tensor."""
    first_shape = None
    leaves: list = []
    for index, row in enumerate(rows):
        try:
            shape = dense_shape(row)
            if first_shape is None:
                first_shape = shape
            row_leaves = flatten(row, shape)
            if shape != first_shape:
                size = _count(first_shape)
                if len(row_leaves) != size:
                    raise ValueProblem(f"Expecting tensor size: {size} but got: {len(row_leaves)}")
                raise ValueProblem(f"Expecting shape {_shape_text(first_shape)} but got: "
                                   f"{_shape_text(shape)}")
        except ValueProblem as problem:
            raise CodecError(f"Failed to process element: {index} key: {name} of 'instances' "
                             f"list. Error: INVALID_ARGUMENT: {problem.message}",
                             problem.status) from None
        leaves.extend(row_leaves)
    shape = [len(rows), *first_shape]
    if len(shape) > MAX_RANK:
        raise CodecError(f"JSON list nesting deeper than {MAX_RANK} levels (input: {name})")
    try:
        return make_tensor(leaves, shape, dtype_info(spec.dtype))
    except ValueProblem as problem:
        index = _failing_row(rows, spec)
        raise CodecError(f"Failed to process element: {index} key: {name} of 'instances' list. "
                         f"Error: INVALID_ARGUMENT: {problem.message}", problem.status) from None


def _failing_row(rows: list, spec: TensorSpec) -> int:
    for index, row in enumerate(rows):
        try:
            _tensor(row, spec)
        except (ValueProblem, CodecError):
            return index
    return 0


def _count(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _shape_text(shape) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def _check_signature_shape(spec: TensorSpec, tensor: tensor_pb2.TensorProto) -> None:
    """Stricter than TF Serving (which leaves this to the model at run time): a tensor whose rank
    or a known dimension disagrees with the signature is refused before any backend call."""
    if spec.shape is None:
        return
    got = [d.size for d in tensor.tensor_shape.dim]
    if len(got) == len(spec.shape) and all(w in (-1, g) for w, g in zip(spec.shape, got,
                                                                          strict=True)):
        return
    raise CodecError(f"Input: {spec.name} has shape {_shape_text(got)} but the signature "
                     f"expects shape {_shape_text(spec.shape)} (-1 = any size) of dtype "
                     f"{dtype_name(spec.dtype)}")


def encode_predict_response(outputs: Mapping[str, tensor_pb2.TensorProto],
                            row_format: bool) -> dict:
    """Predict outputs -> `{"predictions": ...}` (row request) or `{"outputs": ...}` (columnar)."""
    if not outputs:
        raise CodecError("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {}
    for name in names:
        try:
            arrays[name] = to_array(outputs[name])
        except ValueProblem as problem:
            raise CodecError(f"{problem.message} (output: {name})", problem.status) from None
    values = {name: to_json_value(arrays[name], _is_bytes(name, outputs[name])) for name in names}
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


def _is_bytes(name: str, tensor: tensor_pb2.TensorProto) -> bool:
    return tensor.dtype == types_pb2.DT_STRING and name.endswith(_BYTES_SUFFIX)


# --- classify / regress ------------------------------------------------------------------------

def decode_examples_body(body: object, method: str) -> tuple[str, input_pb2.Input]:
    """A classify/regress body -> (signature name, Input with tf.Examples). `method` is
    "classify" or "regress"; TF Serving's missing-key message says "classify" for both."""
    if method not in ("classify", "regress"):
        raise ValueError(f"method must be 'classify' or 'regress', not {method!r}")
    body = _require_object(body)
    name = _signature_name(body)
    request_input = input_pb2.Input()
    context = body.get("context")
    if "context" in body:
        target = request_input.example_list_with_context
        _fill_example(context, target.context)
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
        _fill_example(example, target.examples.add())
    return name, request_input


def _fill_example(value: object, example: example_pb2.Example) -> None:
    if not isinstance(value, dict):
        raise CodecError(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(name, item, feature)


_FEATURE_KINDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1


def _add_feature_value(name: str, value: object, feature: feature_pb2.Feature) -> None:
    if value is None or isinstance(value, list) or (isinstance(value, dict)
                                                     and not is_b64_object(value)):
        raise CodecError(f"Feature: {name} has element with unexpected JSON type: "
                         f"{json_type(value)}")
    if isinstance(value, bool):
        kind, item = "int64_list", int(value)
    elif isinstance(value, int) and value <= _UINT64_MAX:
        if value > _INT64_MAX or value < _INT64_MIN:
            raise CodecError(f"Feature: {name} has uint64 element. Only int64 is supported.")
        kind, item = "int64_list", value
    elif isinstance(value, int | float):
        # rapidjson reads an integer beyond uint64 as a double, so it becomes a float feature.
        try:
            item = float(value)
        except OverflowError:
            item = math.inf if value > 0 else -math.inf
        if isinstance(value, int) and math.isinf(item) or \
                math.isfinite(item) and abs(item) > _FLOAT32_MAX:
            raise CodecError(f"Cannot convert JSON value: {quote(value)} to float without loss "
                             "of precision.")
        kind = "float_list"
    elif isinstance(value, str):
        kind, item = "bytes_list", value.encode("utf-8", "surrogatepass")
    else:
        kind = "bytes_list"
        try:
            item = decode_b64(value)
        except ValueProblem as problem:
            raise CodecError(f"{problem.message} (feature: {name})") from None
    current = feature.WhichOneof("kind")
    if current not in (None, kind):
        raise CodecError(f"Unexpected element type in feature: {name} expecting type: "
                         f"{_FEATURE_KINDS[current]}")
    getattr(feature, kind).value.append(item)


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
