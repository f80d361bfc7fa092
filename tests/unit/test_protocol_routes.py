"""TF Serving's REST routing and the gRPC → HTTP error table (docs/gateway.md), as both front doors
use them (tfstack/protocol)."""

from __future__ import annotations

import grpc
import pytest

from tfstack.protocol.errors import (
    GRPC_TO_HTTP,
    BadVersion,
    CodecError,
    MalformedRequest,
    MissingModelName,
    MissingOrigin,
    ProtocolError,
    StatusError,
    http_status_for,
)
from tfstack.protocol.routes import ModelRef, Route, is_v1, plain_path, resolve, routed_path


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/v1/models/half_plus_two:predict", Route("predict", ModelRef("half_plus_two"))),
        ("POST", "/v1/models/m/versions/2:predict", Route("predict", ModelRef("m", 2))),
        ("POST", "/v1/models/m/labels/c:predict", Route("predict", ModelRef("m", None, "c"))),
        ("POST", "/v1/models/m:classify", Route("classify", ModelRef("m"))),
        ("POST", "/v1/models/m/versions/1:regress", Route("regress", ModelRef("m", 1))),
        ("POST", "/V1/MODELS/m:predict", Route("predict", ModelRef("m"))),
        ("POST", "/v1/models/my%20model:predict", Route("predict", ModelRef("my model"))),
        ("GET", "/v1/models/m", Route("status", ModelRef("m"))),
        ("GET", "/v1/models/m/versions/3", Route("status", ModelRef("m", 3))),
        ("GET", "/v1/models/m/labels/stable", Route("status", ModelRef("m", None, "stable"))),
        ("GET", "/v1/models/m/metadata", Route("metadata", ModelRef("m"))),
        ("GET", "/v1/models/m/versions/3/metadata", Route("metadata", ModelRef("m", 3))),
        ("GET", "/v1/models/m/labels/l/metadata", Route("metadata", ModelRef("m", None, "l"))),
        ("GET", "/v1/Models/m/Versions/3", Route("status", ModelRef("m", 3))),
        # Only the exact `metadata` token asks for metadata; TF Serving answers the status here.
        ("GET", "/v1/models/m/METADATA", Route("status", ModelRef("m"))),
        ("GET", "/v1/models/m/labels/a%2Fb", Route("status", ModelRef("m", None, "a/b"))),
    ],
)
def test_routes(method, path, route):
    assert resolve(method, path) == route


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models/m:predict"),
        ("POST", "/v1/models/m"),
        ("POST", "/v1/models/m:PREDICT"),  # the regex ignores case, dispatch does not
        ("POST", "/v1/models/m:explain"),
        ("PUT", "/v1/models/m:predict"),
        ("DELETE", "/v1/models/m"),
        ("GET", "/v1/models/m/version/1"),
        ("GET", "/v1/models/m/versions/x"),
        ("GET", "/v1/models/m/versions/1/labels/a"),
        ("GET", "/v1/models/m/"),
        ("GET", "/v1/anything"),
        ("POST", "/v1/models/m/versions/-1:predict"),
        ("POST", "/v1/models/m/versions/\u0663:predict"),  # RE2 matches ASCII digits only
    ],
)
def test_malformed(method, path):
    with pytest.raises(MalformedRequest) as err:
        resolve(method, path)
    assert err.value.message == f"Malformed request: {method} {path}"
    assert err.value.status == 400


def test_missing_model_name():
    with pytest.raises(MissingModelName) as err:
        resolve("GET", "/v1/models")
    assert (err.value.status, err.value.message) == (400, "Missing model name in request.")


def test_version_beyond_int64():
    with pytest.raises(BadVersion) as err:
        resolve("GET", "/v1/models/m/versions/99999999999999999999")
    assert err.value.message == "Failed to convert version: 99999999999999999999 to numeric."


@pytest.mark.parametrize(
    ("path", "v1"), [("/v1/models", True), ("/V1/x", True), ("/v1", False), ("/healthz", False)]
)
def test_is_v1(path, v1):
    assert is_v1(path) is v1


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.OK, 200),
        (grpc.StatusCode.CANCELLED, 499),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.OUT_OF_RANGE, 400),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DATA_LOSS, 500),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
    ],
)
def test_grpc_to_http(code, status):
    assert http_status_for(code) == status
    err = StatusError(code, "details")
    assert (err.status, err.message) == (status, "details")


def test_table_covers_every_grpc_code():
    assert set(GRPC_TO_HTTP) == set(grpc.StatusCode)
    assert http_status_for(None) == 500


@pytest.mark.parametrize(
    ("err", "status", "code"),
    [
        (CodecError("JSON Parse error: Invalid value."), 400, grpc.StatusCode.INVALID_ARGUMENT),
        (CodecError("Conversion of JSON Value: 1 to type: half", 501), 501,
         grpc.StatusCode.UNIMPLEMENTED),
        (MalformedRequest("PUT", "/v1/models/m"), 400, grpc.StatusCode.INVALID_ARGUMENT),
        (MissingOrigin(), 400, grpc.StatusCode.FAILED_PRECONDITION),
        (StatusError(grpc.StatusCode.NOT_FOUND, "Servable not found"), 404,
         grpc.StatusCode.NOT_FOUND),
    ],
)  # fmt: skip
def test_every_protocol_error_carries_its_http_status_and_grpc_code(err, status, code):
    assert isinstance(err, ProtocolError)
    assert (err.status, err.code) == (status, code)
    assert (err.extra, err.headers) == ({}, {})


@pytest.mark.parametrize(
    ("target", "routed", "plain"),
    [
        ("/v1/models/m:predict", "/v1/models/m:predict", "/v1/models/m:predict"),
        ("/v1/models/m:predict?x=1", "/v1/models/m:predict?x=1", "/v1/models/m:predict"),
        ("/v1/models/m:predict?", "/v1/models/m:predict?", "/v1/models/m:predict"),
        ("/v1/models/m#top", "/v1/models/m#top", "/v1/models/m"),
        ("/v1/models/my%20model?a=%2F", "/v1/models/my%20model?a=%2F", "/v1/models/my%20model"),
        # absolute-form: scheme and authority go, as evhttp_uri_parse splits them off
        ("http://host:8501/v1/models/m?x", "/v1/models/m?x", "/v1/models/m"),
        ("http://host:8501", "/", "/"),
        ("http://host:8501?x", "/?x", "/"),
        ("*", "*", "*"),
    ],
)
def test_the_routed_path_keeps_the_query_as_tf_servings_uri_path_does(target, routed, plain):
    assert routed_path(target) == routed
    assert plain_path(target) == plain


def test_a_query_string_makes_a_predict_path_malformed():
    """TF Serving's regexes must match the whole path with its query: this is not a predict."""
    with pytest.raises(MalformedRequest) as err:
        resolve("POST", routed_path("/v1/models/m:predict?debug=1"))
    assert err.value.message == "Malformed request: POST /v1/models/m:predict?debug=1"
    # A GET status path takes the query into the model name ([^/:]+), and asks for that model.
    assert resolve("GET", "/v1/models/m?x=1") == Route("status", ModelRef("m?x=1"))
