"""Which gunicorn worker class the gateway runs under, by measurement (issue 10; the choice and
its reasons: docs/architecture.md, "Worker model"; figures: docs/benchmarks.md).

One local model server (digits, batching on with model_repo/batching_parameters.txt), and in
front of it one gateway per candidate, otherwise with default settings (2 workers, access log on):

- `gthread`: 8 threads per worker;
- `gevent`: gunicorn's gevent worker with grpc's gevent integration (gunicorn.conf.py).

Both with admission control off (`TFSTACK_MAX_INFLIGHT=100000`), so that the worker model is
measured doing the work rather than refusing it; and each also with its default admission bound,
to count the 429s a user gets out of the box.

(a) Load: throughput, p50, p99, non-2xx and gateway CPU per request at concurrency 1, 16 and 32
    (`wrk`, closed loop, one 8x8 image per request), with the model server alone as the ceiling.
(b) What one model server takes, for the default admission bound per endpoint: the model server
    alone at concurrency 64, 128 and 256 (its batching queue holds 32 x 4 = 128 requests).
(c) Slow clients (tfstack/testing/slowclients.py in its own process): 40 connections trickling
    headers a byte a second, then 500 (250 headers, 250 bodies); meanwhile `--probes` normal
    predicts one after another, each with a 3 s timeout: how many succeed, p50 and worst latency.

Every cell is measured `--runs` times, the candidates interleaved; the report gives medians.
Loopback only, bounded in time.

    python -m bench.worker_model [--runs 3] [--seconds 8] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.docsection import write_section
from bench.gateway_overhead import (
    cpu_seconds,
    group_pids,
    memory_kib,
    start_gunicorn,
    start_modelserver,
)
from bench.modelserver_throughput import WRK_SCRIPT, _body, run_wrk
from tfstack.runtime.procs import ManagedProcess
from tfstack.testing.slowclients import SlowClients, raise_fd_limit

REPO = Path(__file__).resolve().parent.parent
PATH = "/v1/models/digits:predict"
CONCURRENCY = (1, 16, 32)
SIZING = (64, 128, 256)
ALONE = "model server alone (REST)"
SLOW = {"40 trickling headers": (40, 0), "500 (250 headers, 250 bodies)": (250, 250)}
GATEWAYS = {  # label -> TFSTACK_* settings
    "gthread": {"worker_class": "gthread"},
    "gevent": {"worker_class": "gevent"},
    "gthread, default admission": {"worker_class": "gthread", "max_inflight": "0"},
    "gevent, default admission": {"worker_class": "gevent", "max_inflight": "0"},
}
SECTION_START = "<!-- section: worker model (bench/worker_model.py) -->"
SECTION_END = "<!-- end section: worker model -->"


def load_cell(master: int | None, url: str, script: Path, c: int, seconds: float) -> dict:
    pids = group_pids(master) if master else []
    cpu = cpu_seconds(pids)
    result = run_wrk(url, script, c, seconds)
    served = result["rps"] * seconds
    result["cpu_ms_per_request"] = (cpu_seconds(pids) - cpu) / max(served, 1) * 1000
    return result


def probe(port: int, body: bytes, count: int) -> dict:
    """`count` predicts one after another on fresh connections, each bounded by 3 s."""
    latencies, ok = [], 0
    for _ in range(count):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        try:
            conn.request("POST", PATH, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            ok += response.status == 200
        except OSError:
            pass
        finally:
            conn.close()
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    return {"ok": ok, "count": count, "p50_ms": statistics.median(latencies) * 1000,
            "max_ms": latencies[-1] * 1000}


def slow_cell(url: str, port: int, body: bytes, headers: int, bodies: int, probes: int) -> dict:
    with SlowClients(url, headers=headers, bodies=bodies, seconds=120):
        time.sleep(2)  # every slow connection accepted and trickling
        return probe(port, body, probes)


def median(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per load cell")
    parser.add_argument("--probes", type=int, default=10, help="predicts per slow-client cell")
    parser.add_argument("--write", type=Path, help="replace the worker model section of this file")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    raise_fd_limit(4096)  # for the 500 slow connections; gateways inherit it
    run_dir = Path(tempfile.mkdtemp(prefix="tfstack-bench-workers-"))
    script = run_dir / "predict.lua"
    script.write_text(WRK_SCRIPT % _body())
    body = _body().encode()
    load_before = os.getloadavg()[0]
    procs: list[ManagedProcess] = []
    load: dict[tuple[str, int], list[dict]] = {}
    slow: dict[tuple[str, str], list[dict]] = {}
    try:
        batching = ("--enable_batching",
                    f"--batching_parameters_file={REPO / 'model_repo' / 'batching_parameters.txt'}")
        server, grpc_port, rest_port = start_modelserver(run_dir, "digits", *batching)
        procs.append(server)
        targets = {ALONE: (None, rest_port)}
        for label, settings in GATEWAYS.items():
            proc, port = start_gunicorn(run_dir, label.replace(", ", "-").replace(" ", "-"),
                                        "tfstack.gateway.app:create_app()", grpc_port, **settings)
            procs.append(proc)
            targets[label] = (proc.pid, port)
        for _, port in targets.values():  # warm up: connections, signature caches, batching
            run_wrk(f"http://127.0.0.1:{port}{PATH}", script, 16, 2)
        for run in range(args.runs):
            for c in CONCURRENCY:
                for label, (master, port) in targets.items():
                    url = f"http://127.0.0.1:{port}{PATH}"
                    cell = load_cell(master, url, script, c, args.seconds)
                    load.setdefault((label, c), []).append(cell)
                    print(f"run {run + 1} c={c} {label}: {cell}", file=sys.stderr, flush=True)
            for c in SIZING:
                cell = load_cell(None, f"http://127.0.0.1:{rest_port}{PATH}", script, c,
                                 args.seconds)
                load.setdefault((ALONE, c), []).append(cell)
                print(f"run {run + 1} c={c} {ALONE}: {cell}", file=sys.stderr, flush=True)
            for scenario, (headers, bodies) in SLOW.items():
                for label in ("gthread", "gevent"):
                    port = targets[label][1]
                    cell = slow_cell(f"http://127.0.0.1:{port}", port, body, headers, bodies,
                                     args.probes)
                    slow.setdefault((label, scenario), []).append(cell)
                    print(f"run {run + 1} {scenario} {label}: {cell}", file=sys.stderr, flush=True)
        memory = {label: [memory_kib(pid)["rss"] / 1024 for pid in group_pids(master)[1:]]
                  for label, (master, _) in targets.items() if master}
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    section = report(load, slow, memory, args, load_before)
    print(section)
    if args.write:
        write_section(args.write, section, SECTION_START, SECTION_END)
    return 0


def report(load: dict, slow: dict, memory: dict, args, load_before: float) -> str:
    day = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        SECTION_START,
        "## Worker model: gthread vs gevent",
        "",
        f"`python -m bench.worker_model --runs {args.runs} --seconds {args.seconds:.0f}` on this "
        f"2-core machine, {day} (load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after); one model server (digits, batching on), "
        f"`POST {PATH}` with one 8×8 image. Medians over {args.runs} interleaved runs.",
        "",
        "**(a) Load** (`wrk`, closed loop; CPU = gateway master + workers; admission off unless "
        "the row says *default admission*; non-2xx summed over all runs; (b): the model server "
        "alone at c ≥ 64)",
        "",
        "| target | c | req/s | p50 ms | p99 ms | non-2xx | gateway CPU ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (label, c), runs in sorted(load.items(), key=lambda item: (item[0][1] > 32, item[0][1])):
        m = median(runs)
        cpu = f"{m['cpu_ms_per_request']:.2f}" if "alone" not in label else "–"
        lines.append(f"| {label} | {c} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
                     f"| {sum(r['errors'] for r in runs)} | {cpu} |")
    lines += [
        "",
        f"**(c) Slow clients** ({args.probes} normal predicts one after another while the slow "
        "connections trickle, each with a 3 s timeout; worst = slowest of the run)",
        "",
        "| slow connections | worker | predicts OK | p50 ms | worst ms |",
        "|---|---|---:|---:|---:|",
    ]
    for (label, scenario), runs in slow.items():
        m = median(runs)
        lines.append(f"| {scenario} | {label} | {m['ok']:.0f}/{args.probes} | "
                     f"{m['p50_ms']:.1f} | {m['max_ms']:.1f} |")
    rss = "; ".join(f"{label}: {', '.join(f'{mb:.0f}' for mb in values)}"
                    for label, values in memory.items())
    lines += ["", f"Worker RSS after the run (MB): {rss}.", SECTION_END]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
