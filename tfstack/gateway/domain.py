"""The gateway's domain types: a request's time budget, a model's cached signatures, and the
errors every layer raises (one hierarchy, `tfstack.protocol.errors.ProtocolError`, rendered by one
handler per front door: errors.py for REST, grpc_front.py for gRPC).

Standard library and the protocol package only: no Flask, no gRPC, no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tfstack.protocol import codec
from tfstack.protocol.errors import BadRequest, ProtocolError, StatusError


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
    """Refused by admission control (admission.py): come back after `Retry-After`."""

    status = 429

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(f"Too many requests in flight ({reason}); retry after {retry_after_s}s")
        self.headers["Retry-After"] = str(retry_after_s)


class UpstreamError(StatusError):
    """A backend's gRPC error, passed through with TF Serving's status mapping and message."""


@dataclass
class Deadline:
    """The time budget of one client request, shared by every backend call it makes."""

    timeout_ms: float
    started: float
    # The client asked for less than the gateway's own deadline: running out of it says nothing
    # about the backend (a 50 ms budget for a 100 ms model must not eject a healthy replica).
    client_shortened: bool = False

    @classmethod
    def capped(cls, asked_ms: float | None, cap_ms: float) -> Deadline:
        """The client's deadline (`None`: none given) capped by the gateway's `cap_ms`."""
        if asked_ms is None or asked_ms >= cap_ms:
            return cls(cap_ms, time.monotonic())
        return cls(asked_ms, time.monotonic(), client_shortened=True)

    def left_s(self) -> float:
        return self.timeout_ms / 1000 - (time.monotonic() - self.started)

    def remaining_s(self) -> float:
        left = self.left_s()
        if left <= 0:
            raise DeadlineExceeded(self.timeout_ms)
        return left


@dataclass(frozen=True)
class CachedSignatures:
    signatures: dict[str, codec.Signature]
    version: int  # the version the backend resolved when the metadata was fetched
