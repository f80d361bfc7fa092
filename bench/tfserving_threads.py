"""TF Serving's thread flags for a 1-CPU replica: what the chart should pass by default.

The chart derives `--tensorflow_intra_op_parallelism` and `--tensorflow_inter_op_parallelism` from
the TF Serving container's CPU request when they are not set (`tfserving.threads`). This measures,
on the local model server (which runs the same TensorFlow runtime with the same two flags), one
replica limited to one CPU with `taskset` (a 1-CPU request on a bigger node), predict throughput
and latency for several (intra, inter) pairs, with batching off and on, at concurrency 1 and 16.
TF Serving's performance guide leaves the flags auto-configured and says to tune them by
experiment; this is that experiment for the chart's default.

Same request as bench/modelserver_throughput.py (`digits`, one 8x8 image, REST, wrk). Each cell is
measured `--runs` times, interleaved across the servers; the report gives medians and the ratio to
the (1, 1) pair measured in the same run, and rewrites its section of docs/benchmarks.md.

    python -m bench.tfserving_threads [--runs 3] [--duration 5] [--no-docs]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.docsection import publish
from bench.modelserver_throughput import REPO, WRK_SCRIPT, _body, run_wrk, start_modelserver

DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- tfserving-threads-bench:begin -->", "<!-- tfserving-threads-bench:end -->"
PAIRS = ((1, 1), (1, 2), (1, 4), (2, 2))  # (intra, inter); (1, 1) is the baseline
CONCURRENCY = (1, 16)
CPU = "0"  # the one CPU every server is pinned to


def start(tmp: Path, models_root: Path, intra: int, inter: int, batching: bool):
    flags = (
        f"--tensorflow_intra_op_parallelism={intra}",
        f"--tensorflow_inter_op_parallelism={inter}",
    )
    name = f"modelserver-{intra}-{inter}-{'batching' if batching else 'plain'}"
    proc, base = start_modelserver(
        tmp, models_root, batching, extra=flags, prefix=("taskset", "-c", CPU), name=name
    )
    return proc, f"{base}/v1/models/digits:predict"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-root", type=Path, default=REPO / "model_repo" / "models")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument(
        "--pairs",
        type=lambda text: tuple(tuple(int(n) for n in p.split(",")) for p in text.split()),
        default=PAIRS,
        help='"intra,inter intra,inter ..."; the first is the baseline',
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found")
    args.load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    script = tmp / "predict.lua"
    script.write_text(WRK_SCRIPT % _body())
    results: dict[tuple[bool, tuple[int, int], int], list[dict]] = {}
    for batching in (False, True):
        procs, targets = [], {}
        try:
            for pair in args.pairs:
                proc, url = start(tmp, args.models_root.resolve(), *pair, batching)
                procs.append(proc)
                targets[pair] = url
                run_wrk(url, script, max(CONCURRENCY), 2)  # warm-up
            for run in range(args.runs):
                for pair, url in targets.items():
                    for c in CONCURRENCY:
                        result = run_wrk(url, script, c, args.duration)
                        results.setdefault((batching, pair, c), []).append(result)
                        print(f"run {run + 1}: batching={batching} {pair} c={c} {result}")
        finally:
            for proc in reversed(procs):
                proc.stop()
    publish(
        render(results, args),
        DOC,
        BEGIN,
        END,
        "TF Serving thread flags on one CPU",
        write=not args.no_docs,
    )
    return 0


def render(results, args) -> str:
    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores "
        f"({platform.machine()}), every server pinned to one CPU (`taskset -c {CPU}`); load "
        f"average {args.load_before:.1f} before and {os.getloadavg()[0]:.1f} after; {args.runs} "
        f"runs × {args.duration:.0f} s per cell, medians. `python -m bench.tfserving_threads "
        f"--runs {args.runs} --duration {args.duration:.0f} --pairs "
        f"\"{' '.join(f'{a},{b}' for a, b in args.pairs)}\"`. 0 = TF's own choice.",
        "",
        "| batching | intra, inter | concurrency | req/s | p50 ms | p99 ms | errors "
        "| req/s vs first pair |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (batching, pair, c), runs in results.items():
        base = med(results[(batching, args.pairs[0], c)], "rps")
        rps = med(runs, "rps")
        lines.append(
            f"| {'on' if batching else 'off'} | {pair[0]}, {pair[1]} | {c} | {rps:.0f} | "
            f"{med(runs, 'p50_ms'):.2f} | {med(runs, 'p99_ms'):.2f} | "
            f"{sum(r['errors'] for r in runs)} | {rps / base:.2f}× |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
