"""The gateway's gRPC front door as its own process: `python -m tfstack.gateway.grpc_server`.

One process, no fork, beside gunicorn rather than inside it: the chart runs it as a second
container of the gateway pod, `tfstack up` as a second process (docs/architecture.md, decision
12). Configured by the same `TFSTACK_*` variables; a bad value stops it with a message naming the
variable. SIGTERM drains as gunicorn.conf.py does: not ready at once, serving on for
TFSTACK_DRAIN_DELAY_S, then calls in flight get TFSTACK_GRACEFUL_TIMEOUT_S to finish.

Its metrics live in this process's memory (no prometheus_client multiprocess mode: one process),
served on its own /metrics.
"""

from __future__ import annotations

import logging
import logging.config
import os
import signal
import sys
import threading

from tfstack.gateway.settings import SettingsError, load_settings
from tfstack.runtime.logconfig import config as logging_config
from tfstack.runtime.logconfig import lean_records

log = logging.getLogger(__name__)


def _single_process_metrics() -> None:
    """One process: prometheus_client's plain in-memory metrics, not its multiprocess mode (the
    image sets PROMETHEUS_MULTIPROC_DIR for gunicorn's workers). Each metric update then costs a
    lock and an add instead of a write to a memory-mapped file, and no directory is shared with
    gunicorn, which empties its own at start-up. prometheus_client reads the variable when it is
    first imported, hence before tfstack.gateway.metrics."""
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.pop("prometheus_multiproc_dir", None)  # its older spelling


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as err:
        sys.exit(f"tfstack gateway (gRPC): invalid configuration: {err}")
    logging.config.dictConfig(logging_config(settings.log_level))
    lean_records()
    _single_process_metrics()
    from tfstack.gateway.grpc_app import GrpcGateway  # declares the metrics: after the line above

    terms: list[int] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        # SIGTERM: drain (not ready, still serving) for TFSTACK_DRAIN_DELAY_S, then stop
        # gracefully, as gunicorn.conf.py does. A second SIGTERM, or SIGINT, stops at once.
        terms.append(signum)
        if signum == signal.SIGTERM and len(terms) == 1 and settings.drain_delay_s > 0:
            log.info("SIGTERM: not ready; serving %ss more, then shutting down",
                     settings.drain_delay_s)
            gateway.drain()
            threading.Timer(settings.drain_delay_s, stop.set).start()
        else:
            stop.set()

    try:
        gateway = GrpcGateway(settings)
        # Before serving: a SIGTERM as soon as /readyz answers must drain, not kill.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
        gateway.start()
    except (RuntimeError, OSError) as err:  # a port could not be bound
        sys.exit(
            f"tfstack gateway (gRPC): cannot serve on {settings.grpc_bind} and "
            f"{settings.grpc_ops_bind}: {err}"
        )
    stop.wait()
    gateway.drain()
    grace = settings.graceful_timeout_s if terms[-1] == signal.SIGTERM and len(terms) == 1 else 0
    gateway.stop(grace)
    log.info("gRPC front door stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
