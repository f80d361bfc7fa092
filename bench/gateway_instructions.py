"""Instructions per request of the gateway's Flask app, counted by valgrind: a meter for issue 10's
cost work that run-to-run noise does not blur (docs/benchmarks.md, "Gateway instructions").

CPU time per request on this shared 2-core virtual machine moves by 30-50% between two runs of the
same code (bench/gateway_overhead.py), so a change worth 10% cannot be seen there. Instructions
executed are (nearly) deterministic. Each app runs in its own process under callgrind
(`apt-get install -y valgrind`), called as a WSGI app in a loop, without gunicorn or gevent, with a
digits predict (the body bench/gateway_overhead.py sends). After a warm-up the process counts
`--requests` requests per round, `--rounds` rounds (callgrind_control zeroes the counters before a
round and dumps them after it); the report gives the median per request, every thread of the
process included (gRPC's C core has its own). Modes:

- the bare Flask handler (bench/gateway_bare_app.py): parse the JSON, answer;
- the gateway with the backend's answer replayed: its stub returns the first answer the local
  model server gave, so this is everything the gateway does per request except the gRPC call;
- the gateway, calling one local model server over gRPC (the server's own work is not counted).

Not counted, the same for both apps or outside the process: gunicorn's HTTP parsing and response
writing, gevent's hub, the kernel. So the ratios here are the Python path's, not the worker's.

    .venv/bin/python -m bench.gateway_instructions [--rounds 3] [--requests 300] \\
        [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODES = ("bare", "replayed", "gateway")
WHAT = {
    "bare": "bare Flask handler (parse JSON, answer)",
    "replayed": "gateway, backend answer replayed (everything but the gRPC call)",
    "gateway": "gateway, gRPC call to the local model server",
}
WARM_UP = 200
SECTION_START = "<!-- section: gateway instructions (bench/gateway_instructions.py) -->"
SECTION_END = "<!-- end section: gateway instructions -->"


# -- the measured process (under valgrind) ------------------------------------------------------
def _environ(path: str, body: bytes) -> dict:
    """A WSGI environ as gunicorn builds it for this request."""
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "RAW_URI": path, "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8080", "HTTP_USER_AGENT": "bench",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http", "wsgi.multithread": False, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }  # fmt: skip


def _app(mode: str, grpc_port: int, metrics_dir: str):
    if mode == "bare":
        from bench.gateway_bare_app import create_app

        return create_app()
    os.environ.update(
        TFSTACK_BACKENDS=f"127.0.0.1:{grpc_port}",
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        TFSTACK_MAX_INFLIGHT="100000",  # admission off, as in bench/gateway_overhead.py
        TFSTACK_READY_CHECK_INTERVAL_MS="60000",  # background checks kept out of the rounds
    )
    import logging.config

    from tfstack.runtime import logconfig

    # As gunicorn.conf.py configures a worker, the access log going nowhere (stdout is the
    # conversation with the parent).
    config = logconfig.config("info")
    config["handlers"]["stdout"]["stream"] = open(os.devnull, "w")  # noqa: SIM115
    logging.config.dictConfig(config)
    logconfig.lean_records()
    from tfstack.gateway import app as gateway_app
    from tfstack.gateway import upstream

    if mode == "replayed":
        real = upstream._Client.method
        answers: dict[str, object] = {}

        def method(client, rpc: str):
            call = real(client, rpc)
            if rpc != "Predict":  # readiness checks and metadata stay real
                return call

            def replay(request, timeout=None):
                if rpc not in answers:
                    answers[rpc] = call(request, timeout=timeout)
                return answers[rpc]

            return replay

        upstream._Client.method = method
    return gateway_app.create_app()


def _wait_for(line: str) -> None:
    """Read the parent's next line, executing code meanwhile: callgrind handles
    callgrind_control's requests only while the program runs, not while it sleeps in a read."""
    import select

    while not select.select([sys.stdin], [], [], 0)[0]:
        pass
    got = sys.stdin.readline().strip()
    if got != line:
        raise SystemExit(f"expected {line!r} from the parent, got {got!r}")


def child(mode: str, grpc_port: int, rounds: int, requests: int) -> None:
    from bench.gateway_overhead import predict_path, request_body

    path, body = predict_path("digits"), request_body("digits")
    statuses: list[str] = []

    def start_response(status: str, _headers, _exc_info=None) -> None:
        statuses.append(status)

    def serve(count: int) -> None:
        for _ in range(count):
            for _chunk in app(_environ(path, body), start_response):
                pass
        if not all(status.startswith("200") for status in statuses):
            raise SystemExit(f"{mode}: not every answer was 200: {sorted(set(statuses))}")
        statuses.clear()

    with tempfile.TemporaryDirectory(prefix="tfstack-instructions-") as metrics_dir:
        app = _app(mode, grpc_port, metrics_dir)
        # Under valgrind everything is ~50x slower: the first readiness check of the backend may
        # time out, and the gateway answers 503 until a later one passes.
        deadline = time.monotonic() + 600
        while not statuses or not statuses[-1].startswith("200"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode}: never answered 200: {sorted(set(statuses))}")
            statuses.clear()
            for _chunk in app(_environ(path, body), start_response):
                pass
            time.sleep(0.5 if not statuses[-1].startswith("200") else 0)
        statuses.clear()
        serve(WARM_UP)
        for _ in range(rounds):
            print("READY", flush=True)
            _wait_for("GO")
            serve(requests)
            print("DONE", flush=True)
            _wait_for("NEXT")


# -- the driver -------------------------------------------------------------------------------
def _instructions(dump: Path) -> int:
    found = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in {dump}")
    return int(found.group(1))


def measure(mode: str, grpc_port: int, rounds: int, requests: int, out: Path) -> list[float]:
    """`mode`'s instructions per request, one figure per round."""
    control = shutil.which("callgrind_control")
    with open(out / f"{mode}.log", "w") as log:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/{mode}.%p",
             sys.executable, "-m", "bench.gateway_instructions", "--child", mode,
             "--grpc-port", str(grpc_port), "--rounds", str(rounds), "--requests", str(requests)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"}, cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
    per_request = []
    try:
        for index in range(1, rounds + 1):
            if proc.stdout.readline().strip() != "READY":
                raise RuntimeError(f"{mode}: the child failed, see {out / f'{mode}.log'}")
            subprocess.run([control, "-z", str(proc.pid)], check=True, capture_output=True)
            proc.stdin.write("GO\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "DONE":
                raise RuntimeError(f"{mode}: the child failed, see {out / f'{mode}.log'}")
            subprocess.run([control, "-d", str(proc.pid)], check=True, capture_output=True)
            proc.stdin.write("NEXT\n")
            proc.stdin.flush()
            per_request.append(_instructions(out / f"{mode}.{proc.pid}.{index}") / requests)
            print(f"{mode} round {index}: {per_request[-1] / 1e6:.3f} M/request", flush=True)
        if proc.wait(timeout=600) != 0:
            raise RuntimeError(f"{mode}: exit status {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return per_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="per round")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {','.join(MODES)} (a report needs bare)")
    parser.add_argument("--write", type=Path, help="rewrite this file's section")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--grpc-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.grpc_port, args.rounds, args.requests)
        return 0
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        sys.exit("needs valgrind: apt-get install -y valgrind")
    modes = [mode for mode in MODES if mode in args.modes.split(",")]

    from bench.docsection import markdown_table, provenance, publish
    from bench.gateway_overhead import BODY_TEXT, local_modelserver

    load_before = os.getloadavg()
    out = Path(tempfile.mkdtemp(prefix="tfstack-callgrind-"))  # kept on failure: the logs
    with (
        local_modelserver("digits", "tfstack-instructions-") as (grpc_port, _rest_port),
        ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
    ):
        futures = {
            mode: pool.submit(measure, mode, grpc_port, args.rounds, args.requests, out)
            for mode in modes
        }
        per_round = {mode: future.result() for mode, future in futures.items()}
    shutil.rmtree(out)
    results = {mode: statistics.median(figures) for mode, figures in per_round.items()}
    if "bare" not in results:  # a partial run (--modes): the per-round figures above are all
        return 0
    load_after = os.getloadavg()
    rows = [
        [WHAT[mode], f"{results[mode] / 1e6:.3f}", f"{results[mode] / results['bare']:.2f}×"]
        for mode in modes
    ]
    command = (f"python -m bench.gateway_instructions --rounds {args.rounds} "
               f"--requests {args.requests}"
               + (f" --modes {','.join(modes)}" if len(modes) < len(MODES) else ""))
    report = (
        f"{provenance(command, load_before, load_after)}: each app called as a WSGI app in its "
        f"own process under valgrind's callgrind, `{BODY_TEXT['digits']}` to "
        f"`/v1/models/digits:predict`; instructions per request, every thread of the process, "
        f"median of {args.rounds} rounds of {args.requests} requests after {WARM_UP} to warm "
        "up. gunicorn, gevent and the kernel are not counted (the same for both apps).\n\n"
        + markdown_table(["app", "M instructions per request", "× bare"], rows)
        + "\n\nEach round, M instructions per request: "
        + ", ".join(f"{mode} " + " / ".join(f"{v / 1e6:.3f}" for v in per_round[mode])
                    for mode in modes)
    )
    publish(report, args.write or Path("docs/benchmarks.md"), SECTION_START, SECTION_END,
            "Gateway instructions: a noise-free meter", write=args.write is not None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
