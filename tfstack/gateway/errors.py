"""The gateway's errors and the one handler that renders them.

Every error answered on purpose is a `tfstack.protocol.errors.ProtocolError` (the codec's and the
routes' included): it carries its HTTP status and TF Serving's text, and one handler renders it.
Views raise; they never build error responses. Messages follow TF Serving's REST API (the texts
and status mapping are listed in docs/gateway.md, Errors) so the gateway is a drop-in.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from tfstack.protocol.codec import dumps
from tfstack.protocol.errors import BadRequest, ProtocolError, StatusError

log = logging.getLogger("tfstack.gateway")


class BadTimeoutHeader(BadRequest):
    def __init__(self, header: str, raw: str) -> None:
        super().__init__(f"{header} must be a positive integer (milliseconds), got {raw!r}")


class PayloadTooLarge(ProtocolError):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body larger than {limit} bytes (TFSTACK_MAX_BODY_BYTES)")


class DeadlineExceeded(ProtocolError):
    status = 504

    def __init__(self, timeout_ms: float) -> None:
        super().__init__(f"Deadline Exceeded: no answer from the backend in {timeout_ms:.0f} ms")


class NoBackend(ProtocolError):
    status = 503

    def __init__(self, detail: str) -> None:
        super().__init__(f"No backend available: {detail}")


class Overloaded(ProtocolError):
    """Refused by admission control (tfstack/gateway/admission.py): come back after
    `Retry-After`."""

    status = 429

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(f"Too many requests in flight ({reason}); retry after {retry_after_s}s")
        self.headers["Retry-After"] = str(retry_after_s)


class UpstreamError(StatusError):
    """A backend's gRPC error, passed through with TF Serving's status mapping and message."""


def json_error(status: int, message: str, **extra: object) -> Response:
    body = dumps({"error": message, **extra})
    return Response(body, status=status, mimetype="application/json")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ProtocolError)
    def _protocol_error(err: ProtocolError) -> Response:
        response = json_error(err.status, err.message, **err.extra)
        response.headers.update(err.headers)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_err: RequestEntityTooLarge) -> Response:
        limit = app.config.get("MAX_CONTENT_LENGTH") or 0
        return _protocol_error(PayloadTooLarge(limit))

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        return json_error(err.code or 500, err.description or err.name)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        request_id = g.get("request_id", "")
        log.error("unhandled exception (request_id=%s)", request_id, exc_info=err)
        return json_error(500, "internal error", request_id=request_id)
