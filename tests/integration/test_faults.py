"""Fault tests: the real gateway (gunicorn) in front of 3 real model servers on loopback.

Each test is bounded in requests and time; load comes from tfstack/testing/loadgen.py. The model
servers are shared by the module (they take ~20 s to start on 2 cores); one killed by a test is
replaced when the next test asks for it (the kill test runs last, so usually never).
"""

from __future__ import annotations

import json
import random
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.gateway import start_gateway
from tests.fixtures.modelserver import ModelServerHandle, start_modelserver
from tests.unit.test_discovery_endpointslices import NAMESPACE, SERVICE, FakeApiServer
from tfstack.runtime.procs import port_open
from tfstack.testing.loadgen import Background, HttpRequest, HttpTarget, run

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/half_plus_two:predict"
REQUEST = HttpRequest("POST", PREDICT, b'{"instances": [1.0, 2.0, 5.0]}')


class Replicas:
    """Model servers serving half_plus_two only (quick to load)."""

    def __init__(self, tmp: Path, models_root: Path, *extra_flags: str) -> None:
        self.tmp, self.models_root, self.extra_flags = tmp, models_root, extra_flags
        self.alive: list[ModelServerHandle] = []

    def start(self, count: int) -> list[ModelServerHandle]:
        flags = ("--model_name=half_plus_two",
                 f"--model_base_path={self.models_root / 'half_plus_two'}", *self.extra_flags)
        started = [start_modelserver(self.tmp, None, *flags, wait=False) for _ in range(count)]
        for handle in started:  # in parallel: each loads TensorFlow for seconds
            handle.process.wait_until(
                lambda h=handle: port_open("127.0.0.1", h.grpc_port), 120, "serving gRPC")
        self.alive += started
        return started

    def take(self, count: int) -> list[ModelServerHandle]:
        """`count` running servers, starting replacements for any a test has killed."""
        if len(self.alive) < count:
            self.start(count - len(self.alive))
        return self.alive[:count]

    def discard(self, dead: ModelServerHandle) -> None:
        dead.stop()
        self.alive.remove(dead)

    def stop_all(self) -> None:
        for handle in self.alive:  # all at once: each takes a moment to shut down
            handle.process.signal(signal.SIGTERM)
        for handle in self.alive:
            handle.stop()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, models_root):
    pool = Replicas(tmp_path_factory.mktemp("replicas"), models_root)
    try:
        pool.start(3)
        yield pool
    finally:
        pool.stop_all()


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback)
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def metrics(gateway_url: str) -> dict[tuple[str, tuple], float]:
    for attempt in range(5):
        try:
            with urllib.request.urlopen(gateway_url + "/metrics", timeout=5) as resp:  # noqa: S310
                text = resp.read().decode()
            break
        except urllib.error.HTTPError:
            # prometheus_client's multiprocess reader can catch a worker's metric file at the
            # instant it is created (still empty) and fail that one scrape; the next one is fine.
            if attempt == 4:
                raise
            time.sleep(0.05)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric_sum(values: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lbls), v in values.items()
               if n == name and all((k, w) in lbls for k, w in labels.items()))


def wait_for(condition, timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll `condition()` until true; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"not {what} after {timeout}s")


def endpoint_rows(gateway_url: str, address: str) -> dict:
    """/debug/endpoints row of `address` in whichever worker answers (empty if unknown)."""
    _, body = get_json(gateway_url + "/debug/endpoints")
    return next((row for row in body["endpoints"] if row["address"] == address), {})


def served_requests(gateway_url: str, minimum: int) -> bool:
    return metric_sum(metrics(gateway_url), "tfstack_gateway_requests_total") >= minimum


def test_sigstop_replica_is_ejected_and_taken_back_after_sigcont(tmp_path, replicas):
    servers = replicas.take(3)
    victim = servers[1]
    gw = start_gateway(tmp_path, [s.grpc_target for s in servers], workers=1, threads=16,
                       deadline_ms=1000, access_log="false")
    try:
        load = Background(HttpTarget(gw.url, REQUEST, timeout_s=10),
                          requests=8000, duration_s=12, concurrency=8)
        wait_for(lambda: served_requests(gw.url, 200), 10, "serving")
        stopped_at = load.offset()
        victim.process.signal(signal.SIGSTOP)
        try:
            wait_for(lambda: endpoint_rows(gw.url, victim.grpc_target)
                     .get("health", {}).get("state") == "ejected", 5, "ejected")
            ejected_at = load.offset()
            time.sleep(1.5)  # the hang lasts a while: the others carry the load meanwhile
        finally:
            victim.process.signal(signal.SIGCONT)
        continued_at = load.offset()
        requests_before = endpoint_rows(gw.url, victim.grpc_target)["requests"]
        wait_for(lambda: endpoint_rows(gw.url, victim.grpc_target)["health"]["state"] == "ready"
                 and endpoint_rows(gw.url, victim.grpc_target)["requests"] > requests_before,
                 12, "back in rotation and taking requests")
        load.stop_event.set()
        result = load.join()
    finally:
        gw.stop()
    statuses = result.statuses
    assert set(statuses) <= {"200", "504"}, statuses
    timeouts = [r for r in result.records if r[2] == "504"]
    assert 1 <= len(timeouts) <= 16, "only calls sent to the hung replica before its ejection"
    assert all(0.9 <= latency <= 2.5 for _, latency, _ in timeouts), "they end at the deadline"
    assert all(start < ejected_at for start, _, _ in timeouts)
    during_hang = [r for r in result.records if ejected_at + 1.0 < r[0] < continued_at]
    assert during_hang and all(r[2] == "200" for r in during_hang)
    assert stopped_at < ejected_at < stopped_at + 3


def test_replica_added_mid_run_gets_traffic_within_2s(tmp_path, replicas):
    """EndpointSlice discovery against a real list/watch HTTP server: a slice turns ready, the
    replica serves within 2 s; a slice goes away, its replica's in-flight calls still finish."""
    first, second, third = replicas.take(3)
    api = FakeApiServer()
    api.thread.start()

    def slice_of(handle: ModelServerHandle) -> dict:
        return {"endpoints": [("127.0.0.1", True)],
                "ports": [{"name": "grpc", "port": handle.grpc_port, "protocol": "TCP"}]}

    api.put("tfs-a", **slice_of(first))
    api.put("tfs-b", **slice_of(second))
    gw = start_gateway(tmp_path, ["127.0.0.1:1"], workers=2, threads=16, access_log="false",
                       discovery="endpointslices", discovery_service=SERVICE,
                       discovery_namespace=NAMESPACE, discovery_api_url=api.url)
    try:
        for _ in range(6):  # each answer comes from one of the workers: both have listed slices
            wait_for(lambda: get_json(gw.url + "/readyz")[0] == 200, 15, "ready")
        load = Background(HttpTarget(gw.url, REQUEST, timeout_s=10),
                          requests=6000, duration_s=10, concurrency=8)
        wait_for(lambda: served_requests(gw.url, 200), 10, "serving")
        turned_ready_at = time.time()
        api.put("tfs-c", **slice_of(third))
        picked: list[float] = []

        def first_pick() -> bool:
            row = endpoint_rows(gw.url, third.grpc_target)
            if row.get("first_request_at"):
                picked.append(row["first_request_at"])
            return bool(picked)

        wait_for(first_pick, 15, "sending to the new replica", interval=0.02)
        # The answering worker's own record of its first pick, not when this poll (a request
        # through the loaded gateway, on 2 shared cores) happened to see it.
        took = picked[0] - turned_ready_at
        api.delete("tfs-a")
        wait_for(lambda: not endpoint_rows(gw.url, first.grpc_target), 5, "dropping a replica")
        time.sleep(0.5)  # keep the load on across the change
        load.stop_event.set()
        result = load.join()
    finally:
        gw.stop()
        api.close()
    assert took < 2.0, f"new replica got its first request {took:.2f}s after turning ready"
    assert set(result.statuses) == {"200"}, result.statuses


def test_overload_sheds_with_429_and_keeps_admitted_latency(tmp_path, replicas):
    """4x the clients the gateway admits: the excess gets 429 at once, the admitted keep their
    latency. Clients pause 20 ms after a 429 (as clients honouring Retry-After would, shortened):
    on these 2 shared cores a tight 429 loop would only measure how fast 429s can be made.

    The two latency bounds compare against an unloaded run just before, on 2 cores shared by 3
    model servers, the gateway and the load generator, where another process's burst can spoil
    one 6 s window: a pair of runs that misses them is measured again, up to 3 pairs, and the
    test fails when none meets them. Every other check holds for every pair."""
    servers = replicas.take(3)
    # One worker: its bound is the gateway's (with several, keep-alive connections can skew
    # onto one worker and be refused before the others are full; see docs/resilience.md). The
    # bound is the default kind, per endpoint in rotation: 1 x 3 replicas.
    admitted = 3
    gw = start_gateway(tmp_path, [s.grpc_target for s in servers], workers=1,
                       max_inflight_per_endpoint=1, access_log="false")
    summaries, refused = [], 0
    try:
        target = HttpTarget(gw.url, REQUEST, timeout_s=10)
        run(target, requests=200, duration_s=10, concurrency=admitted)  # warm up
        pids_before, rss_before = worker_facts(gw.url)
        for _attempt in range(3):
            unloaded = run(target, requests=600, duration_s=10, concurrency=admitted)
            overload = run(target, requests=20_000, duration_s=6, concurrency=4 * admitted,
                           pause_after={"429": 0.02})
            summary = {"unloaded": unloaded.summary(), "overload": overload.summary()}
            summaries.append(summary)
            print(json.dumps(summary))
            assert set(unloaded.statuses) == {"200"}, summary
            statuses = overload.statuses
            assert set(statuses) <= {"200", "429"}, summary
            assert statuses["429"] >= 0.2 * len(overload.records), summary
            refused += statuses["429"]
            shed = sorted(lat for _, lat, status in overload.records if status == "429")
            quick_429s = shed[len(shed) // 2] < 0.02
            # 3x the unloaded p99, plus 20 ms for the scheduling noise of the shared cores.
            kept_latency = (overload.percentile(99, ok_only=True)
                            <= 3 * unloaded.percentile(99) + 0.02)
            if quick_429s and kept_latency:
                break
        pids_after, rss_after = worker_facts(gw.url)
        rejected = metric_sum(metrics(gw.url), "tfstack_gateway_admission_rejections_total",
                              reason="worker_inflight")
    finally:
        gw.stop()
    assert quick_429s, f"429s are quick (median under 20 ms) in no run: {summaries}"
    assert kept_latency, f"the admitted keep their p99 in no run: {summaries}"
    assert rejected >= refused
    assert pids_after == pids_before, "no worker died"
    assert max(rss_after) < max(rss_before) + 64 * 2**20, "memory stays bounded"


def worker_facts(gateway_url: str) -> tuple[set[int], list[int]]:
    """pids and RSS of the workers that answered 20 /debug/vars requests (each answer comes
    from one of them; not necessarily from all)."""
    facts: dict[int, int] = {}
    for _ in range(20):
        _, body = get_json(gateway_url + "/debug/vars")
        facts[body["pid"]] = body["rss_bytes"]
    return set(facts), list(facts.values())


def test_sigterm_under_load_drains_with_zero_failures(tmp_path, replicas):
    servers = replicas.take(3)
    gw = start_gateway(tmp_path, [s.grpc_target for s in servers], workers=2, threads=16,
                       drain_delay_s=3, access_log="false")
    try:
        load = Background(HttpTarget(gw.url, REQUEST, timeout_s=10),
                          requests=8000, duration_s=15, concurrency=8)
        wait_for(lambda: served_requests(gw.url, 200), 10, "serving")
        gw.process.proc.send_signal(signal.SIGTERM)  # the master only, as Kubernetes does
        sigterm_at = load.offset()
        took = wait_for(lambda: get_json(gw.url + "/readyz")[0] == 503, 3, "unready")
        # Kubernetes drops the pod from its endpoints: clients move on within the delay.
        time.sleep(1.0)
        load.stop_event.set()
        result = load.join()
        code = gw.process.proc.wait(timeout=30)
    finally:
        gw.stop()
    # At once, well inside the 3 s drain delay (the poll itself goes through the loaded gateway
    # on 2 shared cores, so the bound is half the delay, not a latency target).
    assert took < 1.5, f"readiness turned false {took:.2f}s after SIGTERM"
    assert set(result.statuses) == {"200"}, result.statuses
    assert len([r for r in result.records if r[0] > sigterm_at]) > 50, "served while draining"
    assert code == 0


def hostile_request(index: int, rng: random.Random) -> HttpRequest:
    """Request `index` of the hostile mix: every 10th is valid, the rest are malformed or nasty."""
    if index % 10 == 0:
        return REQUEST
    kind = HOSTILE_KINDS[index % len(HOSTILE_KINDS)]
    return kind(rng)


def _fuzzed_json(rng: random.Random) -> HttpRequest:
    body = bytearray(b'{"instances": [1.0, 2.0, 5.0], "signature_name": "serving_default"}')
    for _ in range(rng.randint(1, 6)):
        body[rng.randrange(len(body))] = rng.randrange(256)
    return HttpRequest("POST", PREDICT, bytes(body))


def _random_bytes(rng: random.Random) -> HttpRequest:
    return HttpRequest("POST", PREDICT, rng.randbytes(rng.randint(0, 2048)))


# Bodies that may exceed the gateway's limit (1 MiB here) are sent on a connection the client
# closes afterwards; the gateway reads and discards what it refuses, so the client reads its 413.
CLOSE = (("Content-Type", "application/json"), ("Connection", "close"))


def _deep_nesting(rng: random.Random) -> HttpRequest:
    depth = rng.choice([1_000, 50_000, 200_000])
    opener = rng.choice([b"[", b'{"a":'])
    closer = b"]" if opener == b"[" else b"}"
    body = b'{"instances": ' + opener * depth + closer * depth + b"}"
    return HttpRequest("POST", PREDICT, body, CLOSE)


def _wrong_dtypes(rng: random.Random) -> HttpRequest:
    bodies = [
        '{"instances": ["a", "b"]}', '{"instances": [true, false]}', '{"instances": [[1, 2], [3]]}',
        '{"instances": [1e400]}', '{"instances": [NaN, Infinity, -Infinity]}',
        '{"instances": [{"b64": "AAAA"}]}', '{"inputs": {"x": {"y": 1}}}', '{"instances": []}',
        '{"instances": null}', '{"inputs": [1, 2]}', '{"instances": [1], "inputs": [1]}',
        '[]', '"instances"', '{"instances": [18446744073709551616]}', '{}',
        '{"instances": [' + ",".join(["1.5"] * 20000) + "]}",
    ]
    return HttpRequest("POST", PREDICT, rng.choice(bodies).encode())


def _bad_base64(rng: random.Random) -> HttpRequest:
    value = rng.choice(["!!!", "A", "====", "\u2603", "A" * 10001, "%%%%"])
    body = {"instances": [{"b64": value}], "signature_name": rng.choice(["", "serving_default"])}
    return HttpRequest("POST", PREDICT, json.dumps(body).encode())


def _unicode_names(rng: random.Random) -> HttpRequest:
    name = rng.choice(["\u2603", "\u00f1", "\U0001f600", "\u202e", "a\u0000b", "x" * 300])
    if rng.random() < 0.5:
        body = {"inputs": {name: [1.0]}, "signature_name": name}
        return HttpRequest("POST", PREDICT, json.dumps(body).encode())
    quoted = urllib.parse.quote(name, safe="")
    return HttpRequest("POST", f"/v1/models/{quoted}:predict", REQUEST.body)


def _path_tricks(rng: random.Random) -> HttpRequest:
    paths = [
        "/v1/models/../../etc/passwd:predict", "/v1/models/%2e%2e/%2e%2e:predict",
        "/v1//models//half_plus_two:predict", "/v1/models/half_plus_two/versions/-1:predict",
        "/v1/models/half_plus_two/versions/99999999999999999999:predict",
        "/v1/models/half_plus_two/labels/:predict", "/v1/models/" + "a" * 5000 + ":predict",
        "/v1/models/half_plus_two%00:predict", "/v1/models/half_plus_two:predict/../metadata",
        "/v1/models/half_plus_two:PREDICT", "/v1/models/half_plus_two:explode",
        "/v1/models/:predict",
        "/v1/models/half_plus_two/versions/1/labels/x:predict", "/v1/models/half_plus_two?x=1",
        "/%76%31/models/half_plus_two:predict", "/v1/models/half_plus_two/metadata/../../x",
    ]
    method = rng.choice(["POST", "GET", "PUT", "DELETE", "PATCH", "HEAD"])
    return HttpRequest(method, rng.choice(paths), REQUEST.body)


def _bad_headers(rng: random.Random) -> HttpRequest:
    headers = rng.choice([
        (("X-Request-Timeout-Ms", "-5"),), (("X-Request-Timeout-Ms", "soon"),),
        (("X-Request-Timeout-Ms", "0"),), (("X-Request-Timeout-Ms", "9" * 40),),
        (("Content-Type", "text/plain"),), (("X-Request-ID", "a" * 5000),),
        (("X-Request-ID", "\u2603".encode().decode("latin-1")),),
        (("Content-Type", "application/json; charset=utf-16"),),
    ])
    return HttpRequest("POST", PREDICT, REQUEST.body, headers)


def _giant_body(rng: random.Random) -> HttpRequest:
    body = b"[" + b"1.0," * (300_000 + rng.randrange(1000)) + b"1]"
    return HttpRequest("POST", PREDICT, body, CLOSE)


HOSTILE_KINDS = (
    _fuzzed_json, _random_bytes, _deep_nesting, _wrong_dtypes, _bad_base64, _unicode_names,
    _path_tricks, _bad_headers, _fuzzed_json, _wrong_dtypes, _path_tricks, _unicode_names,
    _random_bytes, _bad_headers, _fuzzed_json, _wrong_dtypes, _path_tricks, _bad_base64,
    _fuzzed_json, _giant_body,
)


def test_hostile_requests_never_get_a_5xx_or_crash_a_worker(tmp_path, replicas):
    gw = start_gateway(tmp_path, [replicas.take(1)[0].grpc_target], workers=2, threads=16,
                       max_body_bytes=2**20, access_log="false")
    rng = random.Random(4)  # noqa: S311 (reproducible test data)
    requests_ = [hostile_request(i, rng) for i in range(10_000)]
    try:
        by_index: dict[int, str] = {}
        target = HttpTarget(gw.url, lambda i: requests_[i], timeout_s=30,
                            on_response=lambda i, status, _body: by_index.__setitem__(i, status))
        result = run(target, requests=len(requests_), duration_s=240, concurrency=8)
        log = gw.process.log_path.read_text(errors="replace")
    finally:
        gw.stop()
    statuses = result.statuses
    assert len(result.records) == 10_000, "every request was sent within the time cap"
    assert not [s for s in statuses if s.startswith("5")], statuses
    # Not even a giant body sees its connection cut: the gateway drains it and answers 413.
    cut_off = {i: status for i, status in by_index.items() if status.startswith("error:")}
    assert not cut_off, cut_off
    assert statuses["413"] > 0
    valid = {by_index[i] for i in range(0, 10_000, 10)}
    assert valid == {"200"}, "the valid requests in the mix were all served"
    # gunicorn logs every worker it boots: exactly the 2 started means none died or was replaced
    # (which pids answer a handful of /debug/vars requests is a sample, not evidence).
    assert log.count("Booting worker with pid") == 2, "no worker was restarted"
    assert "WORKER TIMEOUT" not in log and "Traceback" not in log


def test_kill_9_one_of_three_replicas_under_load(tmp_path, replicas):
    servers = replicas.take(3)
    gw = start_gateway(tmp_path, [s.grpc_target for s in servers], workers=2, threads=16,
                       access_log="false")
    victim = servers[0]
    try:
        load = Background(HttpTarget(gw.url, REQUEST, timeout_s=10),
                          requests=5000, duration_s=6, concurrency=8)
        wait_for(lambda: served_requests(gw.url, 300), 10, "serving")
        killed_at = load.offset()
        victim.process.signal(signal.SIGKILL)
        result = load.join()
        after = metrics(gw.url)
    finally:
        gw.stop()
        replicas.discard(victim)
    failed = {status: n for status, n in result.statuses.items() if status != "200"}
    # Calls in flight on the victim and calls it refused were retried on the others.
    assert failed == {}, f"client-visible failures: {failed}"
    assert metric_sum(after, "tfstack_gateway_retries_total", outcome="retry") >= 1
    assert metric_sum(after, "tfstack_gateway_endpoints", state="ejected") >= 1
    served_after_kill = [r for r in result.records if r[0] > killed_at + 0.5]
    assert len(served_after_kill) >= 200, "the two survivors carried the load"
