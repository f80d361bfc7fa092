"""TF Serving's REST API (`http_rest_api_handler.cc`) and the Prometheus page, on a threaded
HTTP/1.1 server. Requests go through the same Inference core as gRPC."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    regression_pb2,
)

from tfstack.modelserver import rest_json
from tfstack.modelserver.errors import invalid_argument
from tfstack.modelserver.inference import Inference
from tfstack.protocol import content_encoding, json_text, routes
from tfstack.protocol.errors import ERROR_PAGE_TYPE, MissingOrigin, ProtocolError, error_page

log = logging.getLogger("tfstack.modelserver.rest")
_BODY_METHODS = ("POST", "PUT", "PATCH")  # the methods libevent reads a body for
_MAX_LINE = 8192  # a chunk-size or trailer line longer than this is a framing error (400)


def error_body(message: str) -> str:
    return json_text.error_document(message)


class RestApi:
    """Routing and handlers, independent of the HTTP server (returns (status, body))."""

    def __init__(self, core: Inference) -> None:
        self.core = core

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        started = time.monotonic()
        model_name, api = "", ""
        try:
            route = routes.resolve(method, path)
            model_name = route.model.name
            spec = model_pb2.ModelSpec.FromString(route.model.spec().SerializeToString())
            if route.method == "status":
                text = self._status(spec)
            elif route.method == "metadata":
                text = self._metadata(spec)
            else:
                api = route.method
                text = self._post(api, spec, body)
        except ProtocolError as err:
            self.core.metrics.request_count.inc(model_name, err.code.name)
            return err.status, error_body(err.message)
        metrics = self.core.metrics
        metrics.request_count.inc(model_name, "OK")
        metrics.request_latency.observe((time.monotonic() - started) * 1e6, model_name, api, "REST")
        return 200, text

    def _post(self, api: str, spec: model_pb2.ModelSpec, raw: bytes) -> str:
        body = rest_json.parse_json(raw)
        spec.signature_name = rest_json.signature_name(body)
        if api == "predict":
            return self._predict(spec, body)
        return self._examples(api, spec, body)

    def _predict(self, spec: model_pb2.ModelSpec, body: dict) -> str:
        name, version = self.core.resolve_spec(spec)
        signature_name = spec.signature_name
        with self.core.manager.acquire(name, version) as servable:
            signature = servable.signatures.get(signature_name)
            if signature is None:
                raise invalid_argument(
                    f'Serving signature name: "{signature_name}" not found in signature def'
                )
            arrays, row_format = rest_json.decode_predict(body, signature_name, signature.inputs)
            outputs = self.core.run_predict(servable, signature_name, arrays)
        return rest_json.encode_predict(outputs, row_format)

    def _examples(self, api: str, spec: model_pb2.ModelSpec, body: dict) -> str:
        model_input = rest_json.examples_input(body, api)
        if api == "classify":
            request = classification_pb2.ClassificationRequest(model_spec=spec, input=model_input)
            return rest_json.encode_classify(self.core.classify(request).result)
        request = regression_pb2.RegressionRequest(model_spec=spec, input=model_input)
        return rest_json.encode_regress(self.core.regress(request).result)

    def _status(self, spec: model_pb2.ModelSpec) -> str:
        response = self.core.status(get_model_status_pb2.GetModelStatusRequest(model_spec=spec))
        return rest_json.encode_status(response)

    def _metadata(self, spec: model_pb2.ModelSpec) -> str:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=["signature_def"]
        )
        return rest_json.encode_metadata(self.core.metadata(request))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tfstack-modelserver"
    # One segment per response (headers and body buffered, flushed once per request) and no
    # Nagle: otherwise a keep-alive client waits out delayed-ACK (~40 ms) on every request.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    api: RestApi
    metrics_path: str | None
    cors: bool
    tracker: _Inflight

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's signature)
        if log.isEnabledFor(logging.DEBUG):  # per request: skip the formatting when off
            log.debug("%s - %s", self.address_string(), format % args)

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue` (curl sends it with a large body, then waits up to a second for
        the interim answer, as libevent gives it at once): out now, not left in the buffer."""
        accepted = super().handle_expect_100()
        self.wfile.flush()
        return accepted

    def _unmet_expectation(self, method: str) -> bool:
        """An `Expect` other than 100-continue on an HTTP/1.1 request that carries a body:
        libevent (evhttp_get_body) answers 417 with its error page; http.server ignores it."""
        expect = self.headers.get("Expect")
        return (expect is not None and expect.lower() != "100-continue"
                and method in _BODY_METHODS and self.request_version >= "HTTP/1.1")

    def _send_page(self, status: int) -> None:
        """libevent's error page: what TF Serving's HTTP server answers below its handlers."""
        self._send(status, error_page(status), ERROR_PAGE_TYPE)

    def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.cors:
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "POST, GET")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
        self.end_headers()
        if self.command != "HEAD":  # HEAD: the headers a GET would have, no body
            self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        with self.tracker:
            try:
                body = self._read_body()
            except (ValueError, OSError):  # a framing error: the connection cannot go on
                self.close_connection = True
                self._send_page(400)
                return
            if self._unmet_expectation(method):
                self._send_page(417)
                return
            path = routes.routed_path(self.path)
            if self.metrics_path is not None and routes.plain_path(path) == self.metrics_path:
                self._metrics(path)
                return
            if not routes.is_v1(path):
                self._send_page(404)
                return
            if method == "OPTIONS":
                origin = self.headers.get("Origin", "")
                if origin.startswith(("http://", "https://")):
                    self._send(200, "")
                else:
                    self._send(400, error_body(MissingOrigin().message))
                return
            try:
                status, text = self.api.handle(method, path, body)
            except Exception as err:  # noqa: BLE001 (a plain 500, the trace in the log)
                log.exception("REST %s %s failed", method, path)
                status, text = 500, error_body(str(err))
            self._send(status, text)

    def _metrics(self, path: str) -> None:
        """TF Serving's handler for the metrics path (http_server.cc ProcessPrometheusRequest),
        found by the path alone, whatever the verb; a query or fragment makes it a 400."""
        if path != self.metrics_path:
            text = f"Unexpected path: {path}. Should be {self.metrics_path}"
            self._send(400, text, "text/plain")
            return
        self._send(200, self.api.core.metrics.render(), "text/plain; version=0.0.4")

    def _read_body(self) -> bytes:
        """The body as TF Serving's HTTP server (libevent) hands it on: de-chunked, and inflated
        when Content-Encoding says gzip (tfstack/protocol/content_encoding.py)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(f"negative Content-Length: {length}")
            body = self.rfile.read(length) if length > 0 else b""
        if not content_encoding.is_gzip(self.headers.get("Content-Encoding")):
            return body
        try:
            return content_encoding.inflate(body, content_encoding.TFSERVING_MAX_INFLATED_BYTES)
        except content_encoding.InflatedTooLarge:
            return b""

    def _read_chunked(self) -> bytes:
        """RFC 9112 chunked framing: hex sizes (extensions ignored), then trailers, all dropped."""
        parts = []
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE or not line.endswith(b"\n"):
                raise ValueError("chunk size line too long or cut short")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size < 0:
                raise ValueError(f"negative chunk size: {size}")
            if size == 0:
                break
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(_MAX_LINE + 1).strip():
                raise ValueError("chunk cut short or not followed by CRLF")
            parts.append(chunk)
        while (line := self.rfile.readline(_MAX_LINE + 1)).strip():  # trailer fields
            if len(line) > _MAX_LINE:
                raise ValueError("trailer line too long")
        return b"".join(parts)

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self):  # noqa: N802
        self._dispatch("DELETE")

    def do_OPTIONS(self):  # noqa: N802
        self._dispatch("OPTIONS")

    def do_HEAD(self):  # noqa: N802 (TF Serving: "Malformed request: HEAD <path>", 400)
        self._dispatch("HEAD")

    def do_PATCH(self):  # noqa: N802
        self._dispatch("PATCH")


class _Inflight:
    """Counts requests being handled, so shutdown can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    def __enter__(self):
        with self._cond:
            self._count += 1

    def __exit__(self, *exc):
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._count == 0, timeout)


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, host: str, port: int, api: RestApi, metrics_path: str | None, cors: bool):
        self.tracker = _Inflight()
        handler = type(
            "Handler",
            (_Handler,),
            {"api": api, "metrics_path": metrics_path, "cors": cors, "tracker": self.tracker},
        )
        super().__init__((host, port), handler)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="rest", daemon=True)
        thread.start()
        return thread

    def stop(self, grace: float) -> None:
        """Stop accepting, then let in-flight requests finish within `grace` seconds."""
        self.shutdown()
        self.server_close()
        self.tracker.wait_idle(grace)
