"""What one blocking gRPC call costs its caller, by worker model (docs/benchmarks.md,
"gRPC client cost").

The gateway's REST front door makes one blocking unary Predict per request, from a gunicorn gevent
worker (gRPC switched to gevent's loop with `grpc.experimental.gevent.init_gevent()`). This
measures that call alone, with no HTTP server, Flask or codec around it: a process whose only
work is the same protobuf PredictRequest (digits, one 8×8 image) through the generated stub to the
local model server, from 16 concurrent callers, closed loop:

  gevent         16 greenlets, monkey-patched, grpc's gevent integration: the gateway's call
  gevent-future  the same, `stub.Predict.future(...).result()` instead of the blocking call
  threads        16 OS threads, no gevent (the gthread worker's situation)
  serial         one caller, no gevent: the call's own machinery, nothing waiting beside it

For each: calls per second and the caller's CPU per call (its process time over the run divided
by the calls answered). Modes interleaved within each run, `--runs` runs, medians. Each mode runs
in its own process (gevent's monkey-patching is process-wide). Loopback only, bounded in time.

    .venv/bin/python -m bench.grpc_client_cost [--runs 3] [--seconds 6] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

MODES = ("gevent", "gevent-future", "threads", "serial")
CALLERS = 16
SECTION_START = "<!-- section: grpc client cost (bench/grpc_client_cost.py) -->"
SECTION_END = "<!-- end section: grpc client cost -->"


def child(mode: str, port: int, request_hex: str, seconds: float) -> dict[str, float]:
    """One mode's measurement, in this (fresh) process."""
    if mode.startswith("gevent"):
        from gevent import monkey

        monkey.patch_all()
        from grpc.experimental import gevent as grpc_gevent

        grpc_gevent.init_gevent()
    import threading

    import grpc

    from tfstack.protocol.proto import predict_pb2, prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{port}")
    )
    request = predict_pb2.PredictRequest.FromString(bytes.fromhex(request_hex))
    if mode == "gevent-future":
        call = lambda: stub.Predict.future(request, timeout=10).result()  # noqa: E731
    else:
        call = lambda: stub.Predict(request, timeout=10)  # noqa: E731
    for _ in range(20):  # warm: connection, model
        call()
    counts: list[int] = []
    ends = time.monotonic() + seconds

    def loop() -> None:
        done = 0
        while time.monotonic() < ends:
            call()
            done += 1
        counts.append(done)

    callers = [threading.Thread(target=loop) for _ in range(1 if mode == "serial" else CALLERS)]
    cpu, started = time.process_time(), time.perf_counter()
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    calls = sum(counts)
    return {"calls_per_s": calls / wall, "cpu_ms": cpu / max(calls, 1) * 1000}


def measure_all(runs: int, seconds: float) -> dict[str, list[dict[str, float]]]:
    import subprocess

    from bench.gateway_overhead import local_modelserver
    from bench.grpc_overhead import predict_bytes

    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with local_modelserver("digits", "tfstack-grpc-client-") as (grpc_port, _rest_port):
        request_hex = predict_bytes(grpc_port, "digits").hex()
        for index in range(runs):
            for mode in MODES:
                out = subprocess.run(
                    [sys.executable, "-m", "bench.grpc_client_cost", "--child", mode,
                     "--port", str(grpc_port), "--request", request_hex,
                     "--seconds", str(seconds)],
                    capture_output=True, text=True, timeout=seconds + 120, check=True,
                    cwd=Path(__file__).resolve().parent.parent,
                ).stdout  # fmt: skip
                result = json.loads(out.strip().splitlines()[-1])
                results[mode].append(result)
                print(f"run {index + 1}: {mode} {result}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="per mode and run")
    parser.add_argument("--write", type=Path, help="rewrite this file's section")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--request", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.port, args.request, args.seconds)))
        return 0

    import statistics

    from bench.docsection import markdown_table, provenance, publish
    from bench.gateway_overhead import BODY_TEXT

    load_before = os.getloadavg()
    results = measure_all(args.runs, args.seconds)
    load_after = os.getloadavg()
    median = lambda mode, key: statistics.median(r[key] for r in results[mode])  # noqa: E731
    what = {
        "gevent": f"{CALLERS} greenlets, blocking call (the gateway's)",
        "gevent-future": f"{CALLERS} greenlets, `.future().result()`",
        "threads": f"{CALLERS} OS threads, no gevent, blocking call",
        "serial": "1 caller, no gevent, blocking call",
    }
    rows = [
        [mode, what[mode], f"{median(mode, 'calls_per_s'):.0f}", f"{median(mode, 'cpu_ms'):.3f}"]
        for mode in MODES
    ]
    command = f"python -m bench.grpc_client_cost --runs {args.runs} --seconds {args.seconds:g}"
    report = (
        f"{provenance(command, load_before, load_after)}: a process doing nothing but Predict "
        "calls (protobuf request through the generated stub) to one local model server (digits, "
        f"`{BODY_TEXT['digits']}`), closed loop; medians of {args.runs} runs, modes interleaved, "
        "each in its own process.\n\n"
        + markdown_table(["mode", "callers", "calls/s", "caller CPU ms per call"], rows, left=2)
    )
    publish(report, args.write or Path("docs/benchmarks.md"), SECTION_START, SECTION_END,
            "gRPC client cost: one blocking call, by worker model", write=args.write is not None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
