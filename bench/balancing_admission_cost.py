"""How long the gateway's own per-request resilience decisions take (no network).

Admission (`try_acquire` + `release`, and a rejection), a health lookup over 3 endpoints, and a
retry-budget deposit, each timed over many iterations with `time.perf_counter`. Prints JSON.

    .venv/bin/python -m bench.balancing_admission_cost
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

from tfstack.gateway.admission import Admission
from tfstack.gateway.health import HealthTracker
from tfstack.gateway.retry import RetryBudget

ROUNDS, PER_ROUND = 200, 1000


def per_call_ns(operation: Callable[[], object]) -> dict[str, float]:
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(PER_ROUND):
            operation()
        samples.append((time.perf_counter() - start) / PER_ROUND * 1e9)
    samples.sort()
    return {
        "median_ns": round(statistics.median(samples), 1),
        "p99_ns": round(samples[int(len(samples) * 0.99) - 1], 1),
    }


def main() -> int:
    admitting = Admission(max_inflight=10**9, model_limits={"digits": 10**9})
    full = Admission(max_inflight=1)
    full.try_acquire(None)
    tracker = HealthTracker()
    endpoints = ["10.0.0.1:8500", "10.0.0.2:8500", "10.0.0.3:8500"]
    tracker.sync(endpoints)
    budget = RetryBudget()
    # The default: the bound follows the endpoints in rotation (the app passes the same lookup).
    derived = Admission(per_endpoint=10**9, model_limits={"digits": 10**9},
                        ready_endpoints=lambda: tracker.counts()["ready"])

    def admit_and_release_derived() -> None:
        derived.try_acquire("digits")
        derived.release("digits")

    def admit_and_release() -> None:
        admitting.try_acquire("digits")
        admitting.release("digits")

    results = {
        "admission_admit_and_release": per_call_ns(admit_and_release),
        "admission_admit_and_release_per_endpoint_bound": per_call_ns(admit_and_release_derived),
        "admission_reject": per_call_ns(lambda: full.try_acquire("digits")),
        "health_available_of_3": per_call_ns(lambda: tracker.available(endpoints)),
        "retry_budget_record_request": per_call_ns(budget.record_request),
        "python": sys.version.split()[0],
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
