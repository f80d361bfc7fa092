"""The gateway's Prometheus metrics, declared once (the contract is docs/metrics.md).

Under gunicorn, PROMETHEUS_MULTIPROC_DIR comes from the start-up environment (the image, the
chart, `tfstack up`; gunicorn.conf.py refuses to start without it and empties it), so every value
lives in a per-process file and `/metrics` sums them over workers, skipping any file a killed
worker left unreadable.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import struct
import time
from typing import Any

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
from prometheus_client.mmap_dict import MmapedDict

log = logging.getLogger(__name__)

PROTOCOLS = ("rest", "grpc")  # the front door a request came through (app.py, grpc_front.py)

# Seconds; from sub-millisecond gateway overhead up to the longest sensible deadline.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

REQUESTS = Counter(
    "tfstack_gateway_requests_total",
    "Requests answered, by model, method, HTTP status code (a gRPC status as TF Serving maps it "
    "to HTTP) and protocol (rest, grpc).",
    ["model", "method", "code", "protocol"],
)
REQUEST_DURATION = Histogram(
    "tfstack_gateway_request_duration_seconds",
    "Time from request received to response ready, by model, method and protocol.",
    ["model", "method", "protocol"],
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
    "Requests being handled right now, summed over live workers (the gRPC front door's own "
    "process reports its own).",
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
    "(worker_inflight, model_inflight).",
    ["reason"],
)
RETRIES = Counter(
    "tfstack_gateway_retries_total",
    "Decisions after a failed backend call: outcome=retry, or why not (unsafe, "
    "attempts_exhausted, deadline, no_other_endpoint, budget_exhausted).",
    ["outcome"],
)
BUILD_INFO = Gauge(
    "tfstack_gateway_build_info",
    "Always 1: the running gateway's version, in the version label.",
    ["version"],
    multiprocess_mode="livemax",
)


def record_build_info() -> None:
    """Once per serving process (each REST worker's app, the gRPC front door)."""
    from tfstack import __version__

    BUILD_INFO.labels(__version__).set(1)


_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Counter | Gauge | Histogram, *values: str) -> Any:
    """`metric.labels(*values)`, remembered: prometheus_client's `labels` takes a lock and checks
    the values on every call (a few microseconds, on every request). The label sets are bounded
    (docs/metrics.md), so is this dict; a race between threads at worst asks `labels` twice,
    which hands back the same child."""
    key = (metric, values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found


def exposition() -> tuple[bytes, str]:
    """The /metrics body: summed over every worker's files in multiprocess mode."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    _ReadableFilesCollector(registry, path)
    # A worker creating a metric file while the scrape reads it (first use of a new label set,
    # a worker just forked) can leave it too short to parse for a moment: read again.
    for attempt in range(3):
        try:
            return generate_latest(registry), CONTENT_TYPE_LATEST
        except _UNREADABLE:
            if attempt == 2:
                raise
            time.sleep(0.01)
    raise AssertionError("unreachable")


# What prometheus_client raises on a file cut short (struct.error, "Read beyond file size"
# RuntimeError) or holding garbage (JSON or UTF-8 errors are ValueErrors).
_UNREADABLE = (struct.error, RuntimeError, ValueError)


class _ReadableFilesCollector(multiprocess.MultiProcessCollector):
    """prometheus_client's collector over the files it can read, skipping the others.

    A worker killed between creating its file and sizing it (SIGKILL, OOM kill) leaves an empty
    or short `.db` file for good, and prometheus_client fails every later scrape on it
    (prometheus/client_python#1199). Such a file holds no samples, so leaving it out loses
    nothing; it is not deleted, since a live worker may be creating it at this very moment.
    """

    def collect(self):
        files = sorted(glob.glob(os.path.join(self._path, "*.db")))
        return self.merge([f for f in files if _readable(f)], accumulate=True)


def _readable(path: str) -> bool:
    try:
        for key, _value, _timestamp, _pos in MmapedDict.read_all_values_from_file(path):
            json.loads(key)
    except FileNotFoundError:
        return False  # removed since the listing (a dead worker's live gauge)
    except _UNREADABLE:
        if path not in _skipped:
            _skipped.add(path)
            log.warning("skipping metrics file %s: cut short or corrupt (a worker killed while "
                        "creating it?)", path)
        return False
    return True


_skipped: set[str] = set()
