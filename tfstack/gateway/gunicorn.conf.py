"""gunicorn settings for the gateway, from the `TFSTACK_*` environment
(tfstack/gateway/settings.py).

    PROMETHEUS_MULTIPROC_DIR=/tmp/tfstack-gateway-metrics \
        gunicorn -c tfstack/gateway/gunicorn.conf.py 'tfstack.gateway.app:create_app()'

A bad `TFSTACK_*` value, or no PROMETHEUS_MULTIPROC_DIR, stops start-up here, in the master, with
a message naming the variable.
No preload: the app (and with it every gRPC channel) is created in each worker after fork.

Worker model (docs/architecture.md, "Worker model"): gevent by default, one greenlet per
connection, so slow or idle clients cost a parked greenlet, not a thread; gthread stays selectable
with TFSTACK_WORKER_CLASS=gthread.
"""

from __future__ import annotations

import glob
import os
import resource
import shutil
import sys
import tempfile
import time

from gunicorn.glogging import Logger

from tfstack.gateway.settings import SettingsError, load_settings
from tfstack.runtime.logconfig import config as _logging_config  # `logconfig` is a gunicorn setting
from tfstack.runtime.logconfig import lean_records

try:
    _settings = load_settings()
except SettingsError as err:
    sys.exit(f"tfstack gateway: invalid configuration: {err}")

# Prometheus multiprocess mode: set by whatever starts gunicorn (the image, the chart, `tfstack
# up`), never from Python, so that every process sees it from its first import on.
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if not os.environ.get(_MULTIPROC_ENV):
    sys.exit(
        f"tfstack gateway: {_MULTIPROC_ENV} is not set: name a directory for the workers' metric "
        "files (emptied at start-up), e.g. PROMETHEUS_MULTIPROC_DIR=/tmp/tfstack-gateway-metrics"
    )


def _raise_open_files_limit(wanted: int) -> None:
    """Raise the soft open-files limit towards `wanted` (never past the hard limit): a gevent
    worker may hold TFSTACK_WORKER_CONNECTIONS client sockets at once, and 1024, a common soft
    default, is close to the 1000 default. Workers inherit it from the master."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE,
            (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard),
        )


_raise_open_files_limit(_settings.worker_connections + 1024)  # + channels, logs, metric files

bind = [_settings.bind]
worker_class = _settings.worker_class
workers = _settings.workers
threads = _settings.threads  # gthread only
worker_connections = _settings.worker_connections  # gevent only
preload_app = False
timeout = _settings.worker_timeout_s
graceful_timeout = _settings.graceful_timeout_s
# Idle keep-alive connections close after 5 s. Under gevent the same timeout bounds the reading of
# each request's headers (gunicorn's async worker), so a client trickling its headers is dropped.
keepalive = 5
# Heartbeat files in memory, not on a (possibly overlay or network) disk.
_SHM = "/dev/shm"  # noqa: S108 (gunicorn heartbeat files; not secrets)
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None
proc_name = "tfstack-gateway"
loglevel = _settings.log_level
errorlog = "-"  # gunicorn's own logs: stderr
accesslog = None  # the app writes structured JSON access lines (tfstack/gateway/accesslog.py)


class _NoAccessLogger(Logger):
    """gunicorn's logger minus its access log, which the app replaces. With `logconfig_dict` set,
    gunicorn would still build every request's access-log fields (~3 % of a worker's CPU,
    docs/benchmarks.md) for `gunicorn.access`, a logger tfstack/runtime/logconfig.py silences
    anyway."""

    def access(self, resp, req, environ, request_time):
        pass


logger_class = _NoAccessLogger
# The project's one logging configuration (JSON; gunicorn's, the app's and every library's logger),
# applied by gunicorn in the master before any worker forks.
logconfig_dict = _logging_config(_settings.log_level)
lean_records()  # process-wide, so the workers inherit it: no caller lookup per access line
limit_request_line = 8190
# gunicorn's control socket (25.1+, for `gunicornc`) is off: nothing here uses it, it would be one
# more way to change the worker count at runtime, and its default path is under $HOME, which the
# chart's read-only root filesystem does not offer (start-up then only logs a warning).
control_socket_disable = True

# The master creates this file on SIGTERM; workers' /readyz answers 503 while it exists.
DRAIN_FLAG_ENV = "_TFSTACK_DRAIN_FLAG"
_drain_dir: str | None = None


def on_starting(server):
    """The metrics directory, emptied of an earlier run's files; the drain flag's directory."""
    global _drain_dir
    _drain_dir = tempfile.mkdtemp(prefix="tfstack-gateway-drain-")
    os.environ[DRAIN_FLAG_ENV] = os.path.join(_drain_dir, "draining")
    path = os.environ[_MULTIPROC_ENV]
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    server.log.info("prometheus multiprocess dir: %s", path)


def when_ready(server):
    """Drain (docs/resilience.md): on SIGTERM, readiness turns false at once and the gateway keeps
    serving for TFSTACK_DRAIN_DELAY_S (Kubernetes takes the pod out of its endpoints meanwhile);
    then gunicorn stops as usual: listeners closed, in-flight requests finished, exit 0.
    A second SIGTERM, or SIGINT/SIGQUIT, stops at once."""
    delay = _settings.drain_delay_s
    if delay <= 0:
        return
    stop = server.handle_term  # raises StopIteration: the arbiter's graceful shutdown
    murder_workers = server.murder_workers
    drain_until: list[float] = []

    def handle_term():
        if drain_until:
            stop()
        with open(os.environ[DRAIN_FLAG_ENV], "w"):
            pass
        drain_until.append(time.monotonic() + delay)
        server.log.info("SIGTERM: not ready; serving %ss more, then shutting down", delay)

    def murder_workers_then_maybe_stop():  # the arbiter calls this at least once a second
        murder_workers()
        if drain_until and time.monotonic() >= drain_until[0]:
            stop()

    server.handle_term = handle_term
    server.murder_workers = murder_workers_then_maybe_stop


def post_worker_init(worker):
    """In the worker, before it serves: discovery, the health thread and a first readiness check
    of every endpoint, so `/readyz` answers from memory from the first probe on.

    Under gevent, gRPC is switched to gevent's loop first: gunicorn has monkey-patched the standard
    library by now (in the worker's init_process, after post_fork), and grpc wants that done
    before its own init and both before the first channel. The discovery and health "threads"
    are greenlets from here on; their blocking calls (sockets, gRPC, Event.wait) yield."""
    if _settings.worker_class == "gevent":
        from grpc.experimental import gevent as grpc_gevent

        grpc_gevent.init_gevent()
    gateway = getattr(worker.wsgi, "extensions", {}).get("tfstack")
    if gateway is not None:
        gateway.upstream.start()
    worker.log.info("worker %s: gRPC channels open, first readiness check done", worker.pid)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _drain_dir:
        shutil.rmtree(_drain_dir, ignore_errors=True)
