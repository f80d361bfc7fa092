"""The load generator the fault tests and benchmarks use: bounds, schedule, counting, pinning."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from tfstack.testing.loadgen import (
    HttpRequest,
    HttpTarget,
    PinnedGrpcTarget,
    predict_request_bytes,
    run,
)


@pytest.fixture
def http_server():
    """Answers POST /ok with 200 and /busy with 429 after `delay_s`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        delay_s = 0.002

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(self.delay_s)
            code = 429 if self.path == "/busy" else 200
            self.wfile.write(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\n{}" % code)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    server.handler = Handler
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_closed_loop_sends_exactly_the_requested_count(http_server):
    target = HttpTarget(http_server.url, lambda i: HttpRequest("POST", "/busy" if i % 4 else "/ok"))
    result = run(target, requests=200, duration_s=30, concurrency=4)
    assert result.statuses == {"200": 50, "429": 150}
    assert result.ok() == 50
    assert 0 < result.percentile(50) <= result.percentile(99) < 1
    assert sum(count for _, count in result.histogram()) == 200


def test_pause_after_a_status_is_not_counted_as_latency(http_server):
    target = HttpTarget(http_server.url, lambda i: HttpRequest("POST", "/busy" if i % 2 else "/ok"))
    start = time.monotonic()
    result = run(target, requests=20, duration_s=30, concurrency=1, pause_after={"429": 0.05})
    assert time.monotonic() - start >= 10 * 0.05
    assert result.percentile(100) < 0.04


def test_time_cap_ends_the_run(http_server):
    http_server.handler.delay_s = 0.05
    start = time.monotonic()
    result = run(HttpTarget(http_server.url, HttpRequest("POST", "/ok")),
                 requests=10_000, duration_s=0.5, concurrency=2)
    assert time.monotonic() - start < 2
    assert 4 <= len(result.records) <= 30


def test_open_loop_keeps_its_schedule_and_counts_lateness_as_latency(http_server):
    result = run(HttpTarget(http_server.url, HttpRequest("POST", "/ok")),
                 requests=50, duration_s=10, concurrency=4, rate=100)
    starts = [start for start, _, _ in result.records]
    assert starts == pytest.approx([i / 100 for i in range(50)])
    assert 0.45 < result.elapsed_s < 2

    http_server.handler.delay_s = 0.05  # capacity 2 threads / 50 ms = 40/s, offered 100/s
    slow = run(HttpTarget(http_server.url, HttpRequest("POST", "/ok")),
               requests=40, duration_s=10, concurrency=2, rate=100)
    assert slow.percentile(99) > 0.3, "queueing delay shows up as latency"


def test_connection_errors_are_counted_not_raised(http_server):
    url = http_server.url
    http_server.shutdown()
    http_server.server_close()
    result = run(HttpTarget(url, HttpRequest("POST", "/ok")), requests=5, duration_s=5)
    assert result.statuses == {"error:ConnectionRefusedError": 5}


def test_only_loopback_targets():
    with pytest.raises(ValueError, match="loopback"):
        HttpTarget("http://example.com:8080", HttpRequest("GET", "/"))


def test_pinned_grpc_baseline_keeps_each_thread_on_one_backend():
    """Two backends, four client threads: each thread's calls all land on one backend."""
    seen: dict[int, set[str]] = {}
    lock = threading.Lock()
    servers = []

    def make_handler(port):
        def predict(request, context):
            with lock:
                seen.setdefault(port, set()).add(context.peer())
            return b""

        return grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
        )

    ports = []
    for _ in range(2):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        port = server.add_insecure_port("127.0.0.1:0")
        server.add_generic_rpc_handlers((make_handler(port),))
        server.start()
        servers.append(server)
        ports.append(port)
    try:
        target = PinnedGrpcTarget([f"127.0.0.1:{p}" for p in ports],
                                  predict_request_bytes("half_plus_two", [1.0]), timeout_s=5)
        result = run(target, requests=200, duration_s=30, concurrency=4)
        assert result.statuses == {"OK": 200}
        # Four connections (peers), two per backend, never moving.
        assert {port: len(peers) for port, peers in seen.items()} == {ports[0]: 2, ports[1]: 2}
    finally:
        for server in servers:
            server.stop(None)
