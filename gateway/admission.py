"""Admission control: a bound on work in flight per worker, so overload is refused at once.

Without a bound, requests beyond what the backends can serve queue up (in gunicorn's thread pool,
in gRPC) until they time out, and every client waits for nothing. With one, the gateway answers
the excess with 429 and `Retry-After` straight away and the admitted requests keep their latency.

The decision is a counter check under one lock: no I/O, no allocation on the hot path (rejections
are preallocated); about a microsecond (bench/balancing_admission_cost.py, docs/resilience.md).

Default bound, from the worker model: gunicorn's gthread worker runs `threads` requests at a time
and queues the rest where the app cannot see them. The default admits all but one thread's worth
(at least 1): the spare thread answers 429s, /healthz and /metrics at once while the others wait on
the backends. For stronger shedding give the worker more threads than it admits (e.g.
`TFSTACK_THREADS=16 TFSTACK_MAX_INFLIGHT=8`): the extra threads turn excess requests away quickly
instead of leaving them queued in gunicorn. A per-worker bound over sticky keep-alive connections
can refuse a little early when connections are spread unevenly over workers; measured in
docs/resilience.md.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

WORKER_INFLIGHT = "worker_inflight"
MODEL_INFLIGHT = "model_inflight"
REASONS = (WORKER_INFLIGHT, MODEL_INFLIGHT)


@dataclass(frozen=True)
class Rejection:
    """Why a request was not admitted; `retry_after_s` goes into the `Retry-After` header."""

    reason: str
    retry_after_s: int


def default_max_inflight(threads: int) -> int:
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
    Per-model limits apply only to models named in `model_limits` (a bounded set).
    """

    def __init__(
        self,
        max_inflight: int,
        model_limits: Mapping[str, int] | None = None,
        retry_after_s: int = 1,
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        self.max_inflight = max_inflight
        self.model_limits = dict(model_limits or {})
        self._lock = threading.Lock()
        self._inflight = 0
        self._model_inflight = dict.fromkeys(self.model_limits, 0)
        self._rejections = {reason: Rejection(reason, retry_after_s) for reason in REASONS}
        self.rejected = dict.fromkeys(REASONS, 0)

    def try_acquire(self, model: str | None = None) -> Rejection | None:
        with self._lock:
            if self._inflight >= self.max_inflight:
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
    def inflight(self) -> int:
        return self._inflight

    def model_inflight(self, model: str) -> int:
        return self._model_inflight.get(model, 0)

