"""Scaling and goodput through the gateway vs a round-robin-per-connection client (issue 4).

Starts up to 3 local model servers (half_plus_two) and a gateway on loopback, then measures:

1. scaling: closed-loop throughput and p99 with 1, 2 and 3 replicas — through the gateway
   (per-request balancing) and through the baseline, client threads each holding one gRPC channel
   pinned to one replica (what clients behind a plain Kubernetes Service get);
2. goodput: open-loop offered load at 1x, 2x and 4x the measured capacity, same two paths, every
   request with a 1 s deadline; goodput = successful answers per second.

Every phase is bounded in requests and time. Prints JSON and a Markdown table.

    .venv/bin/python -m bench.balancing_scaling
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tfstack.testing.loadgen import (
    HttpRequest,
    HttpTarget,
    PinnedGrpcTarget,
    predict_request_bytes,
    run,
)

REPO = Path(__file__).resolve().parents[1]
BODY = b'{"instances": [1.0, 2.0, 5.0]}'
DEADLINE_MS = 1000


def start_stack(tmp: Path, replicas: int):
    sys.path.insert(0, str(REPO))
    from tests.fixtures.gateway import start_gateway
    from tests.fixtures.modelserver import start_modelserver
    from tfstack.runtime.procs import port_open

    models = REPO / "model_repo" / "models" / "half_plus_two"
    servers = [start_modelserver(tmp, None, "--model_name=half_plus_two",
                                 f"--model_base_path={models}", wait=False)
               for _ in range(replicas)]
    try:
        for server in servers:
            server.process.wait_until(lambda s=server: port_open("127.0.0.1", s.grpc_port), 180,
                                      "serving gRPC")
    except BaseException:  # the caller never gets them back to stop
        for server in servers:
            server.process.stop()
        raise
    return servers, start_gateway


def measure(target, *, concurrency: int, requests: int, duration_s: float,
            rate: float | None = None) -> dict:
    result = run(target, requests=requests, duration_s=duration_s, concurrency=concurrency,
                 rate=rate)
    summary = result.summary()
    return {key: summary[key] for key in
            ("requests", "throughput_rps", "goodput_rps", "p50_ms", "p99_ms", "statuses")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tfstack-bench-balancing-"))
    servers, start_gateway = start_stack(tmp, 3)
    request = HttpRequest("POST", "/v1/models/half_plus_two:predict", BODY,
                          (("Content-Type", "application/json"),
                           ("X-Request-Timeout-Ms", str(DEADLINE_MS))))
    predict = predict_request_bytes("half_plus_two", [1.0, 2.0, 5.0])
    report: dict[str, object] = {"concurrency": args.concurrency, "scaling": {}, "goodput": {}}
    phase = {"requests": 100_000, "duration_s": args.seconds}
    try:
        for count in (1, 2, 3):
            targets = [s.grpc_target for s in servers[:count]]
            gateway = start_gateway(tmp, targets, workers=2, threads=32, max_inflight=16,
                                    access_log="false")
            try:
                run(HttpTarget(gateway.url, request), requests=300, duration_s=5, concurrency=4)
                via_gateway = measure(HttpTarget(gateway.url, request),
                                      concurrency=args.concurrency, **phase)
                if count == 3:
                    capacity = via_gateway["goodput_rps"]
                    for factor in (1, 2, 4):
                        report["goodput"][f"{factor}x"] = {
                            "gateway": measure(HttpTarget(gateway.url, request),
                                               concurrency=64, rate=factor * capacity, **phase),
                            "pinned": measure(PinnedGrpcTarget(targets, predict,
                                                               timeout_s=DEADLINE_MS / 1000),
                                              concurrency=64, rate=factor * capacity, **phase),
                        }
            finally:
                gateway.stop()
            pinned = measure(PinnedGrpcTarget(targets, predict, timeout_s=DEADLINE_MS / 1000),
                             concurrency=args.concurrency, **phase)
            report["scaling"][str(count)] = {"gateway": via_gateway, "pinned": pinned}
    finally:
        for server in servers:
            server.stop()
    print(json.dumps(report, indent=2))
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    lines = ["| replicas | gateway rps | gateway p99 ms | pinned rps | pinned p99 ms |",
             "|---|---|---|---|---|"]
    for count, row in report["scaling"].items():
        g, p = row["gateway"], row["pinned"]
        lines.append(f"| {count} | {g['throughput_rps']} | {g['p99_ms']} | "
                     f"{p['throughput_rps']} | {p['p99_ms']} |")
    lines += ["", "| offered | gateway goodput rps | gateway statuses | pinned goodput rps |"
              " pinned statuses |", "|---|---|---|---|---|"]
    for factor, row in report["goodput"].items():
        g, p = row["gateway"], row["pinned"]
        lines.append(f"| {factor} | {g['goodput_rps']} | {g['statuses']} | "
                     f"{p['goodput_rps']} | {p['statuses']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
