"""What the gateway's gRPC front door costs, on this machine, in one run (docs/benchmarks.md).

The same serialized Predict (digits: one 8×8 image, or half_plus_two) sent by the same client —
raw bytes over one gRPC channel per client thread, no protobuf on the client — once through the
front door (`python -m tfstack.gateway.grpc_server`, default settings but admission off) to the
local model server, once straight to the model server's gRPC port:

(a) latency at concurrency 1 (requests interleaved: both see the same machine state) and at
    concurrency 16 (closed loop, runs alternating between the two): p50 and p99, and the
    difference, the latency the front door adds;
(b) CPU per request at concurrency 16: the front door's process, and the model server's, from
    /proc (utime + stime over the run divided by the requests answered).

Each measurement is repeated `--runs` times; the report gives medians. The client runs in this
process, on the same 2 cores, for both paths alike. Loopback only, bounded in time.

    .venv/bin/python -m bench.grpc_overhead [--runs 5] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.docsection import write_section
from bench.gateway_overhead import (
    BODY_TEXT,
    cpu_seconds,
    percentile,
    request_body,
    start_modelserver,
)
from tfstack.runtime.procs import ManagedProcess, free_port, port_open
from tfstack.testing.loadgen import PinnedGrpcTarget, run

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PREDICT = "/tensorflow.serving.PredictionService/Predict"
SECTION_START = "<!-- section: gRPC front door overhead (bench/grpc_overhead.py) -->"
SECTION_END = "<!-- end section: gRPC front door overhead -->"


def predict_bytes(grpc_port: int, model: str) -> bytes:
    """The serialized PredictRequest a gRPC client would send (typed by the model's signature)."""
    import grpc

    from tfstack.protocol import codec
    from tfstack.protocol.proto import (
        get_model_metadata_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        meta.model_spec.name = model
        signatures = codec.signatures_from_metadata(stub.GetModelMetadata(meta, timeout=10))
    call = codec.decode_predict_body(codec.parse_json(request_body(model)), signatures)
    request = predict_pb2.PredictRequest(inputs=call.inputs)
    request.model_spec.name = model
    return request.SerializeToString()


def start_front_door(run_dir: Path, grpc_port: int) -> tuple[ManagedProcess, int]:
    port, ops_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        TFSTACK_GRPC_BIND=f"127.0.0.1:{port}",
        TFSTACK_GRPC_OPS_BIND=f"127.0.0.1:{ops_port}",
        TFSTACK_BACKENDS=f"127.0.0.1:{grpc_port}",
        PROMETHEUS_MULTIPROC_DIR=str(run_dir / "grpc-metrics"),
        # Admission off, as in bench/gateway_overhead.py: refusals would dilute the CPU figure.
        TFSTACK_GRPC_MAX_INFLIGHT="100000",
    )
    proc = ManagedProcess(
        "gRPC front door", [str(BIN / "python"), "-m", "tfstack.gateway.grpc_server"],
        run_dir / "grpc-gateway.log", env=env, cwd=REPO,
    ).start()  # fmt: skip
    proc.wait_until(lambda: port_open("127.0.0.1", port), 60, "listening", stop_on_failure=True)
    return proc, port


def latency_c1(targets: dict[str, str], request: bytes, n: int) -> dict[str, float]:
    """p50/p99 (ms) per target at concurrency 1, requests interleaved."""
    import grpc

    channels = {name: grpc.insecure_channel(address) for name, address in targets.items()}
    calls = {name: channel.unary_unary(PREDICT) for name, channel in channels.items()}
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for index in range(50 + n):  # 50 warm-up rounds: connections, the model's first runs
        for name, call in calls.items():
            started = time.perf_counter()
            call(request, timeout=10)
            if index >= 50:
                samples[name].append(time.perf_counter() - started)
    for channel in channels.values():
        channel.close()
    return {
        f"{name}_{label}_ms": percentile(values, q) * 1000
        for name, values in samples.items()
        for q, label in ((0.5, "p50"), (0.99, "p99"))
    }


def load_c16(address: str, request: bytes, seconds: float, pids: dict[str, int]) -> dict:
    """Closed loop at concurrency 16 against `address`; CPU ms per request of each of `pids`."""
    before = {name: cpu_seconds([pid]) for name, pid in pids.items()}
    result = run(PinnedGrpcTarget([address], request, timeout_s=10),
                 requests=10**7, duration_s=seconds, concurrency=16)  # fmt: skip
    served = max(result.ok(), 1)
    out = {
        "rps": result.ok() / result.elapsed_s,
        "p50_ms": result.percentile(50) * 1000,
        "p99_ms": result.percentile(99) * 1000,
        "errors": len(result.records) - result.ok(),
    }
    for name, pid in pids.items():
        out[f"{name}_cpu_ms"] = (cpu_seconds([pid]) - before[name]) / served * 1000
    return out


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(one[key] for one in runs) for key in runs[0]}


def report(c1: dict, via: dict, direct: dict, args, load: str) -> str:
    day = time.strftime("%Y-%m-%d", time.gmtime())
    added = {
        (c, q): (c1[f"gateway_{q}_ms"] - c1[f"direct_{q}_ms"]) if c == 1
        else via[f"{q}_ms"] - direct[f"{q}_ms"]
        for c in (1, 16) for q in ("p50", "p99")
    }  # fmt: skip
    total_via = via["gateway_cpu_ms"] + via["modelserver_cpu_ms"]
    return f"""{SECTION_START}
## gRPC front door overhead

`python -m bench.grpc_overhead --runs {args.runs}` on this 2-core machine, {day} (load average
before/after: {load}); the front door with its default settings (32 threads, JSON access log on,
admission off), backend = the local model server on loopback, request = a `Predict` of
`{args.model}` ({BODY_TEXT[args.model]} as a typed tensor), sent as the same bytes by the same
client both ways. Medians over {args.runs} runs.

**(a) Latency** (c=1: {args.requests} requests per run, interleaved; c=16: `{args.seconds}` s per
run, closed loop, one channel per client thread)

| | c=1 p50 (ms) | c=1 p99 (ms) | c=16 p50 (ms) | c=16 p99 (ms) | c=16 req/s |
|---|---|---|---|---|---|
| straight to the model server (gRPC) | {c1["direct_p50_ms"]:.2f} | {c1["direct_p99_ms"]:.2f} \
| {direct["p50_ms"]:.2f} | {direct["p99_ms"]:.2f} | {direct["rps"]:.0f} |
| through the gateway's gRPC front door | {c1["gateway_p50_ms"]:.2f} | {c1["gateway_p99_ms"]:.2f} \
| {via["p50_ms"]:.2f} | {via["p99_ms"]:.2f} | {via["rps"]:.0f} |
| **added by the front door** | **{added[1, "p50"]:.2f}** | **{added[1, "p99"]:.2f}** \
| **{added[16, "p50"]:.2f}** | **{added[16, "p99"]:.2f}** | |

**(b) CPU per request at c=16** (utime + stime from /proc over each run ÷ requests answered)

| | front door (ms) | model server (ms) | total (ms) |
|---|---|---|---|
| straight to the model server | — | {direct["modelserver_cpu_ms"]:.3f} \
| {direct["modelserver_cpu_ms"]:.3f} |
| through the front door | {via["gateway_cpu_ms"]:.3f} | {via["modelserver_cpu_ms"]:.3f} \
| {total_via:.3f} |

Errors: through the front door {via["errors"]:.0f}, direct {direct["errors"]:.0f}.
{SECTION_END}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000, help="per c=1 run, per path")
    parser.add_argument("--seconds", type=float, default=8, help="per c=16 run, per path")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section of the file")
    parser.add_argument("--model", choices=sorted(BODY_TEXT), default="digits")
    args = parser.parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="tfstack-bench-grpc-"))
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    procs: list[ManagedProcess] = []
    try:
        server, grpc_port, _ = start_modelserver(run_dir, args.model)
        procs.append(server)
        front, front_port = start_front_door(run_dir, grpc_port)
        procs.append(front)
        request = predict_bytes(grpc_port, args.model)
        targets = {"gateway": f"127.0.0.1:{front_port}", "direct": f"127.0.0.1:{grpc_port}"}
        pids = {"gateway": front.pid, "modelserver": server.pid}
        c1, via, direct = [], [], []
        for i in range(args.runs):
            c1.append(latency_c1(targets, request, args.requests))
            via.append(load_c16(targets["gateway"], request, args.seconds, pids))
            direct.append(load_c16(targets["direct"], request, args.seconds, pids))
            print(f"run {i + 1}: {c1[-1]}\n  via {via[-1]}\n  direct {direct[-1]}",
                  file=sys.stderr)  # fmt: skip
        load = f"{load_before} / " + " ".join(f"{x:.1f}" for x in os.getloadavg())
        section = report(median_of(c1), median_of(via), median_of(direct), args, load)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    print(section)
    if args.write:
        write_section(args.write, section, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
