"""`make bench`: every benchmark in turn, each in its own process, each writing its section of
docs/benchmarks.md where it writes one. Measurements, never pass/fail; see each script's
--help to run one alone with other settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

BENCHMARKS = [
    ["bench.gateway_overhead", "--write", "docs/benchmarks.md"],
    ["bench.grpc_overhead", "--write", "docs/benchmarks.md"],
    ["bench.gateway_floor", "--write", "docs/benchmarks.md"],
    ["bench.idle_gap", "--write", "docs/benchmarks.md"],
    ["bench.grpc_client_cost", "--write", "docs/benchmarks.md"],
    ["bench.modelserver_throughput"],
    ["bench.modelserver_throughput", "--model", "digits_wide"],
    ["bench.balancing_scaling"],
    ["bench.balancing_admission_cost"],
    ["bench.worker_model", "--write", "docs/benchmarks.md"],
]


def main() -> int:
    if shutil.which("wrk") is None:
        sys.exit("make bench needs wrk: apt-get install -y wrk")
    failed = []
    for module, *args in BENCHMARKS:
        print(
            f"\n== {module} {' '.join(args)}  (load average {os.getloadavg()[0]:.1f})", flush=True
        )
        if subprocess.run([sys.executable, "-m", module, *args], check=False).returncode:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
