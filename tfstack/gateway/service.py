"""TF Serving's REST methods over gRPC: one function per method, JSON in, JSON-ready dict out.

JSON is converted with the dtypes of the model's signature (cached per worker, see upstream.py),
as TF Serving converts it; malformed JSON is a 400 before any backend call. Shapes are the model's
business, as in TF Serving: when the backend refuses a request, its status and text come back, with
a `hint` naming any input whose shape the signature does not declare.
"""

from __future__ import annotations

import grpc

from tfstack.gateway.domain import CachedSignatures, Deadline, UpstreamError
from tfstack.gateway.upstream import Upstream
from tfstack.protocol import codec
from tfstack.protocol.errors import CodecError
from tfstack.protocol.proto import (
    classification_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)
from tfstack.protocol.routes import ModelRef


def predict(upstream: Upstream, model: ModelRef, raw: bytes, deadline: Deadline) -> dict:
    body = codec.parse_json(raw)
    # TF Serving's order: the body must be an object with a string `signature_name` (400) before
    # the model is looked up (404 for a missing model or version), then the instances are read.
    wanted = codec.signature_name_of(body)
    cached = upstream.signatures(model, deadline, wanted=wanted)
    for first in (True, False):
        try:
            call = codec.decode_predict_body(body, cached.signatures)
            response = _call(upstream, model, call, cached, deadline)
            break
        except (CodecError, UpstreamError) as err:
            # Refused, by the codec or the backend: were the signatures this worker converted
            # with stale (a new version with other inputs or dtypes went live)? Then once more.
            stale = first and (isinstance(err, CodecError) or err.code in _MAYBE_STALE)
            fresh = upstream.fresher_signatures(model, cached, deadline) if stale else None
            if fresh is None:
                raise
            cached = fresh
    upstream.signature_cache.observe_version(model, response.model_spec.version.value)
    return codec.encode_predict_response(response.outputs, call.row_format)


# Backend refusals a request converted with an older version's signatures can get: an input alias,
# dtype or shape that version does not have (INVALID_ARGUMENT), a signature it lacks.
_MAYBE_STALE = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)


def _call(
    upstream: Upstream,
    model: ModelRef,
    call: codec.PredictCall,
    cached: CachedSignatures,
    deadline: Deadline,
) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest(
        model_spec=model.spec(call.signature_name), inputs=call.inputs
    )
    try:
        return upstream.call("Predict", request, model.name, deadline)
    except UpstreamError as err:
        if err.code == grpc.StatusCode.INVALID_ARGUMENT:
            hint = codec.shape_hint(cached.signatures[call.signature_name], call.inputs)
            if hint is not None:
                err.extra["hint"] = hint
        raise


# method -> (RPC, request message, response encoder): Classify and Regress differ only in these.
_EXAMPLE_METHODS = {
    "classify": (
        "Classify",
        classification_pb2.ClassificationRequest,
        codec.encode_classify_response,
    ),
    "regress": ("Regress", regression_pb2.RegressionRequest, codec.encode_regress_response),
}


def _examples_method(method: str):
    rpc, request_type, encode = _EXAMPLE_METHODS[method]

    def handle(upstream: Upstream, model: ModelRef, raw: bytes, deadline: Deadline) -> dict:
        signature_name, examples = codec.decode_examples_body(codec.parse_json(raw), method)
        request = request_type(model_spec=model.spec(signature_name), input=examples)
        return encode(upstream.call(rpc, request, model.name, deadline).result)

    return handle


classify = _examples_method("classify")
regress = _examples_method("regress")


def status(upstream: Upstream, model: ModelRef, _raw: bytes, deadline: Deadline) -> dict:
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=model.spec())
    return codec.status_to_json(upstream.call("GetModelStatus", request, model.name, deadline))


def metadata(upstream: Upstream, model: ModelRef, _raw: bytes, deadline: Deadline) -> dict:
    return codec.metadata_to_json(upstream.metadata(model, deadline))


HANDLERS = {
    "predict": predict,
    "classify": classify,
    "regress": regress,
    "status": status,
    "metadata": metadata,
}
