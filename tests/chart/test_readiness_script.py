"""The TF Serving readiness/start-up probe script, run with real bash against an HTTP server that
answers like TF Serving's REST status API (GetModelStatus JSON, as printed by TF Serving).

The official image has bash and coreutils but no curl, so the script talks HTTP over /dev/tcp."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def status(*versions: tuple[int, str]) -> bytes:
    body = {
        "model_version_status": [
            {"version": str(v), "state": state, "status": {"error_code": "OK", "error_message": ""}}
            for v, state in versions
        ]
    }
    return json.dumps(body, indent=1).encode()  # TF Serving pretty-prints, one field per line


STATUS = {
    "/v1/models/half_plus_two": status((1, "AVAILABLE")),
    # A newer version still loading, an older one unloaded: the model serves.
    "/v1/models/digits": status((3, "LOADING"), (2, "AVAILABLE"), (1, "END")),
    "/v1/models/digits/versions/1": status((1, "AVAILABLE")),
    "/v1/models/digits/versions/2": status((2, "LOADING")),
    "/v1/models/loading": status((1, "LOADING")),
}


class TFServingStatus(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802
        body = STATUS.get(self.path)
        if body is None:
            body = b'{ "error": "Could not find any versions of model x" }'
            self.send_response(404)
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def rest_port():
    server = ThreadingHTTPServer(("127.0.0.1", 0), TFServingStatus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def probe(defaults):
    command = defaults.container("tfserving")["readinessProbe"]["exec"]["command"]
    assert command[0] == "/bin/bash"
    script = command[2]

    def run(port: int, *targets: str) -> subprocess.CompletedProcess:
        # The port is an argument in the chart ("8501"); here the fake server's.
        return subprocess.run(
            ["bash", "-c", script, "tfstack-ready", str(port), *targets],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    return run


def test_ready_when_every_target_is_available(probe, rest_port):
    result = probe(rest_port, "half_plus_two", "digits", "digits/1")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("digits/2", "a specific version still loading"),
        ("loading", "no version available yet"),
        ("unknown_model", "a model TF Serving does not know (404)"),
    ],
)
def test_not_ready(probe, rest_port, target, why):
    result = probe(rest_port, "half_plus_two", target)
    assert result.returncode == 1, why
    assert f"model {target} is not AVAILABLE" in result.stdout


def test_not_ready_when_the_server_is_not_listening(probe):
    with ThreadingHTTPServer(("127.0.0.1", 0), TFServingStatus) as server:
        closed_port = server.server_address[1]
    result = probe(closed_port, "half_plus_two")
    assert result.returncode == 1
    assert f"REST port {closed_port} is not open" in result.stdout


def test_script_has_no_tools_beyond_bash(defaults):
    """Only bash builtins: the tensorflow/serving image has no curl, wget or python."""
    script = defaults.container("tfserving")["readinessProbe"]["exec"]["command"][2]
    for tool in ("curl", "wget", "python", "nc ", "grep"):
        assert tool not in script


def test_probe_does_not_hang_on_a_server_that_keeps_the_connection_open(probe):
    """If the server ignores `Connection: close`, the probe still ends: at the AVAILABLE line, or
    after its read timeout — well inside the probe's timeoutSeconds."""
    import socket
    import time

    def serve(listener: socket.socket, body: bytes, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            stop.wait(10)  # never closes while the probe reads
            conn.close()

    for body, expected in ((status((1, "AVAILABLE")), 0), (status((1, "LOADING")), 1)):
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(15)
        stop = threading.Event()
        thread = threading.Thread(target=serve, args=(listener, body, stop), daemon=True)
        thread.start()
        try:
            started = time.monotonic()
            result = probe(listener.getsockname()[1], "m")
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            listener.close()
        assert result.returncode == expected, result.stdout
        assert elapsed < 4, f"probe took {elapsed:.1f}s"
