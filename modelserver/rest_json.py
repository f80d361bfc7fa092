"""TF Serving's REST JSON formats (`util/json_tensor.cc`): request JSON -> numpy arrays of the
signature's dtypes, and tensors -> TF Serving's response JSON (float formatting included).
Pure functions; errors are ServingErrors carrying TF Serving's messages.

Requests are read by the gateway's codec, so the model server and the gateway accept the same
bodies and refuse the others with the same texts."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import input_pb2

from modelserver.errors import ServingError, invalid_argument, unimplemented
from tfstack.protocol import codec
from tfstack.protocol.tensor_to_json import to_array


def parse_json(body: bytes) -> object:
    """The body as JSON, with TF Serving's parse-error messages (shared with the gateway)."""
    try:
        return codec.parse_json(body)
    except codec.CodecError as err:
        raise _serving_error(err) from None


def signature_name(body: object) -> str:
    """TF Serving's FillSignature: the body must be an object whose signature_name is a string."""
    try:
        return codec.signature_name_of(body)
    except codec.CodecError as err:
        raise _serving_error(err) from None


def _serving_error(err: codec.CodecError) -> ServingError:
    if err.status == 501:
        return unimplemented(err.message)
    return invalid_argument(err.message)


def decode_predict(body: Mapping, name: str, inputs: Mapping[str, meta_graph_pb2.TensorInfo]):
    """The `instances` / `inputs` part of a predict body: (arrays by alias, row_format).

    The JSON rules and their error texts are the gateway's codec (one implementation of
    util/json_tensor.cc for both programs); the tensors it builds are read back as numpy."""
    specs = {alias: codec.TensorSpec(alias, info.dtype, None) for alias, info in inputs.items()}
    signatures = {name: codec.Signature(name, "", specs, {})}
    try:
        call = codec.decode_predict_body(body, signatures)
        return {alias: to_array(t) for alias, t in call.inputs.items()}, call.row_format
    except codec.CodecError as err:
        raise _serving_error(err) from None


def examples_input(body: object, method: str) -> input_pb2.Input:
    """A classify/regress body as tensorflow.serving.Input (the gateway's codec, as above)."""
    try:
        _, model_input = codec.decode_examples_body(body, method)
    except codec.CodecError as err:
        raise _serving_error(err) from None
    return input_pb2.Input.FromString(model_input.SerializeToString())


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
