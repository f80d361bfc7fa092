"""Retries: only when safe, on a different endpoint, within the deadline and a retry budget.

Safe means the call failed with UNAVAILABLE — the backend was going away or not there (gRPC
reports a refused or lost connection so too), and TF Serving's inference calls have no side
effects; a request that finds no endpoint at all never gets this far (`NoBackend`). Everything
else (DEADLINE_EXCEEDED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...) is returned as is: retrying a
timeout doubles the load exactly when the backends are slowest.

The budget bounds the extra load retries can add during an outage: each request deposits
`ratio` tokens (0.1: retries ≤ 10% of requests), each retry spends one, and a small floor
(`min_per_s`) lets a quiet worker still retry. The bucket is capped so a long quiet spell cannot
save up a retry storm. Each gunicorn worker has its own budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

RETRYABLE_CODES = frozenset({"UNAVAILABLE"})

RETRY = "retry"
# Reasons not to retry, for `tfstack_gateway_retries_total{outcome}`-style counting.
UNSAFE = "unsafe"
ATTEMPTS = "attempts_exhausted"
DEADLINE = "deadline"
NO_ENDPOINT = "no_other_endpoint"
BUDGET = "budget_exhausted"
OUTCOMES = (RETRY, UNSAFE, ATTEMPTS, DEADLINE, NO_ENDPOINT, BUDGET)


def is_safe_to_retry(code: object) -> bool:
    """`code` is a `grpc.StatusCode`, its name, or None when there was no status at all."""
    return getattr(code, "name", code) in RETRYABLE_CODES


class RetryBudget:
    """Token bucket limiting retries to `ratio` of requests plus `min_per_s` (thread-safe)."""

    def __init__(
        self,
        ratio: float = 0.1,
        min_per_s: float = 1.0,
        max_tokens: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio, self.min_per_s, self.max_tokens = ratio, min_per_s, max_tokens
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = max_tokens  # start full: the first failures after start can be retried
        self._refilled_at = clock()

    def record_request(self) -> None:
        """Call once per client request (not per attempt)."""
        with self._lock:
            self._tokens = min(self.max_tokens, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        """Take one token for a retry; False (and nothing taken) if the budget is spent."""
        with self._lock:
            self._refill()
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        elapsed, self._refilled_at = now - self._refilled_at, now
        self._tokens = min(self.max_tokens, self._tokens + elapsed * self.min_per_s)


class RetryPolicy:
    """Decides, after a failed attempt, whether to make another one.

    `min_remaining_s`: don't start an attempt that has less time than this left — it could only
    end in DEADLINE_EXCEEDED and would add load for nothing.
    """

    def __init__(
        self,
        budget: RetryBudget | None = None,
        max_attempts: int = 3,
        min_remaining_s: float = 0.005,
    ) -> None:
        self.budget = budget or RetryBudget()
        self.max_attempts = max_attempts
        self.min_remaining_s = min_remaining_s
        self._lock = threading.Lock()
        self.outcomes = dict.fromkeys(OUTCOMES, 0)

    def decide(
        self,
        *,
        code: object,
        attempts: int,
        remaining_s: float,
        untried_endpoints: int,
    ) -> str:
        """`RETRY`, or the reason not to. The budget is spent only when everything else allows
        the retry. `attempts` counts the attempts made so far (1 after the first failure);
        `untried_endpoints` counts routable endpoints this request has not tried yet."""
        if not is_safe_to_retry(code):
            outcome = UNSAFE
        elif attempts >= self.max_attempts:
            outcome = ATTEMPTS
        elif remaining_s < self.min_remaining_s:
            outcome = DEADLINE
        elif untried_endpoints < 1:
            outcome = NO_ENDPOINT
        elif not self.budget.try_spend():
            outcome = BUDGET
        else:
            outcome = RETRY
        with self._lock:
            self.outcomes[outcome] += 1
        return outcome

    def should_retry(self, **attempt: object) -> bool:
        return self.decide(**attempt) == RETRY
