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
    sent, prefer = _Sent(), None
    for first in (True, False):
        try:
            call = codec.decode_predict_body(body, cached.signatures)
            response = _call(upstream, model, body, call, cached, deadline, sent, prefer)
            break
        except (CodecError, UpstreamError) as err:
            # Refused, by the codec or the backend: were the signatures this request was
            # converted with stale (a new version with other inputs or dtypes went live there)?
            # Then once more, first to the endpoint that refused it.
            stale = first and (isinstance(err, CodecError) or err.code in _MAYBE_STALE)
            fresh = None
            if stale:
                used = sent.cached or cached
                fresh = upstream.fresher_signatures(model, used, deadline, sent.address)
            if fresh is None:
                raise
            cached, prefer, sent = fresh, sent.address, _Sent()
    upstream.signature_cache.observe_version(
        model, response.model_spec.version.value, sent.address
    )
    return codec.encode_predict_response(response.outputs, sent.call.row_format)


# Backend refusals a request converted with an older version's signatures can get: an input alias,
# dtype or shape that version does not have (INVALID_ARGUMENT), a signature it lacks.
_MAYBE_STALE = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)


class _Sent:
    """Where the last attempt of a request went, and what it was converted with."""

    __slots__ = ("address", "cached", "call")

    def __init__(self) -> None:
        self.address: str | None = None
        self.cached: CachedSignatures | None = None
        self.call: codec.PredictCall | None = None


def _call(
    upstream: Upstream,
    model: ModelRef,
    body: dict,
    call: codec.PredictCall,
    cached: CachedSignatures,
    deadline: Deadline,
    sent: _Sent,
    prefer: str | None,
) -> predict_pb2.PredictResponse:
    """Predict on the endpoint the balancer picks, with the request converted for the version
    that endpoint was last seen serving (`call`, converted with `cached`, unless it differs)."""
    lookup = upstream.signature_cache.for_endpoint

    def request_for(endpoint) -> predict_pb2.PredictRequest:
        sent.address, sent.cached, sent.call = endpoint.address, cached, call
        theirs = lookup(model, endpoint.address, call.signature_name)
        if theirs is not None and theirs is not cached and theirs.signatures != cached.signatures:
            sent.cached = theirs  # a replica still (or already) on another version
            sent.call = None
            sent.call = converted = codec.decode_predict_body(body, theirs.signatures)
        else:
            converted = call
        return predict_pb2.PredictRequest(
            model_spec=model.spec(converted.signature_name), inputs=converted.inputs
        )

    try:
        return upstream.call("Predict", request_for, model.name, deadline, prefer=prefer)
    except UpstreamError as err:
        if err.code == grpc.StatusCode.INVALID_ARGUMENT and sent.call is not None:
            hint = codec.shape_hint(sent.cached.signatures[sent.call.signature_name],
                                    sent.call.inputs)
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
