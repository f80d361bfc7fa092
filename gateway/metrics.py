"""The gateway's Prometheus metrics, declared once (the contract is docs/metrics.md).

Under gunicorn, gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker imports this
module, so every value lives in a per-process file and `/metrics` sums them over workers.
"""

from __future__ import annotations

import os
import struct
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

METHODS = ("predict", "classify", "regress", "status", "metadata")
RPCS = ("Predict", "Classify", "Regress", "GetModelMetadata", "GetModelStatus")

# Seconds; from sub-millisecond gateway overhead up to the longest sensible deadline.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

REQUESTS = Counter(
    "tfstack_gateway_requests_total",
    "REST requests answered, by model, REST method and HTTP status code.",
    ["model", "method", "code"],
)
REQUEST_DURATION = Histogram(
    "tfstack_gateway_request_duration_seconds",
    "Time from request received to response ready, by model and REST method.",
    ["model", "method"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_DURATION = Histogram(
    "tfstack_gateway_upstream_duration_seconds",
    "Duration of gRPC calls to the backend, by model and RPC, whatever their outcome.",
    ["model", "rpc"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "tfstack_gateway_upstream_errors_total",
    "gRPC calls to the backend that failed, by model, RPC and gRPC status code name.",
    ["model", "rpc", "grpc_code"],
)
INFLIGHT = Gauge(
    "tfstack_gateway_inflight_requests",
    "REST requests being handled right now, summed over live workers.",
    multiprocess_mode="livesum",
)

ENDPOINTS = Gauge(
    "tfstack_gateway_endpoints",
    "Backend endpoints by state (ready: in rotation; ejected: failing, backing off or probing); "
    "the highest count any live worker sees.",
    ["state"],
    multiprocess_mode="livemax",
)
ADMISSION_REJECTIONS = Counter(
    "tfstack_gateway_admission_rejections_total",
    "Requests refused with 429 by admission control, by reason "
    "(worker_inflight, model_inflight, draining).",
    ["reason"],
)
RETRIES = Counter(
    "tfstack_gateway_retries_total",
    "Decisions after a failed backend call: outcome=retry, or why not (unsafe, "
    "attempts_exhausted, deadline, no_other_endpoint, budget_exhausted).",
    ["outcome"],
)


def exposition() -> tuple[bytes, str]:
    """The /metrics body: summed over every worker's files in multiprocess mode."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    # A worker creating a metric file while the scrape reads it (first use of a new label set,
    # a worker just forked) leaves it briefly too short to parse: prometheus_client then raises
    # struct.error. The file is complete a moment later, so read again rather than answer 500.
    for attempt in range(3):
        try:
            return generate_latest(registry), CONTENT_TYPE_LATEST
        except struct.error:
            if attempt == 2:
                raise
            time.sleep(0.01)
    raise AssertionError("unreachable")
