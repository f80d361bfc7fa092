"""Per-request choice among backend endpoints: power of two choices on outstanding requests.

The pool is the seam for later work (DNS / EndpointSlice discovery, ejection and probing back,
retries, admission control): callers only `acquire()` an endpoint, `release()` it with the outcome,
and read `snapshot()`. Endpoints carry opaque per-endpoint state (`client`, built lazily by the
`connect` callable, e.g. a gRPC channel and its stubs) so the pool knows nothing about gRPC.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from tfstack.gateway.health import HealthTracker


@dataclass(eq=False)
class Endpoint:
    address: str
    outstanding: int = 0
    requests: int = 0
    failures: int = 0
    last_error: str = ""
    state: str = "idle"  # updated by the connectivity watcher: idle|connecting|ready|...
    client: Any = field(default=None, repr=False)
    added_at: float = field(default_factory=time.time)  # wall clock, when discovery added it
    first_request_at: float | None = None  # wall clock, when it was first chosen


class NoEndpoint(LookupError):
    """The pool has no endpoint to offer."""


class EndpointPool:
    """Endpoints in rotation, with `health` (if given) deciding which are; `update()` follows
    discovery: a removed endpoint keeps its client until its in-flight calls finish, then
    `disconnect` closes it."""

    def __init__(
        self,
        addresses: Iterable[str],
        connect: Callable[[Endpoint], Any],
        rng: random.Random | None = None,
        health: HealthTracker | None = None,
        disconnect: Callable[[Endpoint], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._connect = connect
        self._disconnect = disconnect
        self._rng = rng or random.Random()  # noqa: S311 (load balancing, not security)
        self._health = health
        self._endpoints: list[Endpoint] = []
        self._retiring: set[Endpoint] = set()
        self.update(addresses)

    def update(self, addresses: Iterable[str]) -> None:
        """Balance over exactly `addresses` from now on (a discovery listener)."""
        wanted = list(dict.fromkeys(addresses))
        with self._lock:
            current = {e.address: e for e in self._endpoints}
            self._endpoints = [current.pop(a, None) or Endpoint(a) for a in wanted]
            idle = [e for e in current.values() if e.outstanding == 0]
            self._retiring.update(e for e in current.values() if e.outstanding > 0)
        if self._health is not None:
            self._health.sync(wanted)
        for endpoint in idle:
            self._close(endpoint)

    def _in_rotation(self, exclude: Collection[str]) -> list[Endpoint]:
        candidates = [e for e in self._endpoints if e.address not in exclude]
        if self._health is None or not candidates:
            return candidates
        routable = set(self._health.available(e.address for e in candidates))
        return [e for e in candidates if e.address in routable]

    def acquire(self, exclude: Collection[str] = (), prefer: str | None = None) -> Endpoint:
        """The less loaded of two random endpoints in rotation (not in `exclude`), or `prefer`
        while it is in rotation; its outstanding count raised by one."""
        with self._lock:
            candidates = self._in_rotation(exclude)
            if not candidates:
                raise NoEndpoint(
                    "no other backend endpoint to try" if exclude
                    else "no backend endpoints configured"
                )
            preferred = [e for e in candidates if e.address == prefer] if prefer else []
            if preferred:
                chosen = preferred[0]
            elif len(candidates) == 1:
                chosen = candidates[0]
            else:
                a, b = self._rng.sample(candidates, 2)
                chosen = a if a.outstanding <= b.outstanding else b
            chosen.outstanding += 1
            chosen.requests += 1
            if chosen.first_request_at is None:
                chosen.first_request_at = time.time()
            if chosen.client is None:
                chosen.client = self._connect(chosen)
            return chosen

    def untried(self, exclude: Collection[str]) -> int:
        """How many healthy endpoints are not in `exclude` (for the retry decision)."""
        with self._lock:
            return sum(
                1 for e in self._endpoints
                if e.address not in exclude
                and (self._health is None or self._health.is_healthy(e.address))
            )

    def find(self, address: str) -> Endpoint | None:
        with self._lock:
            return next((e for e in self._endpoints if e.address == address), None)

    def release(self, endpoint: Endpoint, error: str | None = None) -> None:
        """Give `endpoint` back; `error` says why, when the call failed at transport level."""
        with self._lock:
            endpoint.outstanding -= 1
            if error:
                endpoint.failures += 1
                endpoint.last_error = error
            retired = endpoint in self._retiring and endpoint.outstanding == 0
            if retired:
                self._retiring.discard(endpoint)
        if retired:
            self._close(endpoint)

    def _close(self, endpoint: Endpoint) -> None:
        if endpoint.client is not None and self._disconnect is not None:
            self._disconnect(endpoint)

    def all(self) -> list[Endpoint]:
        """Every endpoint, each connected (for readiness checks)."""
        with self._lock:
            for endpoint in self._endpoints:
                if endpoint.client is None:
                    endpoint.client = self._connect(endpoint)
            return list(self._endpoints)

    def snapshot(self) -> list[dict[str, object]]:
        health = {}
        if self._health is not None:
            health = {row.pop("endpoint"): row for row in self._health.snapshot()}
        with self._lock:
            return [
                {
                    "address": e.address,
                    "state": e.state,
                    "outstanding": e.outstanding,
                    "requests": e.requests,
                    "failures": e.failures,
                    "last_error": e.last_error,
                    "added_at": e.added_at,
                    "first_request_at": e.first_request_at,
                    **({"health": health[e.address]} if e.address in health else {}),
                }
                for e in self._endpoints
            ]
