"""The Flask app with a fake upstream (no network): request ids, deadlines, error rendering,
body limit, signature cache refresh, operational endpoints."""

from __future__ import annotations

import json

import grpc
import pytest

from tests.fixtures.gateway import fake_metadata_response
from tfstack.gateway import upstream as upstream_module
from tfstack.gateway.app import create_app
from tfstack.gateway.balancing import Endpoint
from tfstack.gateway.domain import Deadline, NoBackend, UpstreamError
from tfstack.gateway.settings import Settings
from tfstack.gateway.upstream import Upstream
from tfstack.protocol.proto import predict_pb2, types_pb2
from tfstack.protocol.routes import ModelRef


class FakeUpstream(Upstream):
    """Answers calls from memory; records (rpc, request, timeout_ms) of each."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.calls: list[tuple[str, object, float]] = []
        self.metadata_versions = [1]
        self.predict_version = 1
        self.signature_name = "serving_default"
        self.fail_with: Exception | None = None
        self.metadata_fails_with: Exception | None = None
        self.predict_refusals = 0  # how many coming Predict calls the backend refuses (400)
        self.output_dtype = types_pb2.DT_FLOAT
        self.ready = True

    def call(self, rpc, request, model, deadline, raw=False, prefer=None):
        if callable(request):  # converted for the endpoint it goes to
            request = request(Endpoint(prefer or "fake:1"))
        self.calls.append((rpc, request, deadline.timeout_ms))
        if self.fail_with is not None:
            raise self.fail_with
        self._known_models.add(model)
        if rpc == "GetModelMetadata":
            if self.metadata_fails_with is not None:
                raise self.metadata_fails_with
            versions = self.metadata_versions
            version = versions.pop(0) if len(versions) > 1 else versions[0]
            return fake_metadata_response(model, version, self.signature_name)
        if self.predict_refusals:
            self.predict_refusals -= 1
            raise UpstreamError(grpc.StatusCode.INVALID_ARGUMENT, "input tensor alias not found")
        response = predict_pb2.PredictResponse()
        response.model_spec.version.value = self.predict_version
        y = response.outputs["y"]
        y.dtype = self.output_dtype
        y.tensor_shape.dim.add(size=1)
        y.float_val.append(2.5)
        return response

    def readiness(self):
        return self.ready, [{"address": "fake:1", "ready": self.ready, "reason": ""}]

    def rpcs(self) -> list[str]:
        return [rpc for rpc, _, _ in self.calls]


@pytest.fixture
def settings() -> Settings:
    return Settings.defaults(max_body_bytes=1000, deadline_ms=2000, debug_endpoints=True)


@pytest.fixture
def upstream(settings) -> FakeUpstream:
    return FakeUpstream(settings)


@pytest.fixture
def client(settings, upstream):
    return create_app(settings, upstream).test_client()


PREDICT = "/v1/models/m:predict"
MODEL = ModelRef("m")
BODY = json.dumps({"instances": [1.0]})


def test_predict_and_request_id_round_trip(client, upstream):
    resp = client.post(PREDICT, data=BODY, headers={"X-Request-ID": "req-42"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Request-ID"] == "req-42"
    assert resp.get_json() == {"predictions": [2.5]}
    assert upstream.rpcs() == ["GetModelMetadata", "Predict"]


def test_request_id_is_generated_when_absent_or_unsafe(client):
    generated = client.get("/healthz").headers["X-Request-ID"]
    unsafe = client.get("/healthz", headers={"X-Request-ID": "a b\x7f"}).headers["X-Request-ID"]
    assert len(generated) == 32 and len(unsafe) == 32 and generated != unsafe


@pytest.mark.parametrize(("header", "expected_ms"), [(None, 2000), ("150", 150), ("99999", 2000)])
def test_deadline_is_the_smaller_of_default_and_header(client, upstream, header, expected_ms):
    headers = {"X-Request-Timeout-Ms": header} if header else {}
    assert client.post(PREDICT, data=BODY, headers=headers).status_code == 200
    assert {timeout for _, _, timeout in upstream.calls} == {expected_ms}


@pytest.mark.parametrize("header", ["soon", "0", "-5", "1.5"])
def test_bad_timeout_header_is_a_400(client, header):
    resp = client.post(PREDICT, data=BODY, headers={"X-Request-Timeout-Ms": header})
    assert resp.status_code == 400
    assert "X-Request-Timeout-Ms must be a positive integer" in resp.get_json()["error"]


def test_body_over_the_limit_is_a_413_before_any_backend_call(client, upstream):
    resp = client.post(PREDICT, data=json.dumps({"instances": [1.0] * 500}))
    assert resp.status_code == 413
    assert "larger than 1000 bytes" in resp.get_json()["error"]
    assert upstream.calls == []


def test_unexpected_exception_is_a_plain_500_with_request_id(client, upstream, caplog):
    upstream.fail_with = RuntimeError("secret internals")
    resp = client.post(PREDICT, data=BODY, headers={"X-Request-ID": "boom-1"})
    assert resp.status_code == 500
    assert resp.get_json() == {"error": "internal error", "request_id": "boom-1"}
    assert b"secret" not in resp.data and b"Traceback" not in resp.data
    logged = [r for r in caplog.records if r.name == "tfstack.gateway" and r.exc_info]
    assert len(logged) == 1
    assert "boom-1" in logged[0].getMessage()
    assert "secret internals" in caplog.text and "Traceback" in caplog.text


def test_new_model_version_refreshes_the_signature_cache(client, upstream):
    upstream.metadata_versions = [1, 2]
    upstream.predict_version = 2  # a new version rolled out after the metadata was cached
    for _ in range(3):
        assert client.post(PREDICT, data=BODY).status_code == 200
    assert upstream.rpcs() == [
        "GetModelMetadata", "Predict",  # cached v1; answer from v2 drops the entry
        "GetModelMetadata", "Predict",  # refetched: v2
        "Predict",  # cached and current
    ]  # fmt: skip


def test_a_request_refused_after_a_new_version_went_live_is_converted_anew(
    client, upstream, monkeypatch
):
    monkeypatch.setattr(upstream_module, "RECHECK_S", 0.0)
    upstream.metadata_versions = [1, 2]
    assert client.post(PREDICT, data=BODY).status_code == 200
    # Version 2 went live with other inputs: the request converted with version 1's is refused.
    upstream.predict_refusals, upstream.predict_version = 1, 2
    assert client.post(PREDICT, data=BODY).status_code == 200
    assert client.post(PREDICT, data=BODY).status_code == 200
    assert upstream.rpcs() == [
        "GetModelMetadata", "Predict",  # v1's signatures cached
        "Predict", "GetModelMetadata", "Predict",  # refused; v2's fetched; converted anew
        "Predict",  # v2's cached
    ]  # fmt: skip


def test_a_refused_request_rechecks_the_signatures_at_most_once_a_recheck_interval(
    client, upstream, monkeypatch
):
    monkeypatch.setattr(upstream_module, "RECHECK_S", 60.0)
    assert client.post(PREDICT, data=BODY).status_code == 200
    upstream.predict_refusals = 3  # a client's bad requests, the model unchanged
    for _ in range(3):
        resp = client.post(PREDICT, data=BODY)
        assert resp.status_code == 400
        assert resp.get_json()["error"] == "input tensor alias not found"
    assert upstream.rpcs() == [
        "GetModelMetadata", "Predict",
        "Predict", "GetModelMetadata",  # refused: rechecked, the same version; the refusal stands
        "Predict", "Predict",  # refused within the interval: not rechecked
    ]  # fmt: skip
    monkeypatch.setattr(upstream_module, "RECHECK_S", 0.0)
    upstream.calls.clear()
    upstream.predict_refusals = 1
    resp = client.post(PREDICT, data=BODY)  # checked: the same version, so the refusal stands
    assert (resp.status_code, resp.get_json()["error"]) == (400, "input tensor alias not found")
    assert upstream.rpcs() == ["Predict", "GetModelMetadata"]


def test_a_request_refused_after_another_refreshed_the_signatures_uses_them(upstream, monkeypatch):
    monkeypatch.setattr(upstream_module, "RECHECK_S", 60.0)
    upstream.metadata_versions = [1, 2, 2]
    deadline = Deadline.capped(None, 2000)
    used = upstream.signatures(MODEL, deadline)  # v1, then refused
    assert upstream.fresher_signatures(MODEL, used, deadline).version == 2  # asked: v2
    # Another request converted with v1 and refused meanwhile takes v2 without asking again.
    assert upstream.fresher_signatures(MODEL, used, deadline).version == 2
    assert upstream.rpcs() == ["GetModelMetadata", "GetModelMetadata"]


def test_a_recheck_that_gets_no_answer_leaves_the_refusal_as_it_was(client, upstream, monkeypatch):
    monkeypatch.setattr(upstream_module, "RECHECK_S", 0.0)
    assert client.post(PREDICT, data=BODY).status_code == 200
    upstream.predict_refusals = 1
    upstream.metadata_fails_with = NoBackend("no ready endpoint")
    resp = client.post(PREDICT, data=BODY)
    assert (resp.status_code, resp.get_json()["error"]) == (400, "input tensor alias not found")
    assert upstream.rpcs() == ["GetModelMetadata", "Predict", "Predict", "GetModelMetadata"]


def test_an_answer_the_codec_cannot_write_is_not_asked_for_twice(client, upstream, monkeypatch):
    monkeypatch.setattr(upstream_module, "RECHECK_S", 0.0)
    upstream.output_dtype = types_pb2.DT_RESOURCE  # TF Serving cannot write it as JSON either
    resp = client.post(PREDICT, data=BODY)
    assert resp.status_code == 400
    assert resp.get_json()["error"].startswith(
        "Failed to write JSON value for tensor type: resource"
    )
    assert upstream.rpcs() == ["GetModelMetadata", "Predict"]


def test_signature_miss_refetches_once(client, upstream):
    assert client.post(PREDICT, data=BODY).status_code == 200
    upstream.signature_name = "other"
    resp = client.post(PREDICT, data=json.dumps({"signature_name": "other", "instances": [1.0]}))
    assert resp.status_code == 200
    assert upstream.rpcs() == ["GetModelMetadata", "Predict", "GetModelMetadata", "Predict"]


def test_malformed_and_not_found_paths(client):
    resp = client.put(PREDICT, data=BODY)
    assert (resp.status_code, resp.get_json()) == (
        400,
        {"error": "Malformed request: PUT /v1/models/m:predict"},
    )
    assert client.get("/v2/models/m").status_code == 404
    # TF Serving answers a path no handler takes with libevent's HTML page, not JSON.
    assert client.get("/v2/models/m").headers["Content-Type"] == "text/html"
    assert "<H1>Not Found</H1>" in client.get("/v2/models/m").text


def test_cors_preflight(client):
    assert client.options(PREDICT, headers={"Origin": "https://example.com"}).status_code == 200
    resp = client.options(PREDICT)
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "Origin header is missing in CORS preflight"}


def test_readyz_follows_the_upstream(client, upstream):
    assert client.get("/readyz").status_code == 200
    upstream.ready = False
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["ready"] is False


def test_debug_endpoints_only_when_enabled(upstream):
    closed = create_app(Settings.defaults(), upstream).test_client()
    assert closed.get("/debug/vars").status_code == 404
    assert closed.get("/debug/endpoints").status_code == 404


def test_metrics_scrape_survives_a_worker_file_caught_mid_creation(monkeypatch, tmp_path):
    """A worker creating its metric file while a scrape reads it makes prometheus_client raise
    struct.error (a race we cannot time on purpose, so a double raises it once): the scrape
    reads again and answers, instead of a 500."""
    import struct

    from tfstack.gateway import metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    real, calls = metrics.generate_latest, []

    def flaky(registry):
        calls.append(registry)
        if len(calls) == 1:
            raise struct.error("unpack_from requires a buffer of at least 8 bytes")
        return real(registry)

    monkeypatch.setattr(metrics, "generate_latest", flaky)
    body, content_type = metrics.exposition()
    assert len(calls) == 2 and content_type.startswith("text/plain")
    assert isinstance(body, bytes)


def _worker_file(directory, name, value):
    """A metrics file as a gunicorn worker writes it (prometheus_client's own file format)."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    key = mmap_key("tfstack_gateway_requests_total", "tfstack_gateway_requests_total",
                   ("model", "method", "code"), ("m", "predict", "200"), "REST requests answered.")
    written = MmapedDict(str(directory / name))
    written.write_value(key, value, 0.0)
    written.close()


@pytest.mark.parametrize(
    "leftover",
    [
        b"",  # killed between creating the file and sizing it
        b"\x00\x01",  # cut short inside the header
        (4096).to_bytes(4, "little") + bytes(60),  # says it holds more than it does
    ],
    ids=["empty", "short-header", "truncated"],
)
def test_a_worker_killed_while_creating_its_metrics_file_never_breaks_a_scrape(
    monkeypatch, tmp_path, client, leftover
):
    """prometheus/client_python#1199: such a file used to fail every later scrape with a 500.
    The other workers' counts are still served, in full."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _worker_file(tmp_path, "counter_101.db", 3.0)
    _worker_file(tmp_path, "counter_102.db", 4.0)
    (tmp_path / "counter_103.db").write_bytes(leftover)
    for _ in range(2):  # and on every scrape after, not just the first
        resp = client.get("/metrics")
        assert resp.status_code == 200
        text = resp.get_data(as_text=True)
        assert 'tfstack_gateway_requests_total{code="200",method="predict",model="m"} 7.0' in text
