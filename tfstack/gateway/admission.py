"""Admission control: a bound on work in flight per worker, so overload is refused at once.

Without a bound, requests beyond what the backends can serve queue up (in gunicorn's thread pool,
in gRPC) until they time out, and every client waits for nothing. With one, the gateway answers
the excess with 429 and `Retry-After` straight away and the admitted requests keep their latency.

The decision is a counter check under one lock plus a look at how many endpoints are ready, no
I/O (rejections are preallocated); a few microseconds (bench/balancing_admission_cost.py,
docs/resilience.md).

Default bound, from what the backends can take: `per_endpoint` requests per ready endpoint (in
rotation, as the worker's health tracker sees it; at least one, so panic mode still gets through),
per worker. The default, 32, is sized on the local model server with batching on
(bench/worker_model.py, docs/benchmarks.md "Worker model"): its throughput stops growing at about 32
requests in flight and beyond only its latency grows (its batching queue refuses past 128); 32 per
worker admits all of 32 clients even when they all land on one worker, and the gateway's 2 default
workers keep at most 64 on each model server. Under the gevent worker an admitted request waiting on
a backend costs a greenlet, so nothing else bounds it. Under gthread a worker cannot run more than
its threads anyway: the bound is also capped at all but one thread (the spare one answers 429s,
/healthz and /metrics at once). `TFSTACK_MAX_INFLIGHT` > 0 replaces all of this with a fixed bound
per worker. A per-worker bound over sticky keep-alive connections can refuse a little early when
connections are spread unevenly over workers; docs/resilience.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

WORKER_INFLIGHT = "worker_inflight"
MODEL_INFLIGHT = "model_inflight"
REASONS = (WORKER_INFLIGHT, MODEL_INFLIGHT)


@dataclass(frozen=True)
class Rejection:
    """Why a request was not admitted; `retry_after_s` goes into the `Retry-After` header."""

    reason: str
    retry_after_s: int


def thread_cap(threads: int) -> int:
    """All but one of a gthread worker's threads, at least 1 (see the module docstring)."""
    return max(1, threads - 1)


def parse_model_limits(text: str) -> dict[str, int]:
    """`digits=4,half_plus_two=8` → {"digits": 4, "half_plus_two": 8}; ValueError if malformed."""
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"expected model=limit (limit >= 1), got {item!r}")
        limits[name] = int(raw)
    return limits


class Admission:
    """Non-blocking admission for one worker. Pair every successful `try_acquire` with `release`.

    `try_acquire(model)` returns None when the request may proceed, else the Rejection to send.
    The worker bound is `max_inflight` when given (> 0), else `per_endpoint` x
    `ready_endpoints()` (at least 1 endpoint), capped at `cap` if given.
    Per-model limits apply only to models named in `model_limits` (a bounded set).
    """

    def __init__(
        self,
        max_inflight: int = 0,
        model_limits: Mapping[str, int] | None = None,
        retry_after_s: int = 1,
        per_endpoint: int = 32,
        ready_endpoints: Callable[[], int] = lambda: 1,
        cap: int | None = None,
    ) -> None:
        if max_inflight < 0 or per_endpoint < 1 or (cap is not None and cap < 1):
            raise ValueError("max_inflight must be >= 0, per_endpoint and cap >= 1")
        self.fixed = max_inflight
        self.per_endpoint = per_endpoint
        self.cap = cap
        self._ready_endpoints = ready_endpoints
        self.model_limits = dict(model_limits or {})
        self._lock = threading.Lock()
        self._inflight = 0
        self._model_inflight = dict.fromkeys(self.model_limits, 0)
        self._rejections = {reason: Rejection(reason, retry_after_s) for reason in REASONS}
        self.rejected = dict.fromkeys(REASONS, 0)

    def try_acquire(self, model: str | None = None) -> Rejection | None:
        bound = self.max_inflight  # outside the lock: it may take the health tracker's
        with self._lock:
            if self._inflight >= bound:
                return self._reject(WORKER_INFLIGHT)
            limit = self.model_limits.get(model) if model is not None else None
            if limit is not None:
                if self._model_inflight[model] >= limit:
                    return self._reject(MODEL_INFLIGHT)
                self._model_inflight[model] += 1
            self._inflight += 1
            return None

    def release(self, model: str | None = None) -> None:
        with self._lock:
            self._inflight -= 1
            if model is not None and model in self._model_inflight:
                self._model_inflight[model] -= 1

    def _reject(self, reason: str) -> Rejection:
        self.rejected[reason] += 1  # under the lock
        return self._rejections[reason]

    @property
    def max_inflight(self) -> int:
        """The worker bound now (it follows the ready endpoints unless fixed)."""
        if self.fixed:
            return self.fixed
        bound = self.per_endpoint * max(1, self._ready_endpoints())
        return bound if self.cap is None else min(bound, self.cap)

    @property
    def inflight(self) -> int:
        return self._inflight

    def model_inflight(self, model: str) -> int:
        return self._model_inflight.get(model, 0)

