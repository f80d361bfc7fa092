"""The gRPC front door's server: TF Serving's gRPC API, the health service and an HTTP side.

`GrpcGateway(settings)` is the gRPC counterpart of app.py's `create_app`: a `grpc.server` whose
thread pool runs tfstack/gateway/grpc_front.py over the same backend client as the REST workers
(upstream.Upstream: discovery, balancing, ejection, retries, readiness checks), the standard
health service `grpc.health.v1.Health` (SERVING while an endpoint in rotation passes its readiness
check; Kubernetes' `grpc:` probes ask it), and a small HTTP side on TFSTACK_GRPC_OPS_BIND with
/healthz, /readyz and /metrics. tfstack/gateway/grpc_server.py runs it as a process.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tfstack.gateway import accesslog, metrics
from tfstack.gateway.admission import Admission, thread_cap
from tfstack.gateway.discovery import split_host_port
from tfstack.gateway.grpc_front import FrontDoor
from tfstack.gateway.settings import Settings
from tfstack.gateway.upstream import Upstream
from tfstack.protocol.rpcs import MODEL_SERVICE, PREDICTION_SERVICE

log = logging.getLogger(__name__)
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    return [
        # Clients send and receive tensors as large as TF Serving takes (gRPC's default: 4 MiB).
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        # HTTP/2 keeps a client on one gateway replica for the connection's life. Ending each
        # connection after 5 minutes (calls in flight get the graceful timeout to finish) lets
        # long-lived clients spread over replicas the gateway's autoscaler adds.
        ("grpc.max_connection_age_ms", 300_000),
        ("grpc.max_connection_age_grace_ms", settings.graceful_timeout_s * 1000),
        # Clients that keep idle connections alive with pings are not cut off for it.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        # A port already in use fails start-up instead of being silently shared (SO_REUSEPORT).
        ("grpc.so_reuseport", 0),
    ]


class GrpcGateway:
    """The front door's server, its health service and its HTTP side; `start()`, `drain()`,
    `stop()`."""

    def __init__(self, settings: Settings, upstream: Upstream | None = None) -> None:
        self.settings = settings
        self.upstream = upstream or Upstream(settings)
        metrics.record_build_info()
        # As REST: a fixed bound when set, else per ready endpoint; never more than the server's
        # threads minus one (a call holds a thread for its whole life).
        admission = Admission(
            settings.grpc_max_inflight,
            dict(settings.model_max_inflight),
            settings.retry_after_s,
            per_endpoint=settings.max_inflight_per_endpoint,
            ready_endpoints=lambda: self.upstream.health.counts()["ready"],
            cap=thread_cap(settings.grpc_threads),
        )
        self.front = FrontDoor(
            self.upstream, admission, settings.deadline_ms,
            accesslog.access_logger(settings.access_log),
        )
        self.health = health.HealthServicer()
        self.draining = threading.Event()
        self._stopping = threading.Event()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(settings.grpc_threads, thread_name_prefix="grpc-front"),
            handlers=self.front.handlers(),
            options=server_options(settings),
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.ops = ThreadingHTTPServer(split_host_port(settings.grpc_ops_bind), _OpsHandler)
        self.ops.daemon_threads = True
        self.ops.gateway = self  # type: ignore[attr-defined]

    def start(self) -> GrpcGateway:
        self.upstream.start()  # discovery, channels, a first readiness check: before serving
        self._publish_health()
        self.server.add_insecure_port(self.settings.grpc_bind)  # raises if the port is taken
        self.server.start()
        for name, target in (("health-publisher", self._health_loop),
                             ("grpc-ops-http", self.ops.serve_forever)):
            threading.Thread(target=target, name=name, daemon=True).start()
        log.info("gRPC front door on %s, /healthz /readyz /metrics on %s",
                 self.settings.grpc_bind, self.settings.grpc_ops_bind)
        return self

    def readiness(self) -> tuple[bool, dict[str, object]]:
        if self.draining.is_set():
            return False, {"ready": False, "draining": True}
        ready, endpoints = self.upstream.readiness()
        return ready, {"ready": ready, "endpoints": endpoints}

    def _publish_health(self) -> None:
        ready, _ = self.readiness()
        for service in ("", PREDICTION_SERVICE, MODEL_SERVICE):
            self.health.set(service, _SERVING if ready else _NOT_SERVING)

    def _health_loop(self) -> None:
        interval = self.settings.ready_check_interval_ms / 1000
        while not self._stopping.wait(interval):
            try:
                self._publish_health()
            except Exception:  # health reporting trouble must not end the loop
                log.exception("publishing health failed")

    def drain(self) -> None:
        """Not ready from now on (health NOT_SERVING, /readyz 503); requests are still served."""
        self.draining.set()
        self.health.enter_graceful_shutdown()

    def stop(self, grace_s: float) -> None:
        """Refuse new calls, let calls in flight finish for up to `grace_s`, then close."""
        self._stopping.set()
        self.server.stop(grace_s).wait()
        self.ops.shutdown()
        self.ops.server_close()


class _OpsHandler(BaseHTTPRequestHandler):
    """/healthz (the process answers), /readyz (as the REST side's), /metrics."""

    server: Any

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        gateway: GrpcGateway = self.server.gateway
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, content_type = metrics.exposition()
            self._send(200, body, content_type)
        elif path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/readyz":
            ready, body = gateway.readiness()
            self._json(200 if ready else 503, body)
        else:
            self._json(404, {"error": "Not Found"})

    def _json(self, status: int, obj: object) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        """Probes and scrapes are not worth a log line each."""
