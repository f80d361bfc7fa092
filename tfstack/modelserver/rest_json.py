"""TF Serving's REST JSON formats (`util/json_tensor.cc`) for the model server: request JSON ->
numpy arrays of the signature's dtypes, and results -> TF Serving's response JSON.

The JSON rules, their error texts and the float text are the protocol's codec
(tfstack/protocol), the gateway's too: one implementation of util/json_tensor.cc for both programs,
so they accept the same bodies, refuse the others with the same texts and answer the same JSON.
The codec's messages are the protocol's own; this module only converts between TensorFlow's message
classes and the protocol's (the same bytes on the wire)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import input_pb2

from tfstack.protocol import codec
from tfstack.protocol.proto import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    regression_pb2,
)
from tfstack.protocol.tensor_to_json import to_array

parse_json = codec.parse_json
signature_name = codec.signature_name_of


def decode_predict(body: Mapping, name: str, inputs: Mapping[str, meta_graph_pb2.TensorInfo]):
    """The `instances` / `inputs` part of a predict body: (arrays by alias, row_format)."""
    specs = {alias: codec.TensorSpec(alias, info.dtype, None) for alias, info in inputs.items()}
    call = codec.decode_predict_body(body, {name: codec.Signature(name, "", specs, {})})
    return {alias: to_array(t) for alias, t in call.inputs.items()}, call.row_format


def examples_input(body: object, method: str) -> input_pb2.Input:
    """A classify/regress body as tensorflow.serving.Input."""
    _, model_input = codec.decode_examples_body(body, method)
    return input_pb2.Input.FromString(model_input.SerializeToString())


def encode_predict(outputs: Mapping[str, np.ndarray], row_format: bool) -> str:
    return _text(codec.encode_predict_arrays(outputs, row_format))


def encode_classify(result) -> str:
    """A tensorflow.serving.ClassificationResult as TF Serving's `{"results": ...}`."""
    message = classification_pb2.ClassificationResult.FromString(result.SerializeToString())
    return _text(codec.encode_classify_response(message))


def encode_regress(result) -> str:
    message = regression_pb2.RegressionResult.FromString(result.SerializeToString())
    return _text(codec.encode_regress_response(message))


def encode_status(response) -> str:
    """A tensorflow.serving.GetModelStatusResponse as TF Serving's status JSON."""
    message = get_model_status_pb2.GetModelStatusResponse.FromString(response.SerializeToString())
    return _text(codec.status_to_json(message))


def encode_metadata(response) -> str:
    """A tensorflow.serving.GetModelMetadataResponse as TF Serving's metadata JSON."""
    message = get_model_metadata_pb2.GetModelMetadataResponse.FromString(
        response.SerializeToString()
    )
    return _text(codec.metadata_to_json(message))


def _text(obj: object) -> str:
    return codec.dumps(obj).decode("ascii")
