"""The gateway's Flask application factory: TF Serving's REST API plus operational endpoints.

Run it with `gunicorn -c tfstack/gateway/gunicorn.conf.py 'tfstack.gateway.app:create_app()'`.
Nothing is created at import time; gRPC channels come to life in each worker after fork, before it
serves (gunicorn.conf.py's `post_worker_init`), or on first use elsewhere (upstream.py).
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from logging import Logger

from flask import Blueprint, Flask, Request, Response, current_app, g, request

from tfstack.gateway import accesslog, metrics, service
from tfstack.gateway.admission import Admission, thread_cap
from tfstack.gateway.domain import BadTimeoutHeader, Deadline, Overloaded, PayloadTooLarge
from tfstack.gateway.errors import register_error_handlers
from tfstack.gateway.settings import Settings, load_settings
from tfstack.gateway.upstream import CALLS, Upstream
from tfstack.protocol import codec, content_encoding, routes
from tfstack.protocol.errors import ERROR_PAGE_TYPE, MissingOrigin, error_page

REQUEST_ID_HEADER = "X-Request-ID"
TIMEOUT_HEADER = "X-Request-Timeout-Ms"
# The same headers as WSGI environ keys: read there directly, without werkzeug's header view.
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
_TIMEOUT_ENVIRON = "HTTP_X_REQUEST_TIMEOUT_MS"
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII: safe to log and echo
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# A body refused as too large (413) is read and thrown away, within these bounds, before the answer
# goes out: most clients send the whole body before they read, and a server that answers and
# closes early leaves them with a broken pipe instead of the 413. Drained, the keep-alive
# connection stays usable; past a bound gunicorn closes it (its own drain gives up quickly).
DISCARD_MAX_BYTES = 256 * 2**20
DISCARD_MAX_S = 10.0


@dataclass
class Gateway:
    settings: Settings
    upstream: Upstream
    access_log: Logger | None  # None: TFSTACK_ACCESS_LOG=false
    admission: Admission


def _gateway() -> Gateway:
    return current_app.extensions["tfstack"]


def json_response(obj: object, status: int = 200) -> Response:
    return Response(codec.dumps(obj), status=status, content_type="application/json")


def not_found() -> Response:
    """TF Serving's answer where no handler takes the path: libevent's 404 page (not JSON)."""
    return Response(error_page(404), status=404, content_type=ERROR_PAGE_TYPE)


tfserving = Blueprint("tfserving", __name__)
ops = Blueprint("ops", __name__)


@tfserving.route("/", defaults={"_path": ""}, methods=_ALL_METHODS, provide_automatic_options=False)
@tfserving.route("/<path:_path>", methods=_ALL_METHODS, provide_automatic_options=False)
def v1(_path: str) -> Response:
    req = request._get_current_object()  # one proxy lookup, not one per attribute
    path = _raw_path(req)
    if not routes.is_v1(path):
        return not_found()
    method = req.method
    if method == "OPTIONS":
        return _cors_preflight()
    route = routes.resolve(method, path)
    gateway = _gateway()
    state: _RequestState = g.tfstack
    state.route = route
    deadline = Deadline.capped(_asked_timeout_ms(req), gateway.settings.deadline_ms)
    raw = _request_body(req, gateway.settings.max_body_bytes) if method == "POST" else b""
    # Admission once the body is in: a client still sending (slow, or stalled) holds no slot, only
    # its connection (a greenlet under gevent); admitted work is work the backends can start.
    model = route.model.name
    rejection = gateway.admission.try_acquire(model)
    if rejection is not None:
        metrics.ADMISSION_REJECTIONS.labels(rejection.reason).inc()
        raise Overloaded(rejection.reason, rejection.retry_after_s)
    metrics.INFLIGHT.inc()
    try:
        body = service.HANDLERS[route.method](gateway.upstream, route.model, raw, deadline)
    finally:
        metrics.INFLIGHT.dec()
        gateway.admission.release(model)
    return json_response(body)


def _request_body(req: Request, limit: int) -> bytes:
    """The body, uncompressed when it came gzip-compressed (as TF Serving's HTTP server does);
    the size limit holds for what it inflates to as well (413)."""
    raw = req.get_data(cache=False)
    if not content_encoding.is_gzip(req.environ.get("HTTP_CONTENT_ENCODING")):
        return raw
    try:
        return content_encoding.inflate(raw, limit)
    except content_encoding.InflatedTooLarge:
        raise PayloadTooLarge(limit) from None


def _raw_path(req: Request) -> str:
    """The path TF Serving would route on: as sent (percent-escapes kept; TF Serving matches before
    unescaping), query and fragment included (routes.routed_path)."""
    environ = req.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        query = environ.get("QUERY_STRING")
        return req.path + (f"?{query}" if query else "")
    return routes.routed_path(raw)


def _asked_timeout_ms(req: Request) -> int | None:
    """The client's deadline from its header, None when it sent none."""
    raw = req.environ.get(_TIMEOUT_ENVIRON)
    if raw is None:
        return None
    try:
        asked = int(raw)
    except ValueError:
        raise BadTimeoutHeader(TIMEOUT_HEADER, raw) from None
    if asked <= 0:
        raise BadTimeoutHeader(TIMEOUT_HEADER, raw)
    return asked


def _cors_preflight() -> Response:
    origin = request.headers.get("Origin", "")
    if not origin.startswith(("http://", "https://")):
        raise MissingOrigin()
    return Response(status=200)


@ops.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"})


@ops.get("/readyz")
def readyz() -> Response:
    if _drain_flagged():
        return json_response({"ready": False, "draining": True}, 503)
    ready, endpoints = _gateway().upstream.readiness()
    return json_response({"ready": ready, "endpoints": endpoints}, 200 if ready else 503)


def _drain_flagged() -> bool:
    """gunicorn.conf.py's master flags a drain (SIGTERM) with a file every worker can see."""
    flag = os.environ.get("_TFSTACK_DRAIN_FLAG")
    return bool(flag) and os.path.exists(flag)


@ops.get("/metrics")
def metrics_endpoint() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


@ops.get("/debug/endpoints")
def debug_endpoints() -> Response:
    gateway = _gateway()
    if not gateway.settings.debug_endpoints:
        return not_found()
    return json_response({"pid": os.getpid(), "endpoints": gateway.upstream.pool.snapshot()})


@ops.get("/debug/vars")
def debug_vars() -> Response:
    gateway = _gateway()
    if not gateway.settings.debug_endpoints:
        return not_found()
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
    return json_response(
        {
            "pid": os.getpid(),
            "tensorflow_loaded": "tensorflow" in sys.modules,
            # Read only for tensors too large to read in plain Python (protocol/tensor_to_json.py).
            "numpy_loaded": "numpy" in sys.modules,
            "heavy_modules": heavy[:20],
            "modules_loaded": len(sys.modules),
            "rss_bytes": _rss_bytes(),
        }
    )


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _discard_body() -> None:
    """Read what is left of the request body, up to DISCARD_MAX_BYTES and DISCARD_MAX_S."""
    length = request.content_length
    if length is not None and length > DISCARD_MAX_BYTES:
        return
    stream = request.environ["wsgi.input"]
    sock = request.environ.get("gunicorn.socket")  # to bound each read: a client may stall
    deadline = time.monotonic() + DISCARD_MAX_S
    left = DISCARD_MAX_BYTES
    try:
        while left > 0 and (remaining := deadline - time.monotonic()) > 0:
            if sock is not None:
                sock.settimeout(remaining)
            chunk = stream.read(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)
            time.sleep(0)  # under gevent, let the other connections run between chunks
    except (OSError, ValueError):  # the client went away or stalled: gunicorn closes
        return
    finally:
        if sock is not None:
            sock.settimeout(None)


@dataclass
class _RequestState:
    """What the hooks and the view share about one request (on `g`, looked up once per hook)."""

    started: float
    request_id: str
    route: routes.Route | None = None


def _before() -> None:
    req = request._get_current_object()
    given = req.environ.get(_REQUEST_ID_ENVIRON, "")
    request_id = given if _REQUEST_ID.match(given) else os.urandom(16).hex()
    g.tfstack = _RequestState(time.perf_counter(), request_id)
    CALLS.set([])


def _after(response: Response) -> Response:
    state: _RequestState | None = g.get("tfstack")
    request_id = state.request_id if state is not None else ""
    response.headers[REQUEST_ID_HEADER] = request_id
    status = response.status_code
    if status == 413:
        _discard_body()
    gateway = _gateway()
    now = time.perf_counter()
    duration = now - (state.started if state is not None else now)
    route = state.route if state is not None else None
    if route is not None:
        model = gateway.upstream.model_label(route.model.name)
        metrics.child(metrics.REQUESTS, model, route.method, str(status), "rest").inc()
        metrics.child(metrics.REQUEST_DURATION, model, route.method, "rest").observe(duration)
    if gateway.access_log is not None:
        req = request._get_current_object()
        calls = CALLS.get() or []
        accesslog.log_request(
            gateway.access_log,
            request_id=request_id,
            method=req.method,
            path=req.path,
            model=route.model.name if route is not None else None,
            status=status,
            duration_ms=round(duration * 1000, 3),
            upstream=[f"{address} {rpc} {ms:.3f}ms" for address, rpc, ms in calls],
            bytes=response.calculate_content_length() or 0,
        )
    return response


def _admission(settings: Settings, upstream: Upstream) -> Admission:
    """The worker's bound follows the endpoints its health tracker has in rotation (admission.py);
    `upstream.health` is looked up each time: the upstream replaces it when its pool starts."""
    return Admission(
        settings.max_inflight,
        dict(settings.model_max_inflight),
        settings.retry_after_s,
        per_endpoint=settings.max_inflight_per_endpoint,
        ready_endpoints=lambda: upstream.health.counts()["ready"],
        cap=thread_cap(settings.threads) if settings.worker_class == "gthread" else None,
    )


def create_app(settings: Settings | None = None, upstream: Upstream | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask("tfstack.gateway")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    upstream = upstream or Upstream(settings)
    app.extensions["tfstack"] = Gateway(
        settings=settings,
        upstream=upstream,
        access_log=accesslog.access_logger(settings.access_log),
        admission=_admission(settings, upstream),
    )
    metrics.record_build_info()
    app.before_request(_before)
    app.after_request(_after)
    register_error_handlers(app)
    app.register_blueprint(ops)
    app.register_blueprint(tfserving)
    return app
