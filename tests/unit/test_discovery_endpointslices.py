"""EndpointSlice discovery against a real HTTP server speaking Kubernetes' list/watch wire format.

The server below implements just what a client of
`/apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices` sees: a JSON list carrying
`metadata.resourceVersion`, label-selector filtering, and `?watch=true` streaming newline-delimited
`{"type": ..., "object": ...}` events over chunked HTTP/1.1, answering an expired resourceVersion
with an `ERROR` event holding a 410 Status (as the API server does after compaction).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import kubernetes
import pytest

from tfstack.gateway.discovery import EndpointSliceDiscovery

NAMESPACE = "serving"
SERVICE = "tfs"
PATH = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"


def endpoint_slice(name, service, endpoints, version, ports=None):
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "resourceVersion": str(version),
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [addr], "conditions": {"ready": ready, "serving": ready}}
            for addr, ready in endpoints
        ],
        "ports": ports
        or [
            {"name": "http", "port": 8501, "protocol": "TCP"},
            {"name": "grpc", "port": 8500, "protocol": "TCP"},
        ],
    }


class FakeApiServer:
    """EndpointSlices of one namespace, with a change history for watches."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.version = 100
        self.slices: dict[str, dict] = {}
        self.history: list[tuple[int, str, dict]] = []
        self.compacted_before = 0  # watches from an older resourceVersion get 410
        self.watch_generation = 0  # bumping it ends every open watch (like a server-side timeout)
        self.closed = False
        self.lists = 0
        self.watches: list[str] = []  # resourceVersion each watch started from
        self.fail_next_lists = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path != PATH:
                    return self._json(404, {"kind": "Status", "code": 404})
                if query.get("watch", "").lower() in ("true", "1"):
                    return server._serve_watch(self, query)
                return server._serve_list(self, query)

            def _json(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- test controls -------------------------------------------------------------------
    def put(self, name, endpoints, service=SERVICE, ports=None):
        with self.cond:
            self.version += 1
            kind = "MODIFIED" if name in self.slices else "ADDED"
            obj = endpoint_slice(name, service, endpoints, self.version, ports)
            self.slices[name] = obj
            self.history.append((self.version, kind, obj))
            self.cond.notify_all()

    def delete(self, name):
        with self.cond:
            self.version += 1
            obj = dict(self.slices.pop(name))
            obj["metadata"] = dict(obj["metadata"], resourceVersion=str(self.version))
            self.history.append((self.version, "DELETED", obj))
            self.cond.notify_all()

    def expire_watches(self):
        """Compact history and end open watches: the client must re-list."""
        with self.cond:
            self.compacted_before = self.version + 1
            self.watch_generation += 1
            self.cond.notify_all()

    def end_watches(self):
        with self.cond:
            self.watch_generation += 1
            self.cond.notify_all()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- wire format ---------------------------------------------------------------------
    @staticmethod
    def _selected(obj, query):
        selector = query.get("labelSelector", "")
        labels = obj["metadata"]["labels"]
        for term in filter(None, selector.split(",")):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
        return True

    def _serve_list(self, handler, query):
        with self.cond:
            self.lists += 1
            if self.fail_next_lists:
                self.fail_next_lists -= 1
                return handler._json(500, {"kind": "Status", "code": 500, "message": "boom"})
            items = [s for s in self.slices.values() if self._selected(s, query)]
            body = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSliceList",
                "metadata": {"resourceVersion": str(self.version)},
                "items": items,
            }
        handler._json(200, body)

    def _serve_watch(self, handler, query):
        since = int(query.get("resourceVersion") or 0)
        timeout = float(query.get("timeoutSeconds", 30))
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def send(event):
            data = json.dumps(event).encode() + b"\n"
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            handler.wfile.flush()

        with self.cond:
            self.watches.append(str(since))
            generation = self.watch_generation
            if since < self.compacted_before:
                gone = {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": f"too old resource version: {since} ({self.compacted_before})",
                    "reason": "Expired", "code": 410,
                }
                send({"type": "ERROR", "object": gone})
            else:
                end = time.monotonic() + timeout
                while not self.closed and generation == self.watch_generation:
                    for version, kind, obj in self.history:
                        if version > since:
                            if self._selected(obj, query):
                                send({"type": kind, "object": obj})
                            since = version
                    if time.monotonic() >= end:
                        break
                    self.cond.wait(0.05)
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


class Recorder:
    """A discovery listener that remembers when each set arrived."""

    def __init__(self):
        self.cond = threading.Condition()
        self.current = frozenset()
        self.updates = 0

    def __call__(self, endpoints):
        with self.cond:
            self.current = endpoints
            self.updates += 1
            self.cond.notify_all()

    def wait_for(self, expected, timeout):
        """Seconds until the published set equals `expected`; fails after `timeout`."""
        start = time.monotonic()
        with self.cond:
            ok = self.cond.wait_for(lambda: self.current == frozenset(expected), timeout)
        assert ok, f"endpoints {sorted(self.current)} never became {sorted(expected)}"
        return time.monotonic() - start


@pytest.fixture
def api_server():
    server = FakeApiServer()
    server.thread.start()
    yield server
    server.close()


@pytest.fixture
def discovery(api_server):
    configuration = kubernetes.client.Configuration(host=api_server.url)
    api_client = kubernetes.client.ApiClient(configuration)
    found = EndpointSliceDiscovery(
        SERVICE, NAMESPACE, "grpc", api_client=api_client, backoff_base_s=0.05, backoff_max_s=0.2
    )
    recorder = Recorder()
    found.subscribe(recorder)
    found.recorder = recorder
    yield found
    found.stop()
    api_client.close()


def test_lists_ready_endpoints_of_the_service_on_the_named_port(api_server, discovery):
    api_server.put("tfs-a", [("10.0.0.1", True), ("10.0.0.2", False)])
    api_server.put("other-x", [("10.9.9.9", True)], service="other")
    discovery.start()
    assert discovery.wait_known(5)
    discovery.recorder.wait_for({"10.0.0.1:8500"}, timeout=5)


def test_watch_reports_new_ready_endpoint_within_a_second_and_drops_unready(api_server, discovery):
    api_server.put("tfs-a", [("10.0.0.1", True)])
    discovery.start()
    discovery.recorder.wait_for({"10.0.0.1:8500"}, timeout=5)

    api_server.put("tfs-a", [("10.0.0.1", True), ("10.0.0.2", True)])
    assert discovery.recorder.wait_for({"10.0.0.1:8500", "10.0.0.2:8500"}, timeout=1) < 1

    api_server.put("tfs-a", [("10.0.0.1", False), ("10.0.0.2", True)])  # e.g. terminating
    assert discovery.recorder.wait_for({"10.0.0.2:8500"}, timeout=1) < 1

    api_server.put("tfs-b", [("10.0.1.1", True)])  # a second slice of the same Service
    discovery.recorder.wait_for({"10.0.0.2:8500", "10.0.1.1:8500"}, timeout=1)
    api_server.delete("tfs-a")
    discovery.recorder.wait_for({"10.0.1.1:8500"}, timeout=1)
    assert api_server.lists == 1, "changes arrived through the watch, not by polling lists"
    assert api_server.watches == ["101"], "one watch, from the list's resourceVersion"


def test_rewatches_from_last_resource_version_when_a_watch_ends(api_server, discovery):
    api_server.put("tfs-a", [("10.0.0.1", True)])
    discovery.start()
    discovery.recorder.wait_for({"10.0.0.1:8500"}, timeout=5)
    api_server.put("tfs-a", [("10.0.0.1", True), ("10.0.0.3", True)])
    discovery.recorder.wait_for({"10.0.0.1:8500", "10.0.0.3:8500"}, timeout=1)

    api_server.end_watches()  # server-side watch timeout
    api_server.put("tfs-a", [("10.0.0.3", True)])
    discovery.recorder.wait_for({"10.0.0.3:8500"}, timeout=2)
    assert api_server.lists == 1
    assert api_server.watches[-1] == str(api_server.version - 1)


def test_relists_after_410_gone(api_server, discovery):
    api_server.put("tfs-a", [("10.0.0.1", True)])
    discovery.start()
    discovery.recorder.wait_for({"10.0.0.1:8500"}, timeout=5)

    api_server.expire_watches()  # the client's resourceVersion is now too old
    with api_server.cond:  # changes the client can only learn from a fresh list
        api_server.version += 5
        api_server.slices["tfs-a"] = endpoint_slice(
            "tfs-a", SERVICE, [("10.0.0.4", True)], api_server.version
        )
    discovery.recorder.wait_for({"10.0.0.4:8500"}, timeout=2)
    assert api_server.lists == 2
    assert discovery.relists == 2

    api_server.put("tfs-a", [("10.0.0.4", True), ("10.0.0.5", True)])  # and it watches again
    discovery.recorder.wait_for({"10.0.0.4:8500", "10.0.0.5:8500"}, timeout=1)


def test_backs_off_and_retries_when_the_api_fails(api_server, discovery):
    api_server.fail_next_lists = 2
    api_server.put("tfs-a", [("10.0.0.1", True)])
    discovery.start()
    discovery.recorder.wait_for({"10.0.0.1:8500"}, timeout=5)
    assert api_server.lists == 3


def test_ignores_slices_without_the_named_port(api_server, discovery):
    api_server.put("tfs-a", [("10.0.0.1", True)], ports=[{"name": "http", "port": 8501}])
    api_server.put("tfs-b", [("10.0.0.2", True)])
    discovery.start()
    discovery.recorder.wait_for({"10.0.0.2:8500"}, timeout=5)


def test_stop_ends_the_watch_promptly(api_server, discovery):
    api_server.put("tfs-a", [("10.0.0.1", True)])
    discovery.start()
    discovery.recorder.wait_for({"10.0.0.1:8500"}, timeout=5)
    start = time.monotonic()
    discovery.stop()
    assert time.monotonic() - start < 2
    assert not discovery._thread.is_alive()


def test_api_url_points_the_client_at_a_kube_api_proxy(api_server):
    """Outside a pod (e.g. behind `kubectl proxy`) the API base URL is given instead."""
    api_server.put("tfs-a", [("10.0.0.1", True)])
    found = EndpointSliceDiscovery(SERVICE, NAMESPACE, "grpc", api_url=api_server.url)
    recorder = Recorder()
    found.subscribe(recorder)
    found.start()
    try:
        recorder.wait_for({"10.0.0.1:8500"}, timeout=5)
    finally:
        found.stop()
        found._api_client.close()


def test_outside_a_pod_without_an_api_url_it_says_so_and_finds_nothing(caplog):
    found = EndpointSliceDiscovery(SERVICE, NAMESPACE, "grpc")  # no in-cluster credentials here
    found.start()
    try:
        assert found.wait_known(10)
        assert found.endpoints() == frozenset()
    finally:
        found.stop()
    assert "EndpointSlice discovery cannot start" in caplog.text
