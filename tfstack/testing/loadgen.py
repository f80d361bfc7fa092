"""Bounded load over loopback: HTTP through the gateway, or a pinned-gRPC baseline client.

Every run is bounded twice: a fixed number of requests and a time cap, whichever comes first.

- Closed loop (`rate=None`): `concurrency` threads, each sending its next request when the
  previous one ends — offered load adapts to the server.
- Open loop (`rate=R`): request i is due at `start + i/R` whatever the server does, sent by one of
  `concurrency` threads; latency counts from the due time, so a stalled server shows up as latency
  instead of as fewer requests (no coordinated omission, as in wrk2).

Targets: `HttpTarget` (one keep-alive connection per thread, like most HTTP clients), and
`PinnedGrpcTarget`, the baseline of issue 4's benchmark: each client thread opens one gRPC channel
to one replica, picked round-robin per connection, and keeps it for its lifetime — what a client
behind a plain Kubernetes Service gets, since HTTP/2 multiplexes everything over that connection.

    python -m tfstack.testing.loadgen http http://127.0.0.1:8080/v1/models/half_plus_two:predict \\
        --body '{"instances": [1.0, 2.0]}' -c 8 -n 2000 -d 10
    python -m tfstack.testing.loadgen grpc 127.0.0.1:8500,127.0.0.1:8510 --model half_plus_two \\
        -c 8 -n 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


class HttpSession:
    """One keep-alive HTTP/1.1 connection; reconnects after an error or `Connection: close`."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.conn: http.client.HTTPConnection | None = None

    def send(self, request: HttpRequest) -> tuple[str, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            self.conn.request(request.method, request.path, request.body, dict(request.headers))
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as err:
            self.close()
            return f"error:{type(err).__name__}", b""
        if response.will_close:
            self.close()
        return str(response.status), body

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class HttpTarget:
    """`request` is one HttpRequest for every call, or a function of the request index."""

    def __init__(
        self,
        base_url: str,
        request: HttpRequest | Callable[[int], HttpRequest],
        timeout_s: float = 30.0,
        on_response: Callable[[int, str, bytes], None] | None = None,
        loopback_only: bool = True,
    ) -> None:
        """`loopback_only=False` is for the cluster suite, which runs inside the cluster's own
        network namespace (Service and pod addresses exist only there)."""
        url = urlsplit(base_url)
        if loopback_only and url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("load goes to loopback only")
        self.host, self.port = url.hostname, url.port or 80
        self.request = request if callable(request) else (lambda _i, r=request: r)
        self.timeout_s = timeout_s
        self.on_response = on_response

    def open(self, worker: int) -> Callable[[int], str]:
        session = HttpSession(self.host, self.port, self.timeout_s)

        def send(index: int) -> str:
            status, body = session.send(self.request(index))
            if self.on_response is not None:
                self.on_response(index, status, body)
            return status

        send.close = session.close  # type: ignore[attr-defined]
        return send


class PinnedGrpcTarget:
    """The baseline: thread k uses one channel to `backends[k % n]` for the whole run."""

    def __init__(
        self,
        backends: Sequence[str],
        request_bytes: bytes,
        method: str = "/tensorflow.serving.PredictionService/Predict",
        timeout_s: float = 30.0,
    ) -> None:
        import grpc  # only the gRPC baseline needs it

        self._grpc = grpc
        self.backends = list(backends)
        self.request_bytes, self.method, self.timeout_s = request_bytes, method, timeout_s

    def open(self, worker: int) -> Callable[[int], str]:
        grpc = self._grpc
        # A local subchannel pool gives each channel its own TCP connection; by default gRPC
        # shares one connection among all channels to the same address in a process.
        channel = grpc.insecure_channel(self.backends[worker % len(self.backends)],
                                        options=[("grpc.use_local_subchannel_pool", 1)])
        # Raw bytes in and out: the baseline measures transport and server, not protobuf.
        call = channel.unary_unary(self.method)

        def send(_index: int) -> str:
            try:
                call(self.request_bytes, timeout=self.timeout_s)
            except grpc.RpcError as err:
                return err.code().name if err.code() else "UNKNOWN"
            return "OK"

        send.close = channel.close  # type: ignore[attr-defined]
        return send


def predict_request_bytes(model: str, values: Sequence[float], input_name: str = "x") -> bytes:
    """A serialized PredictRequest with one DT_FLOAT vector input (half_plus_two's shape)."""
    from tfstack.protocol.proto import predict_pb2, types_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    tensor = request.inputs[input_name]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = len(values)
    tensor.float_val.extend(values)
    return request.SerializeToString()


OK_STATUSES = frozenset({"200", "OK"})
# Latency histogram buckets: 10 per decade from 100 µs to 100 s.
BUCKETS_S = tuple(10 ** (exp / 10) for exp in range(-40, 21))


@dataclass
class LoadResult:
    """What a run produced; `records` holds (start offset s, latency s, status) per request."""

    elapsed_s: float
    records: list[tuple[float, float, str]] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[str]:
        return Counter(status for _, _, status in self.records)

    def latencies(self, ok_only: bool = False) -> list[float]:
        return sorted(lat for _, lat, status in self.records
                      if not ok_only or status in OK_STATUSES)

    def percentile(self, q: float, ok_only: bool = False) -> float:
        """The q-th percentile latency (nearest rank), NaN when there is no sample."""
        values = self.latencies(ok_only)
        if not values:
            return math.nan
        return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]

    def ok(self) -> int:
        return sum(1 for _, _, status in self.records if status in OK_STATUSES)

    def histogram(self) -> list[tuple[float, int]]:
        """Non-empty (upper bound s, count) buckets over every completed request."""
        counts: Counter[float] = Counter()
        for _, latency, _ in self.records:
            counts[next((b for b in BUCKETS_S if latency <= b), math.inf)] += 1
        return sorted(counts.items())

    def summary(self) -> dict[str, object]:
        elapsed = max(self.elapsed_s, 1e-9)
        return {
            "requests": len(self.records),
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_rps": round(len(self.records) / elapsed, 1),
            "goodput_rps": round(self.ok() / elapsed, 1),
            "statuses": dict(sorted(self.statuses.items())),
            "p50_ms": round(self.percentile(50) * 1000, 3),
            "p99_ms": round(self.percentile(99) * 1000, 3),
            "ok_p99_ms": round(self.percentile(99, ok_only=True) * 1000, 3),
        }


def run(
    target: HttpTarget | PinnedGrpcTarget,
    *,
    requests: int,
    duration_s: float,
    concurrency: int = 4,
    rate: float | None = None,
    stop: threading.Event | None = None,
    pause_after: Mapping[str, float] | None = None,
) -> LoadResult:
    """Send up to `requests` requests for at most `duration_s` seconds (see the module doc).

    `pause_after` (closed loop): seconds a client waits, outside any measurement, after a
    response with that status before its next request, e.g. `{"429": 0.02}` for clients that
    back off when told to (a 429 loop without pause only measures how fast 429s can be made).
    """
    if requests < 1 or duration_s <= 0 or concurrency < 1:
        raise ValueError("requests, duration_s and concurrency must be positive")
    stop = stop or threading.Event()
    lock = threading.Lock()
    next_index = 0
    records: list[tuple[float, float, str]] = []
    start = time.perf_counter()
    end = start + duration_s

    def take() -> int | None:
        nonlocal next_index
        with lock:
            if next_index >= requests or stop.is_set() or time.perf_counter() >= end:
                return None
            next_index += 1
            return next_index - 1

    def worker(number: int) -> None:
        send = target.open(number)
        try:
            while (index := take()) is not None:
                due = start + index / rate if rate else time.perf_counter()
                if due >= end:
                    break
                if (delay := due - time.perf_counter()) > 0:
                    if stop.wait(delay):
                        break
                status = send(index)
                finished = time.perf_counter()
                with lock:
                    records.append((due - start, finished - due, status))
                if pause_after and status in pause_after and stop.wait(pause_after[status]):
                    break
        finally:
            send.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:  # each request is bounded by the target's timeout
        thread.join()
    records.sort()
    return LoadResult(time.perf_counter() - start, records)


class Background:
    """`run(...)` in a thread, for load that keeps going while a test does something else;
    `stop_event.set()` ends it early."""

    def __init__(self, target: HttpTarget | PinnedGrpcTarget, **kwargs: object) -> None:
        self.stop_event = threading.Event()
        self.result: LoadResult | None = None
        self.started = time.perf_counter()
        self.thread = threading.Thread(
            target=self._run, args=(target,), kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, target: HttpTarget | PinnedGrpcTarget, **kwargs: object) -> None:
        self.result = run(target, stop=self.stop_event, **kwargs)  # type: ignore[arg-type]

    def offset(self) -> float:
        """Seconds since the load started (the time base of the result's records)."""
        return time.perf_counter() - self.started

    def join(self, timeout: float = 60) -> LoadResult:
        self.thread.join(timeout)
        assert self.result is not None, "load generator did not finish"
        return self.result


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tfstack.testing.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("http", "grpc"))
    parser.add_argument("target", help="http: URL; grpc: comma-separated host:port backends")
    parser.add_argument("--body", default='{"instances": [1.0, 2.0, 5.0]}', help="http body")
    parser.add_argument("--model", default="half_plus_two", help="grpc: model name")
    parser.add_argument("-c", "--concurrency", type=int, default=4)
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="time cap, seconds")
    parser.add_argument("--rate", type=float, default=None, help="open loop: requests/second")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.kind == "http":
        url = urlsplit(args.target)
        target: HttpTarget | PinnedGrpcTarget = HttpTarget(
            f"{url.scheme}://{url.netloc}",
            HttpRequest("POST", url.path or "/", args.body.encode()),
            timeout_s=args.timeout,
        )
    else:
        backends = [b.strip() for b in args.target.split(",") if b.strip()]
        target = PinnedGrpcTarget(backends, predict_request_bytes(args.model, [1.0, 2.0, 5.0]),
                                  timeout_s=args.timeout)
    result = run(target, requests=args.requests, duration_s=args.duration,
                 concurrency=args.concurrency, rate=args.rate)
    print(json.dumps(result.summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
