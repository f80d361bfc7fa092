"""How much of the gateway's cost any Flask proxy pays: the gateway next to the cheapest proxy.

Three apps under the gateway's own gunicorn settings (tfstack/gateway/gunicorn.conf.py: gevent,
2 workers), one local model server (digits) behind them:
- the bare handler (bench/gateway_bare_app.py): parse the JSON, answer; issue 10's baseline;
- the floor (bench/gateway_forward_app.py): parse the JSON, forward the bytes to the model
  server's REST port over a keep-alive connection, return its answer; nothing else;
- the gateway: REST → gRPC with everything it does.

(a) CPU per request at concurrency 16 (wrk, `--runs` interleaved runs, medians), and the ratio to
the bare handler; (b) added latency at concurrency 1 (each proxy and the model server's REST API
in turn, `--requests` each, percentiles). Loopback only, bounded in time.

    python -m bench.gateway_floor [--runs 3] [--seconds 8] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.docsection import publish
from bench.gateway_overhead import (
    BARE_APP,
    GATEWAY_APP,
    median_of,
    percentile,
    predict_path,
    request_body,
    start_gunicorn,
    start_modelserver,
    throughput_run,
    timed_post,
)

FORWARD_APP = "bench.gateway_forward_app:create_app()"
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION_START = "<!-- section: gateway floor (bench/gateway_floor.py) -->"
SECTION_END = "<!-- end section: gateway floor -->"
LABELS = {
    "bare": "bare Flask handler (parse JSON, answer)",
    "floor": "floor: Flask proxy (parse JSON, forward bytes to REST)",
    "gateway": "gateway (REST → gRPC, everything on)",
}


def latency(ports: dict[str, int], rest_port: int, path: str, body: bytes, n: int) -> dict:
    conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=10)
             for name, port in {**ports, "direct": rest_port}.items()}  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in conns}
    for i in range(n + 50):  # the first 50: warm-up
        for name, conn in conns.items():
            elapsed = timed_post(conn, path, body)
            if i >= 50:
                samples[name].append(elapsed)
    for conn in conns.values():
        conn.close()
    return {name: {q: percentile(values, p) * 1000 for q, p in (("p50", 0.5), ("p99", 0.99))}
            for name, values in samples.items()}  # fmt: skip


def report(cpu: dict[str, dict], lat: dict[str, dict], args) -> str:
    bare = cpu["bare"]["cpu_ms_per_request"]
    lines = [
        "### Gateway floor: what any Flask proxy costs",
        "",
        f"`python -m bench.gateway_floor --runs {args.runs} --seconds {args.seconds}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} (load average "
        f"{args.load_before:.1f} before, {os.getloadavg()[0]:.1f} after); gunicorn gevent, "
        "2 workers, admission off; one local model server (digits); medians of "
        f"{args.runs} interleaved runs.",
        "",
        "| app | req/s at c=16 | p99 ms | CPU ms per request | × bare | added p50 at c=1 (ms) "
        "| added p99 at c=1 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in LABELS.items():
        row = cpu[name]
        added = ("–", "–")
        if name in lat:
            added = tuple(f"{lat[name][q] - lat['direct'][q]:.2f}" for q in ("p50", "p99"))
        lines.append(
            f"| {label} | {row['rps']:.0f} | {row['p99_ms']:.1f} | "
            f"{row['cpu_ms_per_request']:.3f} | {row['cpu_ms_per_request'] / bare:.2f}× | "
            f"{added[0]} | {added[1]} |"
        )
    errors = {name: cpu[name]["errors"] for name in LABELS}
    lines += ["", f"Errors (non-2xx and socket, medians): {errors}. Straight to the model "
              f"server's REST API at c=1: p50 {lat['direct']['p50']:.2f} ms."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    args.load_before = os.getloadavg()[0]
    run = Path(tempfile.mkdtemp(prefix="tfstack-bench-floor-"))
    body, path = request_body("digits"), predict_path("digits")
    procs = []
    try:
        server, grpc_port, rest_port = start_modelserver(run, "digits")
        procs.append(server)
        os.environ["FORWARD_TO"] = f"127.0.0.1:{rest_port}"
        apps = {}
        for name, app in (("bare", BARE_APP), ("floor", FORWARD_APP), ("gateway", GATEWAY_APP)):
            proc, port = start_gunicorn(run, name, app, grpc_port)
            procs.append(proc)
            apps[name] = (proc, port)
        lat = latency({n: apps[n][1] for n in ("floor", "gateway")}, rest_port, path, body,
                      args.requests)  # fmt: skip
        runs: dict[str, list[dict]] = {name: [] for name in apps}
        for i in range(args.runs):
            for name, (proc, port) in apps.items():
                result = throughput_run(proc.pid, port, path, body, args.seconds, run)
                runs[name].append(result)
                print(f"run {i + 1}: {name} {result}", flush=True)
        cpu = {name: median_of(results) for name, results in runs.items()}
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(run, ignore_errors=True)
    publish(report(cpu, lat, args), args.write or DOC, SECTION_START, SECTION_END,
            "Gateway floor", write=args.write is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
