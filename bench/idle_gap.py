"""What an idle gap before a call costs on this machine (docs/benchmarks.md, "Idle gaps").

At concurrency 1 a request through the gateway crosses more processes than one straight to the
model server, and each process it reaches has been idle since the last request. This measures
what that idleness costs, with no gateway at all: the same call to the local model server (digits,
one 8×8 image), back to back and then with the caller sleeping `gap` ms before each call, over gRPC
(the raw serialized PredictRequest on one channel) and over REST (one kept-alive HTTP connection).
For each gap: p50 and p99 of the call, and the caller's own CPU per call (process time; the
caller's work per call does not change with the gap, so a rise is the machine running slower
after idling). Gaps interleaved within each run, `--runs` runs, medians. Loopback only.

    .venv/bin/python -m bench.idle_gap [--runs 3] [--calls 400] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import time
from pathlib import Path

from bench.docsection import provenance, publish
from bench.gateway_overhead import BODY_TEXT, local_modelserver, percentile, request_body
from bench.grpc_overhead import PREDICT, predict_bytes

GAPS_MS = (0.0, 0.5, 1.0, 2.0, 5.0)
SECTION_START = "<!-- section: idle gaps (bench/idle_gap.py) -->"
SECTION_END = "<!-- end section: idle gaps -->"


def measure(call, gap_s: float, calls: int) -> dict[str, float]:
    for _ in range(20):  # warm: connection and model
        call()
    samples = []
    cpu_started = time.process_time()
    for _ in range(calls):
        if gap_s:
            time.sleep(gap_s)
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu_started
    return {"p50_ms": percentile(samples, 0.5) * 1000, "p99_ms": percentile(samples, 0.99) * 1000,
            "cpu_ms": cpu / calls * 1000}


def measure_all(runs: int, calls: int) -> dict[tuple[str, float], list[dict[str, float]]]:
    """Start a model server, measure every (protocol, gap) `runs` times, stop it."""
    import grpc

    results: dict[tuple[str, float], list[dict[str, float]]] = {}
    with local_modelserver("digits", "tfstack-idle-gap-") as (grpc_port, rest_port):
        request = predict_bytes(grpc_port, "digits")
        body = request_body("digits")
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        unary = channel.unary_unary(PREDICT)
        rest = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10)

        def grpc_call() -> None:
            unary(request, timeout=10)

        def rest_call() -> None:
            rest.request("POST", "/v1/models/digits:predict", body=body,
                         headers={"Content-Type": "application/json"})
            response = rest.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"REST answered {response.status}")

        for index in range(runs):
            for gap in GAPS_MS:
                for name, call in (("gRPC", grpc_call), ("REST", rest_call)):
                    result = measure(call, gap / 1000, calls)
                    results.setdefault((name, gap), []).append(result)
                    print(f"run {index + 1}: {name} gap {gap} ms {result}", flush=True)
        channel.close()
        rest.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--write", type=Path, help="rewrite this file's section")
    args = parser.parse_args()

    load_before = os.getloadavg()
    results = measure_all(args.runs, args.calls)
    load_after = os.getloadavg()

    def median(name: str, gap: float, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, gap)])

    rows = []
    for gap in GAPS_MS:
        cells = []
        for name in ("gRPC", "REST"):
            base = median(name, 0.0, "p50_ms")
            p50 = median(name, gap, "p50_ms")
            cells.append(f"{p50:.2f} ({p50 / base:.2f}×) | {median(name, gap, 'p99_ms'):.2f} | "
                         f"{median(name, gap, 'cpu_ms'):.3f}")
        rows.append(f"| {gap:g} | " + " | ".join(cells) + " |")
    command = f"python -m bench.idle_gap --runs {args.runs} --calls {args.calls}"
    report = "\n".join([
        "### Idle gaps: what a call costs after the caller slept",
        "",
        f"{provenance(command, load_before, load_after)}: one local model server (digits, "
        f"`{BODY_TEXT['digits']}`); the caller sleeps `gap` ms before each call; medians of "
        f"{args.runs} runs of {args.calls} calls, gaps interleaved.",
        "",
        "| gap (ms) | gRPC p50 ms (× back to back) | gRPC p99 ms | gRPC caller CPU ms/call "
        "| REST p50 ms (× back to back) | REST p99 ms | REST caller CPU ms/call |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])
    publish(report, args.write or Path("docs/benchmarks.md"), SECTION_START, SECTION_END,
            "Idle gaps", write=args.write is not None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
