"""Where a gateway worker's CPU goes per predict (issue 10, "Cost per request"; the summary goes
into docs/benchmarks.md next to bench/gateway_overhead.py's figures).

One local model server (digits), one gateway worker with its default settings (admission off, as in
bench/gateway_overhead.py), `wrk -c16` sending the same predict, and py-spy sampling every thread
of that worker (the gevent hub's and the threadpool threads gRPC's gevent integration waits in)
with `--gil`: only the thread holding the interpreter, i.e. Python and C called from Python; time
in the kernel and in gRPC's C core with the GIL released does not show. The samples are grouped by
stage of the request (inclusive), by library (the innermost frame outside the standard library)
and by function (self); the report prints the three tables as markdown.

    pip install py-spy==0.4.3   # not a project dependency: only this script uses it
    python -m bench.gateway_profile [--seconds 20] [--pyspy PATH] [--write docs/benchmarks.md]

The bare Flask handler of bench/gateway_bare_app.py (parse the JSON, answer) is profiled the same
way, after the gateway: what the worker model, gunicorn and Flask cost on their own.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.docsection import write_section
from bench.gateway_overhead import (
    BARE_APP,
    GATEWAY_APP,
    cpu_seconds,
    group_pids,
    predict_path,
    request_body,
    start_gunicorn,
    start_modelserver,
    wrk,
)
from tfstack.runtime.procs import ManagedProcess

SECTION_START = "<!-- section: gateway profile (bench/gateway_profile.py) -->"
SECTION_END = "<!-- end section: gateway profile -->"
# The library a frame belongs to, by the file py-spy names (relative to site-packages or the
# standard library): first match wins. A standard-library frame (threading, inspect, contextvars)
# counts for the nearest caller that is in one of these.
LIBRARIES = (
    ("gevent (hub, greenlet switches, threadpool hand-offs)", r"\((gevent|greenlet)/"),
    ("gunicorn (HTTP parsing, keep-alive loop, response writing)", r"\(gunicorn/"),
    ("werkzeug", r"\(werkzeug/"),
    ("flask", r"\(flask/"),
    ("grpcio (Python side; C core while holding the GIL)", r"\(grpc/"),
    ("protobuf", r"\(google/protobuf/"),
    ("prometheus_client (multiprocess mmap files)", r"\(prometheus_client/"),
    ("logging (the access line; any stdlib logging call)", r"\(logging/|\(tfstack/logconfig"),
    ("json", r"\(json/"),
    ("numpy", r"\(numpy/"),
    ("codec (tfstack/protocol)", r"\(tfstack/protocol/"),
    ("gateway's own code", r"\(tfstack/gateway/"),
)
# Stages of a request, by a function on the stack (inclusive; the first that matches counts).
STAGES = (
    ("HTTP request parsing (gunicorn Request)", r"^Request\.__init__ \(gunicorn/"),
    ("gRPC call to the backend (Upstream._attempt)", r"^Upstream\._attempt \("),
    ("  of which: gevent threadpool hand-off (grpc's gevent integration)",
     r"^ThreadPool\.spawn \(|^GroupMappingMixin\.apply \("),
    ("access log line (accesslog.log_request)", r"^log_request \("),
    ("JSON → tensors (codec.parse_json, decode_predict_body)",
     r"^(decode_predict_body|parse_json) \("),
    ("tensors → JSON (codec.encode_predict_response, dumps)",
     r"^(encode_predict_response|dumps) \("),
    ("metrics (prometheus_client calls)", r"\(prometheus_client/"),
    ("response writing (gunicorn Response.write)", r"^Response\.write \(gunicorn/"),
    ("the gateway's view and hooks otherwise (routing, admission, deadline, request id, body)",
     r"^(v1|_before|_after) \(tfstack/gateway/"),
    ("gevent hub and threadpool threads (outside any request)",
     r"^(Hub\.run|_WorkerGreenlet\.run|Thread\._bootstrap) \("),
)  # fmt: skip


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """py-spy's `--format raw` (collapsed stacks, outermost first) → (frames, samples)."""
    stacks = []
    for line in text.splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def library(frame: str) -> str | None:
    for name, pattern in LIBRARIES:
        if re.search(pattern, frame):
            return name
    return None


def summarize(stacks: list[tuple[list[str], int]], top: int = 15) -> dict:
    total = sum(count for _, count in stacks) or 1
    by_library: collections.Counter[str] = collections.Counter()
    by_frame: collections.Counter[str] = collections.Counter()
    by_stage: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        by_library[next(filter(None, map(library, reversed(frames))), "other")] += count
        by_frame[re.sub(r":\d+\)$", ")", frames[-1])] += count
        on_stack = [name for name, pattern in STAGES
                    if any(re.search(pattern, frame) for frame in frames)]  # fmt: skip
        # A stage counts once (the first listed); an "of which" row counts inside its stage.
        for name in on_stack[:1] + [n for n in on_stack[1:] if n.startswith("  of which")]:
            by_stage[name] += count
    share = lambda counter: [(k, v / total) for k, v in counter.most_common(top)]  # noqa: E731
    stages = [(name, by_stage[name] / total) for name, _ in STAGES if by_stage[name]]
    rest = 1 - sum(v for name, v in stages if not name.startswith("  of which"))
    stages.append(("the rest (gunicorn's loop, Flask and Werkzeug)", rest))
    return {"samples": total, "libraries": share(by_library), "frames": share(by_frame),
            "stages": stages}  # fmt: skip


def table(title: str, rows: list[tuple[str, float]], cpu_ms: float) -> str:
    lines = [f"| {title} | share | ≈ ms CPU/request |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:.1%} | {v * cpu_ms:.3f} |" for k, v in rows]
    return "\n".join(lines)


def report(profiles: dict[str, dict], args) -> str:
    day = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [
        SECTION_START,
        "### Gateway profile: where a worker's CPU goes",
        "",
        f"`python -m bench.gateway_profile --seconds {args.seconds}`, {day} (load average "
        f"{args.load}): one {args.worker_class} worker of each app, `wrk -c16` on loopback, "
        "admission off, py-spy `--gil` sampling the worker at 250 Hz. ms = share × the worker's "
        "CPU per request from /proc: approximate on a shared machine (a sample is wall time "
        "holding the interpreter, and a greenlet switch can leave C work of the hub charged to "
        "the Python line that switched).",
    ]
    for label, p in profiles.items():
        cpu_ms, rows = p["cpu_ms"], p["summary"]
        parts += [
            "",
            f"**{label}**: {p['rps']:.0f} req/s, {cpu_ms:.2f} ms CPU per request, "
            f"{rows['samples']} samples.",
            "",
            table("stage (inclusive)", rows["stages"], cpu_ms),
            "",
            table("library (innermost frame)", rows["libraries"], cpu_ms),
            "",
            table("function (self)", rows["frames"][:8], cpu_ms),
        ]
    return "\n".join([*parts, SECTION_END])


def profile(app: str, seconds: int, pyspy: str, worker_class: str, grpc_port: int,
            run: Path, raw: Path) -> dict:  # fmt: skip
    """`app` under one gunicorn worker, loaded by wrk while py-spy samples it."""
    body, path = request_body("digits"), predict_path("digits")
    proc, port = start_gunicorn(run, raw.stem, app, grpc_port, workers="1",
                                worker_class=worker_class)  # fmt: skip
    try:
        wrk(port, path, body, 3, run)  # warm up: connections, signature cache
        worker = group_pids(proc.pid)[1]
        spy = subprocess.Popen(
            [pyspy, "record", "--gil", "--rate", "250", "--format", "raw", "--nonblocking",
             "--duration", str(seconds), "--pid", str(worker), "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cpu_before = cpu_seconds([worker])
        result = wrk(port, path, body, seconds, run)
        cpu = cpu_seconds([worker]) - cpu_before
        spy.wait(timeout=60)
    finally:
        proc.stop()
    return {"summary": summarize(parse_raw(raw.read_text())),
            "cpu_ms": cpu / max(result["requests"], 1) * 1000,
            "rps": result["requests"] / seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="sampled, under load")
    parser.add_argument("--pyspy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--worker-class", default="gevent", choices=("gevent", "gthread"))
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks in this folder")
    parser.add_argument("--write", type=Path, help="replace the profile section of this file")
    args = parser.parse_args(argv)
    run = Path(tempfile.mkdtemp(prefix="tfstack-bench-profile-"))
    raw_dir = args.raw or run
    raw_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    procs: list[ManagedProcess] = []
    try:
        server, grpc_port, _ = start_modelserver(run, "digits")
        procs.append(server)
        profiles = {
            label: profile(app, args.seconds, args.pyspy, args.worker_class, grpc_port, run,
                           raw_dir / f"{name}.txt")
            for label, app, name in (("Gateway (→ model server)", GATEWAY_APP, "gateway"),
                                     ("Bare Flask handler (parse JSON, answer)", BARE_APP, "bare"))
        }  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(run, ignore_errors=True)
    args.load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    section = report(profiles, args)
    print(section)
    if args.write:
        write_section(args.write, section, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
