"""REST's rendering of the gateway's errors: the one handler.

Every error answered on purpose is a `tfstack.protocol.errors.ProtocolError` (the codec's, the
routes' and the gateway's own in domain.py): it carries its HTTP status and TF Serving's text, and
one handler renders it.
Views raise; they never build error responses. Messages follow TF Serving's REST API (the texts
and status mapping are listed in docs/gateway.md, Errors) so the gateway is a drop-in.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from tfstack.gateway.domain import PayloadTooLarge
from tfstack.protocol import json_text
from tfstack.protocol.errors import ProtocolError

log = logging.getLogger("tfstack.gateway")


def json_error(status: int, message: str, **extra: object) -> Response:
    body = json_text.error_document(message, **extra)
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
        state = g.get("tfstack")
        request_id = state.request_id if state is not None else ""
        log.error("unhandled exception (request_id=%s)", request_id, exc_info=err)
        return json_error(500, "internal error", request_id=request_id)
