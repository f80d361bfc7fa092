"""Per-request choice among backend endpoints: power of two choices on outstanding requests.

The pool is the seam for later work (DNS / EndpointSlice discovery, ejection and probing back,
retries, admission control): callers only `acquire()` an endpoint, `release()` it with the outcome,
and read `snapshot()`. Endpoints carry opaque per-endpoint state (`client`, built lazily by the
`connect` callable, e.g. a gRPC channel and its stubs) so the pool knows nothing about gRPC.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Endpoint:
    address: str
    outstanding: int = 0
    requests: int = 0
    failures: int = 0
    last_error: str = ""
    state: str = "idle"  # updated by the connectivity watcher: idle|connecting|ready|...
    client: Any = field(default=None, repr=False)


class NoEndpoint(LookupError):
    """The pool has no endpoint to offer."""


class EndpointPool:
    def __init__(
        self,
        addresses: Iterable[str],
        connect: Callable[[Endpoint], Any],
        rng: random.Random | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._connect = connect
        self._rng = rng or random.Random()  # noqa: S311 (load balancing, not security)
        self._endpoints = [Endpoint(address) for address in addresses]

    def acquire(self) -> Endpoint:
        """The less loaded of two random endpoints, its outstanding count raised by one."""
        with self._lock:
            candidates = self._endpoints
            if not candidates:
                raise NoEndpoint("no backend endpoints configured")
            if len(candidates) == 1:
                chosen = candidates[0]
            else:
                a, b = self._rng.sample(candidates, 2)
                chosen = a if a.outstanding <= b.outstanding else b
            chosen.outstanding += 1
            chosen.requests += 1
            if chosen.client is None:
                chosen.client = self._connect(chosen)
            return chosen

    def release(self, endpoint: Endpoint, error: str | None = None) -> None:
        """Give `endpoint` back; `error` says why, when the call failed at transport level."""
        with self._lock:
            endpoint.outstanding -= 1
            if error:
                endpoint.failures += 1
                endpoint.last_error = error

    def all(self) -> list[Endpoint]:
        """Every endpoint, each connected (for readiness checks)."""
        with self._lock:
            for endpoint in self._endpoints:
                if endpoint.client is None:
                    endpoint.client = self._connect(endpoint)
            return list(self._endpoints)

    def snapshot(self) -> list[dict[str, object]]:
        with self._lock:
            return [
                {
                    "address": e.address,
                    "state": e.state,
                    "outstanding": e.outstanding,
                    "requests": e.requests,
                    "failures": e.failures,
                    "last_error": e.last_error,
                }
                for e in self._endpoints
            ]
