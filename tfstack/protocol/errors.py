"""TF Serving's error model, shared by both front doors: one base exception carrying the HTTP
status and TF Serving's text, one gRPC -> HTTP table, and the texts TF Serving's REST API answers
before any model runs.

The gateway renders these with one Flask handler (tfstack/gateway/errors.py); the model server's
REST API renders the same type (tfstack/modelserver/rest.py). Both answer `{"error": <message>}`.
"""

from __future__ import annotations

from http import HTTPStatus

import grpc

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc), keyed by gRPC status code.
GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def http_status_for(code: grpc.StatusCode | None) -> int:
    return GRPC_TO_HTTP.get(code, 500) if code is not None else 500


# What TF Serving's HTTP server answers where no handler takes the request (a path outside /v1/,
# other than the monitoring path): libevent's evhttp_send_error page, HTML, not JSON
# (util/net_http/server/internal/evhttp_server.cc; libevent's http.c ERR_FORMAT).
ERROR_PAGE_TYPE = "text/html"


def error_page(status: int) -> str:
    """The page for `status`, with its standard reason phrase (libevent's are the same)."""
    reason = HTTPStatus(status).phrase
    return (f"<HTML><HEAD>\n<TITLE>{status} {reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n"
            "</BODY></HTML>\n")


class ProtocolError(Exception):
    """Base of every error answered on purpose. `status` is the HTTP status, `code` the gRPC code
    TF Serving would give (the model server counts requests by its name), `message` the text of
    the `error` member; `extra` holds members rendered beside it (TF Serving clients read only
    `error`) and `headers` response headers."""

    status = 500
    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, str] = {}
        self.headers: dict[str, str] = {}


class StatusError(ProtocolError):
    """A gRPC status and its message, answered over HTTP with TF Serving's mapping."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = http_status_for(code)


class BadRequest(ProtocolError):
    status = 400
    code = grpc.StatusCode.INVALID_ARGUMENT


class CodecError(BadRequest):
    """A request or response the JSON codec cannot convert: 400, or 501 for TF Serving's
    UNIMPLEMENTED conversions (502 where a backend's answer cannot be read)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        if status != 400:
            self.code = grpc.StatusCode.UNIMPLEMENTED if status == 501 else grpc.StatusCode.INTERNAL


# --- TF Serving's REST texts for requests refused before any model runs ------------------------
# (model_servers/http_rest_api_handler.cc, http_rest_api_util.cc)


class MalformedRequest(BadRequest):
    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Malformed request: {method} {path}")


class MissingModelName(BadRequest):
    def __init__(self) -> None:
        super().__init__("Missing model name in request.")


class BadVersion(BadRequest):
    def __init__(self, raw: str) -> None:
        super().__init__(f"Failed to convert version: {raw} to numeric.")


class MissingOrigin(BadRequest):
    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self) -> None:
        super().__init__("Origin header is missing in CORS preflight")
