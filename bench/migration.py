"""Before and after docs/migrate-from-flask.md, measured in one run on one machine.

Before: the guide's Flask app (bench/migration_flask_app.py) under gunicorn, one sync worker per
core, each loading the Keras model and calling `model.predict` once per request.
After: the guide's steps for real: `tfstack export churn.keras --name churn --out models`, then
`tfstack up --models models --enable-batching` (the model server and the gateway, defaults).

The model is the guide's churn model (`keras.Input(shape=(4,), name="features")`, two hidden
layers, one sigmoid output named `churn`), built here with random weights. Load: wrk, the guide's
request (one row of 4 floats) to each, concurrency 1, 16 and 32, `--runs` interleaved runs per
cell, medians; then the memory of every process of each setup (RSS and PSS from
/proc/PID/smaps_rollup). Rewrites its section of docs/migrate-from-flask.md.

    python -m bench.migration [--runs 3] [--duration 10] [--no-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.docsection import publish
from bench.gateway_overhead import group_pids, memory_kib
from bench.modelserver_throughput import (
    REPO,
    WRK_SCRIPT,
    measure_interleaved,
    run_wrk,
    start_gunicorn_app,
)
from tfstack.runtime.procs import ManagedProcess, free_port, http_status

DOC = REPO / "docs" / "migrate-from-flask.md"
BEGIN, END = "<!-- migration-bench:begin -->", "<!-- migration-bench:end -->"
CONCURRENCY = (1, 16, 32)
ROW = [0.3, 1.0, 5.0, 2.0]
BEFORE, AFTER = "Flask + Keras (before)", "tfstack: gateway + model server (after)"


def build_model(path: Path) -> None:
    """The guide's churn model, saved as a Keras 3 `.keras` file (in a child: TF stays out of
    this process, whose memory is not measured but whose CPU shares the box)."""
    code = f"""
import keras
inputs = keras.Input(shape=(4,), name="features")
x = keras.layers.Dense(64, activation="relu")(inputs)
x = keras.layers.Dense(64, activation="relu")(x)
outputs = keras.layers.Dense(1, activation="sigmoid", name="churn")(x)
keras.Model(inputs, outputs).save({str(path)!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, cwd=REPO)


def process_label(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    for needle, label in (
        ("tfstack.cli", "tfstack up (supervisor)"),
        ("modelserver", "model server"),
        ("grpc_server", "gateway gRPC front door"),
        ("gateway", "gateway gunicorn"),
        ("migration_flask_app", "Flask gunicorn"),
    ):
        if needle in text:
            return label
    return text[:40]


def memory(root: int) -> list[dict]:
    rows = []
    for pid in group_pids(root):
        try:
            rows.append({"pid": pid, "label": process_label(pid), **memory_kib(pid)})
        except (OSError, KeyError):
            continue
    return rows


def start_before(tmp: Path, keras_file: Path, workers: int) -> tuple[ManagedProcess, str]:
    env = dict(os.environ, BENCH_KERAS_MODEL=str(keras_file))
    app = "bench.migration_flask_app:create_app()"
    proc, base = start_gunicorn_app(tmp, "flask-keras", app, env, workers)
    url = f"{base}/predict"
    body = json.dumps({"data": [ROW]})
    proc.wait_until(lambda: _post_ok(url, body), 300, "predicting", stop_on_failure=True)
    return proc, url


def start_after(tmp: Path, keras_file: Path) -> tuple[ManagedProcess, str]:
    models = tmp / "models"
    subprocess.run(
        [sys.executable, "-m", "tfstack.cli", "export", str(keras_file), "--name", "churn"]
        + ["--out", str(models)],
        check=True,
        timeout=600,
        cwd=REPO,
        capture_output=True,
    )
    gateway = free_port()
    argv = [sys.executable, "-m", "tfstack.cli", "up", "--models", str(models)]
    argv += ["--enable-batching", "--gateway-port", str(gateway)]
    argv += ["--grpc-port", str(free_port()), "--rest-port", str(free_port())]
    argv += ["--run-dir", str(tmp / "up")]
    proc = ManagedProcess("tfstack-up", argv, tmp / "after.log", cwd=REPO).start()
    url = f"http://127.0.0.1:{gateway}/v1/models/churn:predict"
    body = json.dumps({"instances": [ROW]})
    proc.wait_until(lambda: _post_ok(url, body), 300, "predicting", stop_on_failure=True)
    return proc, url


def _post_ok(url: str, body: str) -> bool:
    import urllib.request

    if http_status(url.split("/v1/")[0].split("/predict")[0] + "/") is None:
        return False
    req = urllib.request.Request(  # noqa: S310 (loopback)
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return resp.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="Flask workers")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    args.load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-migration-"))
    keras_file = tmp / "churn.keras"
    build_model(keras_file)
    procs, targets, mem = [], {}, {}
    try:
        for label, start, body in (
            (BEFORE, lambda: start_before(tmp, keras_file, args.workers), {"data": [ROW]}),
            (AFTER, lambda: start_after(tmp, keras_file), {"instances": [ROW]}),
        ):
            proc, url = start()
            procs.append(proc)
            script = tmp / f"{len(procs)}.lua"
            script.write_text(WRK_SCRIPT % json.dumps(body))
            targets[label] = (proc, url, script)
            print(f"started {label}: {url}", flush=True)
        for _, url, script in targets.values():
            run_wrk(url, script, max(CONCURRENCY), 3)  # warm-up (compiles, fills batches)
        plan = {label: (url, script) for label, (_, url, script) in targets.items()}
        results = measure_interleaved(plan, CONCURRENCY, args.runs, args.duration)
        for label, (proc, _, _) in targets.items():
            mem[label] = memory(proc.pid)
    finally:
        for proc in reversed(procs):
            proc.stop()
    publish(
        render(results, mem, args),
        DOC,
        BEGIN,
        END,
        "Before and after, measured",
        write=not args.no_docs,
    )
    return 0


def render(results, mem, args) -> str:
    def med(label, c, key):
        return statistics.median(r[key] for r in results[(label, c)])

    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores "
        f"({platform.machine()}), both setups on the same machine, wrk on loopback; load average "
        f"{args.load_before:.1f} before and {os.getloadavg()[0]:.1f} after. `python -m "
        f"bench.migration --runs {args.runs} --duration {args.duration:.0f}`: {args.runs} runs × "
        f"{args.duration:.0f} s per cell, interleaved, medians. Before: {args.workers} gunicorn "
        "sync workers. After: `tfstack up --models models --enable-batching`, gateway defaults.",
        "",
        "| concurrency | before req/s | after req/s | after / before | before p99 ms "
        "| after p99 ms | non-2xx or errors (before, after) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in CONCURRENCY:
        before, after = med(BEFORE, c, "rps"), med(AFTER, c, "rps")
        errors = [sum(r["errors"] for r in results[(label, c)]) for label in (BEFORE, AFTER)]
        lines.append(
            f"| {c} | {before:.0f} | {after:.0f} | {after / max(before, 1e-9):.1f}× | "
            f"{med(BEFORE, c, 'p99_ms'):.1f} | {med(AFTER, c, 'p99_ms'):.1f} | "
            f"{errors[0]}, {errors[1]} |"
        )
    lines += ["", "Memory after the load, per process (MB; PSS counts shared pages once):", ""]
    lines += ["| setup | process | RSS MB | PSS MB |", "|---|---|---:|---:|"]
    for label, rows in mem.items():
        for row in rows:
            lines.append(
                f"| {label} | {row['label']} (pid {row['pid']}) | {row['rss'] / 1024:.0f} | "
                f"{row['pss'] / 1024:.0f} |"
            )
        total = sum(r["pss"] for r in rows) / 1024
        lines.append(f"| {label} | **all processes** | | **{total:.0f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
