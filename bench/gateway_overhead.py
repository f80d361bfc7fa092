"""What the gateway costs, on this machine, in one run (results: docs/benchmarks.md).

(a) added latency: p50/p99 of a digits predict through the gateway minus the same request sent
    straight to the backend's REST API (the local model server), concurrency 1, requests
    interleaved so both see the same machine state;
(b) CPU seconds per request of the gateway's processes (master + workers, from /proc) at
    concurrency 16, with throughput and p99, against a bare Flask handler under the same gunicorn
    settings that parses the same JSON body and answers (bench/gateway_bare_app.py);
(c) gateway worker memory: RSS, and PSS/USS (what a worker really adds) after the load.

Each measurement is repeated `--runs` times; the report gives medians. Load at concurrency 16 uses
`wrk` (`apt-get install -y wrk`), whose own CPU is not counted. Loopback only, bounded in time.

    .venv/bin/python -m bench.gateway_overhead [--runs 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.docsection import write_section
from tfstack.gateway.settings import load_settings
from tfstack.model_repo.data import digits_split
from tfstack.runtime.procs import ManagedProcess, free_port, port_open

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODELS = REPO / "model_repo" / "models"
TICK = os.sysconf("SC_CLK_TCK")
BODY_TEXT = {
    "digits": '{"instances": [<one 8×8 image: 64 floats>]}',
    "half_plus_two": '{"instances": [1.0, 2.0, 5.0]}',
}
GATEWAY_APP = "tfstack.gateway.app:create_app()"
# Both apps run under tfstack/gateway/gunicorn.conf.py: the same worker class
# (TFSTACK_WORKER_CLASS).
WORKER_CLASS = load_settings().worker_class
BARE_APP = "bench.gateway_bare_app:create_app()"
SECTION_START = "<!-- section: gateway overhead (bench/gateway_overhead.py) -->"
SECTION_END = "<!-- end section: gateway overhead -->"
# (b2): both apps paced to a similar rate, below the bare handler's capacity and near the
# gateway's with the model server beside it (~450-600 req/s here): each of 32 connections pauses
# 50 ms after every answer.
PACED = {"connections": 32, "pause_ms": 50}


def request_body(model: str) -> bytes:
    if model == "half_plus_two":
        return json.dumps({"instances": [1.0, 2.0, 5.0]}).encode()
    _, x_test, _, _ = digits_split()
    return json.dumps({"instances": [x_test[0].tolist()]}).encode()


def predict_path(model: str) -> str:
    return f"/v1/models/{model}:predict"


# -- processes ------------------------------------------------------------------------------------
def start_modelserver(run: Path, model: str, *flags: str) -> tuple[ManagedProcess, int, int]:
    config = run / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "{model}" base_path: "{MODELS / model}" '
        'model_platform: "tensorflow" } }\n'
    )
    grpc_port, rest_port = free_port(), free_port()
    proc = ManagedProcess(
        "model server",
        [str(BIN / "python"), "-m", "tfstack.modelserver", "--host=127.0.0.1",
         f"--port={grpc_port}", f"--rest_api_port={rest_port}",
         f"--model_config_file={config}", *flags],
        run / "modelserver.log",
        cwd=REPO,
    ).start()  # fmt: skip
    proc.wait_until(lambda: port_open("127.0.0.1", rest_port), 300, "serving REST",
                    stop_on_failure=True)
    return proc, grpc_port, rest_port


@contextlib.contextmanager
def local_modelserver(model: str, prefix: str) -> Iterator[tuple[int, int]]:
    """A model server serving `model` from a fresh temporary folder for the block: its gRPC and
    REST ports; stopped and the folder removed afterwards, also on failure."""
    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    server = None
    try:
        server, grpc_port, rest_port = start_modelserver(run_dir, model)
        yield grpc_port, rest_port
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def start_gunicorn(
    run: Path, name: str, app: str, grpc_port: int, **settings: str
) -> tuple[ManagedProcess, int]:
    """gunicorn with tfstack/gateway/gunicorn.conf.py; `settings` are TFSTACK_* values (no
    prefix)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        TFSTACK_BIND=f"127.0.0.1:{port}",
        TFSTACK_BACKENDS=f"127.0.0.1:{grpc_port}",
        PROMETHEUS_MULTIPROC_DIR=str(run / f"{name}-metrics"),
        # Admission control off for this measurement: with its default bound (threads - 1 per
        # worker) wrk's 16 connections over 2 workers get some 429s, cheap answers that would
        # dilute the CPU per request of the work being measured.
        TFSTACK_MAX_INFLIGHT="100000",
    )
    env.update({f"TFSTACK_{key.upper()}": value for key, value in settings.items()})
    proc = ManagedProcess(
        name,
        [str(BIN / "gunicorn"), "-c", "tfstack/gateway/gunicorn.conf.py", app],
        run / f"{name}.log",
        env=env,
        cwd=REPO,
    ).start()
    proc.wait_until(lambda: port_open("127.0.0.1", port), 60, "listening", stop_on_failure=True)
    return proc, port


def group_pids(master: int) -> list[int]:
    """`master` and every process below it (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    pids, todo = [], [master]
    while todo:
        pids.append(todo.pop())
        todo.extend(children.get(pids[-1], []))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICK


def memory_kib(pid: int) -> dict[str, int]:
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    values = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
    return {
        "rss": values["Rss"],
        "pss": values["Pss"],
        "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    }


# -- load ------------------------------------------------------------------------------------------
def timed_post(conn: http.client.HTTPConnection, path: str, body: bytes) -> float:
    if conn.sock is None:
        conn.connect()
    # ACK at once: a server that writes headers and body in two segments without TCP_NODELAY
    # (http.server does) would otherwise wait for the client's delayed ACK, ~40 ms per response.
    started = time.perf_counter()
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - started
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def grpc_predict(grpc_port: int, model: str, body: bytes):
    """A callable doing the same Predict over gRPC directly (what a gRPC client would pay)."""
    import grpc

    from tfstack.protocol import codec
    from tfstack.protocol.proto import (
        get_model_metadata_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    )
    meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta.model_spec.name = model
    signatures = codec.signatures_from_metadata(stub.GetModelMetadata(meta, timeout=10))
    call = codec.decode_predict_body(codec.parse_json(body), signatures)
    request = predict_pb2.PredictRequest(inputs=call.inputs)
    request.model_spec.name = model

    def predict() -> float:
        started = time.perf_counter()
        stub.Predict(request, timeout=10)
        return time.perf_counter() - started

    return predict


def latency_run(gw_port: int, rest_port: int, grpc_call, path: str, body: bytes, n: int) -> dict:
    gw = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=10)
    direct = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10)
    for _ in range(50):  # warm up: connections, signature caches
        timed_post(gw, path, body)
        timed_post(direct, path, body)
        grpc_call()
    samples: dict[str, list[float]] = {"gateway": [], "direct": [], "grpc": []}
    for _ in range(n):
        samples["gateway"].append(timed_post(gw, path, body))
        samples["direct"].append(timed_post(direct, path, body))
        samples["grpc"].append(grpc_call())
    gw.close()
    direct.close()
    result = {}
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        for name, values in samples.items():
            result[f"{name}_{label}_ms"] = percentile(values, q) * 1000
        result[f"added_{label}_ms"] = result[f"gateway_{label}_ms"] - result[f"direct_{label}_ms"]
    return result


def wrk(
    port: int, path: str, body: bytes, seconds: int, script_dir: Path,
    connections: int = 16, pause_ms: int = 0,
) -> dict:
    """wrk's counts and latency; with `pause_ms`, each connection waits that long after an
    answer before it sends again (wrk's `delay()`), which holds the rate near
    connections / (pause + latency) however fast the server is."""
    script = script_dir / "post.lua"
    pause = f"function delay() return {pause_ms} end\n" if pause_ms else ""
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"{pause}"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("RESULT %d %d %d %d\\n", summary.requests,\n'
        "    summary.errors.status + summary.errors.connect + summary.errors.read\n"
        "    + summary.errors.write + summary.errors.timeout,\n"
        "    latency:percentile(99), latency:percentile(50)))\n"
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script),
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+)", out)
    requests, errors, p99_us, p50_us = map(int, found.groups())
    return {"requests": requests, "errors": errors, "p99_ms": p99_us / 1e3, "p50_ms": p50_us / 1e3}


def throughput_run(
    master: int, port: int, path: str, body: bytes, secs: int, run: Path, **load: int
) -> dict:
    """Throughput, p99 and CPU per request of the gunicorn group under `master`, driven by wrk
    (`load`: wrk()'s connections and pause_ms)."""
    pids = group_pids(master)
    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    result = wrk(port, path, body, secs, run, **load)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(pids) - cpu_before
    served = result["requests"]
    return {
        "rps": served / wall,
        "p99_ms": result["p99_ms"],
        "cpu_ms_per_request": cpu / max(served, 1) * 1000,
        "errors": result["errors"],
        "cpu_cores_used": cpu / wall,
    }


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


# -- report ----------------------------------------------------------------------------------------
def row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def load_cells(result: dict) -> tuple[str, ...]:
    return (
        f"{result['rps']:.0f}",
        f"{result['p99_ms']:.1f}",
        f"{result['cpu_ms_per_request']:.3f}",
        f"{result['cpu_cores_used']:.2f}",
    )


def report(
    lat: dict, gw: dict, bare: dict, paced: dict, mem: list[dict], bare_mem: list[dict], args,
    load: str,
) -> str:
    runs, n, secs, path = args.runs, args.requests, args.seconds, predict_path(args.model)
    ratio = gw["cpu_ms_per_request"] / bare["cpu_ms_per_request"]
    paced_ratio = paced["gateway"]["cpu_ms_per_request"] / paced["bare"]["cpu_ms_per_request"]
    rss_mb = max(m["rss"] for m in mem) / 1024
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    worker_rows = "\n".join(
        row(f"{who} worker {i + 1}", *(f"{m[k] / 1024:.1f}" for k in ("rss", "pss", "uss")))
        for who, workers in (("gateway", mem), ("bare Flask", bare_mem))
        for i, m in enumerate(workers)
    )
    day = time.strftime("%Y-%m-%d", time.gmtime())
    gw_row = row("gateway (→ model server)", *load_cells(gw))
    bare_row = row("bare Flask handler (parse JSON, answer)", *load_cells(bare))
    paced_rows = "\n".join(
        row(label, *load_cells(paced[who]))
        for who, label in (("gateway", "gateway (→ model server)"),
                           ("bare", "bare Flask handler (parse JSON, answer)"))
    )  # fmt: skip
    return f"""{SECTION_START}
## Gateway overhead

`python -m bench.gateway_overhead --runs {runs}` on this 2-core machine, {day}
(load average before/after: {load});
gateway with its default settings (gunicorn {WORKER_CLASS}, 2 workers, JSON access log on),
backend = the local model server on loopback, request = `POST {path}` with body
`{BODY_TEXT[args.model]}`. Medians over {runs} runs.

**(a) Added latency, concurrency 1** ({n} requests per run, gateway and direct interleaved)

| | p50 (ms) | p99 (ms) |
|---|---|---|
| straight to the backend's REST API | {lat["direct_p50_ms"]:.2f} | {lat["direct_p99_ms"]:.2f} |
| through the gateway (REST → gRPC) | {lat["gateway_p50_ms"]:.2f} | {lat["gateway_p99_ms"]:.2f} |
| *ref.: straight to the backend, gRPC* | {lat["grpc_p50_ms"]:.2f} | {lat["grpc_p99_ms"]:.2f} |
| **added by the gateway** | **{lat["added_p50_ms"]:.2f}** | **{lat["added_p99_ms"]:.2f}** |

Target: added p50 ≤ 1.5 ms — {verdict(lat["added_p50_ms"] <= 1.5)}.

**(b) CPU per request, concurrency 16** (`wrk -t2 -c16 -d{secs}s`; CPU = utime+stime of the
gunicorn master and workers, from /proc)

| | throughput (req/s) | p99 (ms) | CPU per request (ms) | cores busy |
|---|---|---|---|---|
{gw_row}
{bare_row}

Non-2xx answers and socket errors: gateway {gw["errors"]:.0f}, bare {bare["errors"]:.0f} (admission
control off: `TFSTACK_MAX_INFLIGHT=100000`).
Gateway / bare CPU per request: **{ratio:.2f}×** (target ≤ 2.0× — {verdict(ratio <= 2.0)}).
The gateway's throughput shares the 2 cores with the model server and wrk; the bare handler's only
with wrk.

**(b2) CPU per request, paced load** (`wrk -t2 -c{PACED["connections"]} -d{secs}s`,
each connection pausing {PACED["pause_ms"]} ms after every answer, wrk's `delay()`). In (b) the
bare handler runs flat out and never idles, its cheapest regime, while the gateway waits on its
backend. Paced, the bare handler idles between requests too, as the gateway does; the two rates
are close, not equal (the gateway's latency, with the model server beside it on the same cores,
lengthens each connection's cycle).

| | throughput (req/s) | p99 (ms) | CPU per request (ms) | cores busy |
|---|---|---|---|---|
{paced_rows}

Gateway / bare CPU per request, paced: **{paced_ratio:.2f}×**.

**(c) Worker memory after the load** (KiB → MB; PSS/USS = what each worker really costs)

| | RSS (MB) | PSS (MB) | USS (MB) |
|---|---|---|---|
{worker_rows}

Target: worker RSS ≤ 60 MB — {verdict(rss_mb <= 60)} (largest: {rss_mb:.1f} MB).
{SECTION_END}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="per latency run")
    parser.add_argument("--seconds", type=int, default=10, help="per throughput run")
    parser.add_argument("--write", type=Path, help="replace the gateway section of this file")
    parser.add_argument("--model", choices=sorted(BODY_TEXT), default="digits")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    body, path = request_body(args.model), predict_path(args.model)
    run_dir = Path(tempfile.mkdtemp(prefix="tfstack-bench-"))
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    procs: list[ManagedProcess] = []
    try:
        server, grpc_port, rest_port = start_modelserver(run_dir, args.model)
        procs.append(server)
        gateway, gw_port = start_gunicorn(run_dir, "gateway", GATEWAY_APP, grpc_port)
        procs.append(gateway)
        bare, bare_port = start_gunicorn(run_dir, "bare", BARE_APP, grpc_port)
        procs.append(bare)
        grpc_call = grpc_predict(grpc_port, args.model, body)
        latency, gw_runs, bare_runs = [], [], []
        paced_runs: dict[str, list[dict]] = {"gateway": [], "bare": []}
        for i in range(args.runs):
            latency.append(latency_run(gw_port, rest_port, grpc_call, path, body, args.requests))
            gw_runs.append(throughput_run(gateway.pid, gw_port, path, body, args.seconds, run_dir))
            bare_runs.append(throughput_run(bare.pid, bare_port, path, body, args.seconds, run_dir))
            for who, proc, port in (("gateway", gateway, gw_port), ("bare", bare, bare_port)):
                paced_runs[who].append(
                    throughput_run(proc.pid, port, path, body, args.seconds, run_dir, **PACED)
                )
            print(f"run {i + 1}: {latency[-1]}\n  gateway {gw_runs[-1]}\n  bare {bare_runs[-1]}"
                  f"\n  paced {paced_runs['gateway'][-1]} / {paced_runs['bare'][-1]}",
                  file=sys.stderr)  # fmt: skip
        memory = [memory_kib(pid) for pid in group_pids(gateway.pid)[1:]]
        bare_memory = [memory_kib(pid) for pid in group_pids(bare.pid)[1:]]
        load = f"{load_before} / " + " ".join(f"{x:.1f}" for x in os.getloadavg())
        section = report(
            median_of(latency), median_of(gw_runs), median_of(bare_runs),
            {who: median_of(runs) for who, runs in paced_runs.items()}, memory, bare_memory,
            args, load,
        )  # fmt: skip
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
