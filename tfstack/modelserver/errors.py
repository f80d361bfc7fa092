"""One error model: a status code (gRPC's numbering, which is TF's) and TF Serving's message.

ServingError is the protocol's StatusError (tfstack/protocol/errors.py): gRPC aborts with its code,
REST answers its HTTP status, like every other protocol error (the codec's, the routes').
"""

from __future__ import annotations

import grpc

from tfstack.protocol.errors import StatusError


class ServingError(StatusError):
    """A failed request, carrying the code and message TF Serving would return."""

    @property
    def code_name(self) -> str:
        return self.code.name


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNAVAILABLE, message)


def unimplemented(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNIMPLEMENTED, message)


# gRPC status code number -> StatusCode (TF's error codes use the same numbers).
CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def from_tf_error(err: Exception) -> ServingError:
    """A TensorFlow OpError (or anything else) as a ServingError with the same code."""
    code = CODE_BY_NUMBER.get(getattr(err, "error_code", 2), grpc.StatusCode.UNKNOWN)
    message = getattr(err, "message", None) or str(err)
    return ServingError(code, message)
