"""Predict throughput and latency of the local model server on `digits`, batching off and on, and
of the gateway in front of it (batching on; both with default settings), at concurrency 1, 16 and
32, next to the hand-rolled baseline (bench/modelserver_flask_app.py: Flask under gunicorn, the
model loaded per worker, one TF call per request).

Same request for all: REST `POST /v1/models/<model>:predict` with one 8x8 image, JSON in and
out, keep-alive where the server offers it. `--model digits` (default) is the example model, whose
TF call is cheaper than any server's own work; `--model digits_wide` (bench/wide_model.py, built
into the run's temporary folder) takes the same input through three 2048-unit layers, a model
whose TF call costs more than the serving around it, and has its own section in the doc.

Load comes from `wrk` (C, closed loop, loopback) so the client costs little of the 2 cores; every
run is bounded by `--duration`. Each (target, concurrency) is measured `--runs` times,
interleaved; the report gives medians and the ratio to the baseline, and rewrites the model's
section of docs/benchmarks.md.

    python -m bench.modelserver_throughput [--model digits] [--runs 3] [--duration 10] [--no-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.docsection import publish
from bench.gateway_overhead import start_gunicorn
from tfstack.runtime.procs import ManagedProcess, free_port, http_status

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- modelserver-bench:begin -->", "<!-- modelserver-bench:end -->"
SECTIONS = {  # --model -> (begin, end, heading) of its section in docs/benchmarks.md
    "digits": (BEGIN, END, "Model server: predict throughput"),
    "digits_wide": ("<!-- modelserver-bench-wide:begin -->", "<!-- modelserver-bench-wide:end -->",
                    "Model server: predict throughput, a heavier model"),
}
CONCURRENCY = (1, 16, 32)
BASELINE = "Flask + gunicorn (baseline)"
GATEWAY = "gateway → modelserver, batching on"
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _body() -> str:
    from tfstack.model_repo.data import digits_split

    image = digits_split()[1][0]
    return json.dumps({"instances": [image.tolist()]})


def _latency_ms(text: str, pct: str) -> float:
    match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    return float(match.group(1)) * UNITS[match.group(2)] if match else float("nan")


def run_wrk(url: str, script: Path, connections: int, duration: float) -> dict:
    threads = min(connections, 2)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(int(duration), 1)}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    errors += sum(int(g) for g in socket.groups()) if socket else 0
    return {
        "rps": rps,
        "p50_ms": _latency_ms(out, "50"),
        "p99_ms": _latency_ms(out, "99"),
        "errors": errors,
    }


def measure_interleaved(
    targets: dict[str, tuple[str, Path]], concurrency: tuple[int, ...], runs: int, duration: float
) -> dict[tuple[str, int], list[dict]]:
    """wrk on every (target, concurrency) `runs` times, interleaved so that drift in the
    machine's load spreads over all targets; target label -> (URL, wrk script)."""
    results: dict[tuple[str, int], list[dict]] = {}
    for run in range(runs):
        for label, (url, script) in targets.items():
            for c in concurrency:
                result = run_wrk(url, script, c, duration)
                results.setdefault((label, c), []).append(result)
                print(f"run {run + 1}: {label} c={c} {result}", flush=True)
    return results


def start_modelserver(
    tmp: Path,
    models_root: Path,
    batching: bool,
    extra: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
    name: str = "",
    grpc_port: int | None = None,
    model: str = "digits",
) -> tuple[ManagedProcess, str]:
    """The model server on `model` under `models_root` (`prefix`: e.g. a `taskset` command line;
    `extra`: flags)."""
    port = free_port()
    argv = [
        *prefix,
        sys.executable,
        "-m",
        "tfstack.modelserver",
        "--host=127.0.0.1",
        f"--port={grpc_port or free_port()}",
        f"--rest_api_port={port}",
        f"--model_name={model}",
        f"--model_base_path={models_root / model}",
        f"--monitoring_config_file={REPO / 'model_repo' / 'monitoring.config'}",
        *extra,
    ]
    if batching:
        argv += [
            "--enable_batching",
            f"--batching_parameters_file={REPO / 'model_repo' / 'batching_parameters.txt'}",
        ]
    name = name or ("modelserver-batching" if batching else "modelserver")
    proc = ManagedProcess(name, argv, tmp / f"{name}.log", cwd=REPO).start()
    base = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{base}/v1/models/{model}", timeout=300, stop_on_failure=True)
    return proc, base


def start_gunicorn_app(
    tmp: Path, name: str, app: str, env: dict[str, str], workers: int
) -> tuple[ManagedProcess, str]:
    """A WSGI app under gunicorn's sync workers on a free loopback port; not waited for."""
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    argv = [gunicorn, "-w", str(workers), "-b", f"127.0.0.1:{port}", "--timeout", "120", app]
    proc = ManagedProcess(name, argv, tmp / f"{name}.log", env=env, cwd=REPO).start()
    return proc, f"http://127.0.0.1:{port}"


def start_flask(tmp: Path, model_dir: Path, workers: int) -> tuple[ManagedProcess, str]:
    env = dict(os.environ, BENCH_MODEL_DIR=str(model_dir))
    app = "bench.modelserver_flask_app:create_app()"
    proc, base = start_gunicorn_app(tmp, "flask", app, env, workers)
    # Ready once a worker answers a real prediction (each worker loads the model itself).
    proc.wait_until(lambda: _post_ok(f"{base}/v1/models/m:predict"), 300, "predicting",
                    stop_on_failure=True)
    return proc, base


def start_gateway(tmp: Path, grpc_port: int) -> tuple[ManagedProcess, str]:
    """The gateway with its default settings (admission included) in front of `grpc_port`."""
    proc, port = start_gunicorn(tmp, "gateway", "tfstack.gateway.app:create_app()", grpc_port,
                                max_inflight="0")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    proc.wait_until(lambda: http_status(f"{base}/readyz") == 200, 60, "ready",
                    stop_on_failure=True)
    return proc, base


def _post_ok(url: str) -> bool:
    if http_status(url.rsplit("/v1", 1)[0] + "/") is None:
        return False
    req = urllib.request.Request(
        url,
        data=_body().encode(),
        method="POST",  # noqa: S310
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
            return resp.status == 200
    except OSError:
        return False


def mean_batch_size(base: str) -> float | None:
    with urllib.request.urlopen(f"{base}/monitoring/prometheus/metrics", timeout=10) as resp:  # noqa: S310
        text = resp.read().decode()
    name = ":tensorflow:serving:batching_session:processed_batch_size"
    total = re.search(rf"^{name}_sum\{{\}} (\S+)", text, re.M)
    count = re.search(rf"^{name}_count\{{\}} (\d+)", text, re.M)
    if not total or not count or int(count.group(1)) == 0:
        return None
    return float(total.group(1)) / int(count.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-root", type=Path, default=REPO / "model_repo" / "models")
    parser.add_argument("--model", choices=sorted(SECTIONS), default="digits")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--flask-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    models_root = args.models_root.resolve()
    args.load_before = os.getloadavg()[0]  # other work on the machine skews every number
    tmp = Path(tempfile.mkdtemp(prefix="bench-modelserver-"))
    if args.model == "digits":
        flask_model = models_root / "digits" / "2"
    else:  # built here, in TF's own process: this one never imports TensorFlow
        models_root = tmp / "models"
        build = [sys.executable, "-m", "bench.wide_model", str(models_root / args.model)]
        out = subprocess.run(build, cwd=REPO, capture_output=True, text=True, check=True,
                             timeout=600)
        flask_model = Path(out.stdout.strip().splitlines()[-1])
    script = tmp / "predict.lua"
    script.write_text(WRK_SCRIPT % _body())
    procs: list[ManagedProcess] = []
    try:
        targets = {}
        grpc_port = free_port()  # the batching model server's, for the gateway
        for label, start in (
            (BASELINE, lambda: start_flask(tmp, flask_model, args.flask_workers)),
            ("modelserver, batching off",
             lambda: start_modelserver(tmp, models_root, False, model=args.model)),
            (
                "modelserver, batching on",
                lambda: start_modelserver(tmp, models_root, True, grpc_port=grpc_port,
                                          model=args.model),
            ),
            (GATEWAY, lambda: start_gateway(tmp, grpc_port)),
        ):
            proc, base = start()
            procs.append(proc)
            targets[label] = f"{base}/v1/models/{args.model}:predict"
            print(f"started {label} at {base}", flush=True)
        for url in targets.values():
            for c in CONCURRENCY:
                run_wrk(url, script, c, args.warmup)
        plan = {label: (url, script) for label, url in targets.items()}
        results = measure_interleaved(plan, CONCURRENCY, args.runs, args.duration)
        batch = mean_batch_size(targets["modelserver, batching on"].split("/v1/")[0])
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    begin, end, heading = SECTIONS[args.model]
    publish(render(results, args, batch), DOC, begin, end, heading, write=not args.no_docs)
    return 0


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def render(results, args, batch: float | None) -> str:
    baseline = BASELINE
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} "
        f"cores ({platform.machine()}), load average {args.load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after the run; {args.runs} runs × {args.duration:.0f} s "
        "per cell, medians. "
        f"`python -m bench.modelserver_throughput --model {args.model} --runs {args.runs} "
        f"--duration {args.duration:.0f}`. Baseline: {args.flask_workers} sync gunicorn workers.",
        "",
        "| server | concurrency | req/s | p50 ms | p99 ms | errors | req/s vs baseline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (label, c), runs in results.items():
        rps = _median(runs, "rps")
        base = _median(results[(baseline, c)], "rps")
        lines.append(
            f"| {label} | {c} | {rps:.0f} | {_median(runs, 'p50_ms'):.2f} | "
            f"{_median(runs, 'p99_ms'):.2f} | {sum(r['errors'] for r in runs)} | "
            f"{rps / base:.2f}× |"
        )
    if batch is not None:
        lines += ["", f"Mean processed batch size with batching on (whole run): {batch:.1f}."]
    lines += ["", "Gateway + model server vs the baseline (target: ≥ 2× the req/s, a lower p99, no "
              "errors): " + "; ".join(_verdict(results, c) for c in CONCURRENCY if c > 1) + "."]
    return "\n".join(lines)


def _verdict(results, c: int) -> str:
    gateway, base = results[(GATEWAY, c)], results[(BASELINE, c)]
    ratio = _median(gateway, "rps") / _median(base, "rps")
    lower_p99 = _median(gateway, "p99_ms") < _median(base, "p99_ms")
    errors = sum(r["errors"] for r in gateway)
    met = ratio >= 2 and lower_p99 and errors == 0
    return (f"c={c}: {ratio:.2f}×, p99 {'lower' if lower_p99 else 'higher'}, {errors} errors — "
            f"{'met' if met else '**missed**'}")


if __name__ == "__main__":
    sys.exit(main())
