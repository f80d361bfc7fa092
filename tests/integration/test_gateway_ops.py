"""The gateway under real gunicorn against backends that misbehave on cue.

The backend here is FakeBackend (tests/fixtures/gateway.py): a tiny in-process gRPC server that
answers GetModelMetadata at once and Predict after a set delay. It stands in for "a backend that
hangs" because it hangs exactly where we want (after the metadata call, in Predict) and only for
these tests; stopping the shared session model server with SIGSTOP would stall every other test
that uses it and could not hang one RPC while answering another.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import threading
import time

import pytest
import requests

import tfstack
from tests.fixtures.gateway import FakeBackend, HungBackend, start_gateway
from tfstack.runtime.procs import free_port

PREDICT = "/v1/models/slow:predict"
BODY = '{"instances": [1.0, 2.0]}'


@pytest.fixture(scope="module")
def backend():
    fake = FakeBackend(delay_s=0.0)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, backend):
    handle = start_gateway(
        tmp_path_factory.mktemp("gw-ops"), [backend.address], max_body_bytes=20_000
    )
    yield handle
    handle.stop()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_backend_past_the_deadline_is_a_504(gw, backend):
    backend.delay_s = 5.0
    try:
        started = time.monotonic()
        resp = requests.post(
            gw.url + PREDICT, data=BODY, headers={"X-Request-Timeout-Ms": "300"}, timeout=10
        )
        elapsed = time.monotonic() - started
    finally:
        backend.delay_s = 0.0
    assert resp.status_code == 504
    assert resp.json() == {"error": "Deadline Exceeded: no answer from the backend in 300 ms"}
    assert 0.25 < elapsed < 2.0


def test_default_deadline_applies_without_the_header(tmp_path, backend):
    handle = start_gateway(tmp_path, [backend.address], deadline_ms=400)
    backend.delay_s = 5.0
    try:
        resp = requests.post(handle.url + PREDICT, data=BODY, timeout=10)
    finally:
        backend.delay_s = 0.0
        handle.stop()
    assert resp.status_code == 504
    assert "400 ms" in resp.json()["error"]


def _health_state(url: str, address: str) -> str:
    rows = requests.get(url + "/debug/endpoints", timeout=5).json()["endpoints"]
    return next(row for row in rows if row["address"] == address)["health"]["state"]


def test_a_clients_short_deadline_does_not_eject_a_slow_but_healthy_replica(tmp_path):
    """The client asks for 50 ms of a model that takes 300 ms: each call is a 504, but that is the
    client's budget running out, not the replica failing. Without the header the same calls run
    out the gateway's own deadline, which does count: the replica is ejected after 3."""
    slow = FakeBackend(delay_s=0.3)
    handle = start_gateway(tmp_path, [slow.address], workers=1, deadline_ms=150)
    try:
        short = [requests.post(handle.url + PREDICT, data=BODY, timeout=10,
                               headers={"X-Request-Timeout-Ms": "50"}).status_code
                 for _ in range(6)]
        after_short = _health_state(handle.url, slow.address)
        own = [requests.post(handle.url + PREDICT, data=BODY, timeout=10).status_code
               for _ in range(3)]
        after_own = _health_state(handle.url, slow.address)
    finally:
        handle.stop()
        slow.stop()
    assert short == [504] * 6 and own == [504] * 3
    assert after_short == "ready", "the client's own short deadlines ejected the replica"
    assert after_own == "ejected", "the gateway's deadline, missed 3 times in a row, ejects"


def test_body_over_the_limit_is_a_413(gw):
    big = '{"instances": [' + ",".join(["1.0"] * 10_000) + "]}"
    resp = requests.post(gw.url + PREDICT, data=big, timeout=10)
    assert resp.status_code == 413
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"error": "Request body larger than 20000 bytes (TFSTACK_MAX_BODY_BYTES)"}


def test_a_gzip_body_that_inflates_past_the_limit_is_a_413(gw):
    """The limit holds for what a compressed body inflates to: 50 MB of zeros arrive as ~50 kB
    and are refused after inflating no more than the limit."""
    bomb = gzip.compress(b"0" * 50_000_000)
    assert len(bomb) < 20_000 * 5
    resp = requests.post(gw.url + PREDICT, data=bomb, headers={"Content-Encoding": "gzip"},
                         timeout=10)
    assert resp.status_code == 413
    assert resp.json() == {"error": "Request body larger than 20000 bytes (TFSTACK_MAX_BODY_BYTES)"}
    small = requests.post(gw.url + PREDICT, data=gzip.compress(BODY.encode()),
                          headers={"Content-Encoding": "gzip"}, timeout=10)
    assert small.status_code == 200, small.text


def test_a_413_on_a_keep_alive_connection_does_not_break_the_next_request(gw):
    """gunicorn drains the unread body of a rejected request, so a pooling client can reuse the
    connection for its next request."""
    big = '{"instances": [' + ",".join(["1.0"] * 10_000) + "]}"
    with requests.Session() as session:
        resp = session.post(gw.url + PREDICT, data=big, timeout=10)
        assert resp.status_code == 413
        after = session.get(gw.url + "/healthz", timeout=10)
    assert after.status_code == 200


def raw_exchange(sock: socket.socket, head: bytes, body: bytes) -> bytes:
    """Send a whole request as most clients do (all of it, then read), return the response."""
    sock.sendall(head + body)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"<closed>"
    headers, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", headers).group(1))
    while len(rest) < length:
        rest += sock.recv(65536) or b"<closed>"
    return headers + b"\r\n\r\n" + rest


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_a_body_far_over_the_limit_gets_a_readable_413_and_keeps_the_connection(
    tmp_path, backend, worker_class
):
    """32 MiB against a 20 kB limit, far more than the socket buffers hold: the gateway reads
    and discards the body before answering, so the client's send completes, it reads the 413,
    and the keep-alive connection serves the next request."""
    gw = start_gateway(tmp_path, [backend.address], max_body_bytes=20_000,
                       worker_class=worker_class)
    big = b"[" + b"1.0," * (8 * 2**20) + b"1]"
    head = (f"POST {PREDICT} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(big)}\r\n\r\n").encode()
    small = BODY.encode()
    small_head = head.replace(str(len(big)).encode(), str(len(small)).encode())
    try:
        port = int(gw.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            refused = raw_exchange(sock, head, big)
            served = raw_exchange(sock, small_head, small)
    finally:
        gw.stop()
    assert refused.startswith(b"HTTP/1.1 413 "), refused[:200]
    assert refused.endswith(b'{\n    "error": "Request body larger than 20000 bytes '
                            b'(TFSTACK_MAX_BODY_BYTES)"\n}')
    assert served.startswith(b"HTTP/1.1 200 "), served[:200]
    assert json.loads(served.partition(b"\r\n\r\n")[2]) == {"predictions": [2.5, 3.0]}


def test_no_backend_is_a_503_and_not_ready(tmp_path):
    handle = start_gateway(tmp_path, [f"127.0.0.1:{free_port()}"])
    try:
        resp = requests.post(handle.url + PREDICT, data=BODY, timeout=10)
        ready = requests.get(handle.url + "/readyz", timeout=10)
        alive = requests.get(handle.url + "/healthz", timeout=10)
    finally:
        handle.stop()
    assert resp.status_code == 503
    assert resp.json()["error"].startswith("No backend available: 127.0.0.1:")
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert alive.status_code == 200


def test_the_gateway_writes_nothing_under_home(tmp_path, backend, monkeypatch):
    """The chart runs it on a read-only root filesystem: gunicorn's control socket (default
    $HOME/.gunicorn/gunicorn.ctl) is off, and nothing else lands in the home directory."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    handle = start_gateway(tmp_path, [backend.address])
    try:
        assert requests.get(handle.url + "/healthz", timeout=10).status_code == 200
    finally:
        handle.stop()
    assert list(home.iterdir()) == []
    assert "control socket" not in handle.process.log_path.read_text().lower()


@pytest.fixture
def hung():
    replicas = [HungBackend(), HungBackend()]
    yield replicas
    for replica in replicas:
        replica.stop()


# /readyz used to ask every endpoint in turn, 1 s each: two hung replicas took it to 2 s, the
# chart's probe timeout, and the gateway itself went unready. It now answers from what the
# worker's health thread last found. 1 s is a generous bound for a local GET on a busy 2-core
# machine and still half of what the old handler needed.
READYZ_BOUND_S = 1.0
# The check's deadline, or, once gRPC gives up on a connection that never sent SETTINGS, that.
HUNG_REASONS = ("DEADLINE_EXCEEDED", "UNAVAILABLE")


def readyz_answers(tmp_path, backends: list[str], times: int = 5) -> list[dict]:
    """/readyz `times` times, 0.3 s apart (across several check rounds); each answered within
    READYZ_BOUND_S. Returns each body with its HTTP status added."""
    handle = start_gateway(tmp_path, backends)
    answers = []
    try:
        for _ in range(times):
            started = time.monotonic()
            resp = requests.get(handle.url + "/readyz", timeout=10)
            assert time.monotonic() - started < READYZ_BOUND_S
            answers.append({"status": resp.status_code, **resp.json()})
            time.sleep(0.3)
    finally:
        handle.stop()
    return answers


def test_readyz_answers_at_once_and_ready_while_two_replicas_hang(tmp_path, backend, hung):
    for answer in readyz_answers(tmp_path, [h.address for h in hung] + [backend.address]):
        assert answer["status"] == 200 and answer["ready"] is True
        rows = {row["address"]: row for row in answer["endpoints"]}
        assert rows[backend.address] == {"address": backend.address, "ready": True, "reason": ""}
        for replica in hung:
            assert rows[replica.address]["ready"] is False
            assert rows[replica.address]["reason"].startswith(HUNG_REASONS)


def test_readyz_answers_at_once_and_unready_when_every_replica_hangs(tmp_path, hung):
    for answer in readyz_answers(tmp_path, [h.address for h in hung]):
        assert answer["status"] == 503 and answer["ready"] is False
        reasons = [row["reason"] for row in answer["endpoints"]]
        assert len(reasons) == 2 and all(r.startswith(HUNG_REASONS) for r in reasons)


def test_every_log_line_is_json_with_discovery_and_ejection_included(tmp_path):
    """gunicorn's lines, the access log and the gateway's own loggers (discovery, ejection), INFO
    included, all as JSON objects one per line: what a log pipeline in the cluster can parse."""
    dead = f"127.0.0.1:{free_port()}"
    handle = start_gateway(tmp_path, [dead], workers=1)
    try:
        for _ in range(3):  # three failed calls in a row eject the endpoint (health.py)
            assert requests.post(handle.url + PREDICT, data=BODY, timeout=10).status_code == 503
        handle.process.wait_until(
            lambda: "ejected" in handle.process.log_path.read_text(), 10, "logging the ejection"
        )
    finally:
        handle.stop()
    lines = [json.loads(line) for line in handle.process.log_path.read_text().splitlines()]
    loggers = {(line.get("logger"), line.get("level")) for line in lines}
    assert ("gunicorn.error", "info") in loggers
    assert any(
        line.get("logger") == "tfstack.gateway.discovery" and line["level"] == "info"
        and line["message"] == f"endpoints: ['{dead}'] (added ['{dead}'], removed [])"
        for line in lines
    )
    assert any(
        line.get("logger") == "tfstack.gateway.health" and line["level"] == "warning"
        and line["message"].startswith(f"endpoint {dead} ejected for ")
        for line in lines
    )
    assert sum(1 for line in lines if line.get("status") == 503) == 3, "the access log"


def test_metrics_are_summed_over_workers(gw):
    before = requests.get(gw.url + "/metrics", timeout=10).text
    n = 40
    for _ in range(n):  # a new connection each time, so the kernel spreads them over workers
        assert requests.post(gw.url + PREDICT, data=BODY, timeout=10).status_code == 200
    after = requests.get(gw.url + "/metrics", timeout=10).text
    labels = {"model": "slow", "method": "predict", "code": "200"}
    counted = metric(after, "tfstack_gateway_requests_total", **labels) - metric(
        before, "tfstack_gateway_requests_total", **labels
    )
    assert counted == n
    pids = {
        name.rsplit("_", 1)[1] for name in os.listdir(gw.metrics_dir) if name.startswith("counter_")
    }
    assert len(pids) >= 2, f"only {pids} wrote counters; the test did not exercise 2 workers"
    assert metric(after, "tfstack_gateway_inflight_requests") == 0
    # One version however many workers report it (the highest of the live workers' 1s).
    assert metric(after, "tfstack_gateway_build_info", version=tfstack.__version__) == 1
    upstream = metric(
        after, "tfstack_gateway_upstream_duration_seconds_count", model="slow", rpc="Predict"
    )
    assert upstream >= n


def test_dead_worker_keeps_its_counts_and_drops_its_gauge(gw):
    before = requests.get(gw.url + "/metrics", timeout=10).text
    victim = requests.get(gw.url + "/debug/vars", timeout=10).json()["pid"]
    os.kill(victim, signal.SIGKILL)
    gw.process.wait_until(
        lambda: not os.path.exists(gw.metrics_dir / f"gauge_livesum_{victim}.db"),
        timeout=15,
        what="marking the killed worker dead",
    )
    after = requests.get(gw.url + "/metrics", timeout=10).text
    labels = {"model": "slow", "method": "predict", "code": "200"}
    assert metric(after, "tfstack_gateway_requests_total", **labels) == metric(
        before, "tfstack_gateway_requests_total", **labels
    )


def test_scrape_survives_a_worker_killed_while_creating_its_metrics_file(gw):
    """SIGKILL between creating a metrics file and sizing it leaves it empty for good; that file
    used to fail every later scrape (prometheus/client_python#1199). The kill is real; the moment
    cannot be timed, so the file it leaves is put in place by hand."""
    labels = {"model": "slow", "method": "predict", "code": "200"}
    assert requests.post(gw.url + PREDICT, data=BODY, timeout=10).status_code == 200
    before = metric(requests.get(gw.url + "/metrics", timeout=10).text,
                    "tfstack_gateway_requests_total", **labels)
    victim = requests.get(gw.url + "/debug/vars", timeout=10).json()["pid"]
    os.kill(victim, signal.SIGKILL)
    leftover = gw.metrics_dir / f"summary_{victim}.db"
    leftover.write_bytes(b"")
    try:
        for _ in range(3):
            resp = requests.get(gw.url + "/metrics", timeout=10)
            assert resp.status_code == 200
            assert metric(resp.text, "tfstack_gateway_requests_total", **labels) == before
    finally:
        leftover.unlink()


def test_sigterm_finishes_inflight_requests_and_exits_0(tmp_path, backend):
    handle = start_gateway(tmp_path, [backend.address])
    assert requests.post(handle.url + PREDICT, data=BODY, timeout=10).status_code == 200
    backend.delay_s = 1.0
    calls = backend.calls
    result: dict[str, object] = {}

    def slow_request() -> None:
        result["resp"] = requests.post(handle.url + PREDICT, data=BODY, timeout=10)

    thread = threading.Thread(target=slow_request)
    try:
        thread.start()
        handle.process.wait_until(lambda: backend.calls > calls, 10, "forwarding the request")
        os.kill(handle.process.pid, signal.SIGTERM)  # the master only, as Kubernetes does
        handle.process.proc.wait(timeout=30)
        thread.join(timeout=10)
    finally:
        backend.delay_s = 0.0
        handle.stop()
    assert handle.process.proc.returncode == 0
    assert result["resp"].status_code == 200


def test_grpc_lives_in_the_workers_only(gw):
    assert requests.post(gw.url + PREDICT, data=BODY, timeout=10).status_code == 200
    worker = requests.get(gw.url + "/debug/vars", timeout=10).json()["pid"]
    with open(f"/proc/{worker}/maps") as maps:
        assert "cygrpc" in maps.read()
    with open(f"/proc/{gw.process.pid}/maps") as maps:  # the gunicorn master
        assert "cygrpc" not in maps.read()
