"""One error model: exceptions that carry their HTTP status, and one handler that renders them.

Views raise; they never build error responses. Messages follow TF Serving's REST API (the texts
and status mapping are listed in docs/gateway.md, Errors) so the gateway is a drop-in.
"""

from __future__ import annotations

import logging

import grpc
from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from tfstack.protocol.codec import CodecError, dumps

log = logging.getLogger("tfstack.gateway")

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


class GatewayError(Exception):
    """Base of every error the gateway answers on purpose; `status` is the HTTP status and
    `extra` holds members rendered beside `error` (TF Serving clients read only `error`)."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, str] = {}


class BadRequest(GatewayError):
    status = 400


class MalformedRequest(BadRequest):
    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Malformed request: {method} {path}")


class MissingModelName(BadRequest):
    def __init__(self) -> None:
        super().__init__("Missing model name in request.")


class BadVersion(BadRequest):
    def __init__(self, raw: str) -> None:
        super().__init__(f"Failed to convert version: {raw} to numeric.")


class BadTimeoutHeader(BadRequest):
    def __init__(self, header: str, raw: str) -> None:
        super().__init__(f"{header} must be a positive integer (milliseconds), got {raw!r}")


class MissingOrigin(BadRequest):
    def __init__(self) -> None:
        super().__init__("Origin header is missing in CORS preflight")


class PayloadTooLarge(GatewayError):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body larger than {limit} bytes (TFSTACK_MAX_BODY_BYTES)")


class DeadlineExceeded(GatewayError):
    status = 504

    def __init__(self, timeout_ms: float) -> None:
        super().__init__(f"Deadline Exceeded: no answer from the backend in {timeout_ms:.0f} ms")


class NoBackend(GatewayError):
    status = 503

    def __init__(self, detail: str) -> None:
        super().__init__(f"No backend available: {detail}")


class Overloaded(GatewayError):
    """Refused by admission control (gateway/admission.py): come back after `Retry-After`."""

    status = 429

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(f"Too many requests in flight ({reason}); retry after {retry_after_s}s")
        self.headers = {"Retry-After": str(retry_after_s)}


class UpstreamError(GatewayError):
    """A backend's gRPC error, passed through with TF Serving's status mapping and message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.status = http_status_for(code)


def json_error(status: int, message: str, **extra: object) -> Response:
    body = dumps({"error": message, **extra})
    return Response(body, status=status, mimetype="application/json")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def _gateway_error(err: GatewayError) -> Response:
        response = json_error(err.status, err.message, **err.extra)
        response.headers.update(getattr(err, "headers", {}))
        return response

    @app.errorhandler(CodecError)
    def _codec_error(err: CodecError) -> Response:
        return json_error(err.status, err.message)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_err: RequestEntityTooLarge) -> Response:
        limit = app.config.get("MAX_CONTENT_LENGTH") or 0
        return json_error(413, PayloadTooLarge(limit).message)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        return json_error(err.code or 500, err.description or err.name)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        request_id = g.get("request_id", "")
        log.error("unhandled exception (request_id=%s)", request_id, exc_info=err)
        return json_error(500, "internal error", request_id=request_id)
