"""The floor for any Flask proxy in front of TF Serving: parse the JSON, forward the bytes.

bench/gateway_floor.py runs it under the gateway's own gunicorn settings, next to the gateway and
the bare handler (bench/gateway_bare_app.py). It does what the gateway would do if it forwarded
REST to the replicas' REST port instead of translating to gRPC, and nothing else: no balancing,
no health, no deadline, no admission, no metrics, no access line. Not a product: a measurement of
how much of the gateway's cost any Flask proxy would pay anyway.

    FORWARD_TO=127.0.0.1:8501 gunicorn -c tfstack/gateway/gunicorn.conf.py \\
        'bench.gateway_forward_app:create_app()'
"""

from __future__ import annotations

import json
import os
import socket

from flask import Flask, Response, request

_HEADER_END = b"\r\n\r\n"


class Backend:
    """Keep-alive HTTP/1.1 connections to one backend, reused one request at a time.

    Raw sockets rather than tfstack.testing.loadgen.HttpSession (http.client): a floor should be
    the cheapest forwarder, and http.client's header parsing alone is tens of µs per answer."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.address, self.target = address, (host, int(port))
        self.idle: list[socket.socket] = []

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        sock = self.idle.pop() if self.idle else self._connect()
        try:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: {self.address}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status, answer = _read_response(sock)
        except BaseException:
            sock.close()
            raise
        self.idle.append(sock)
        return status, answer

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.target, timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while _HEADER_END not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("backend closed the connection")
        data += chunk
    head, _, body = data.partition(_HEADER_END)
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("backend closed the connection")
        body += chunk
    return int(lines[0].split()[1]), body


def create_app() -> Flask:
    app = Flask("forward")
    backend = Backend(os.environ["FORWARD_TO"])

    @app.post("/v1/models/<name>:predict")
    def predict(name: str) -> Response:
        raw = request.get_data()
        body = json.loads(raw)  # what the bare handler does; the gateway checks more
        if "instances" not in body and "inputs" not in body:
            return Response(b'{"error": "bad"}', status=400, mimetype="application/json")
        status, answer = backend.post(request.path, raw)
        return Response(answer, status=status, mimetype="application/json")

    return app
