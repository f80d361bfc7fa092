"""Admission control in the app: 429 with Retry-After at once, counted by reason, slots freed."""

from __future__ import annotations

import json
import threading

from tests.fixtures.gateway import fake_metadata_response
from tfstack.gateway.app import create_app
from tfstack.gateway.balancing import Endpoint
from tfstack.gateway.settings import Settings
from tfstack.gateway.upstream import Upstream
from tfstack.protocol.proto import get_model_status_pb2, predict_pb2, types_pb2

PREDICT = "/v1/models/m:predict"
BODY = json.dumps({"instances": [1.0]})


class BlockingUpstream(Upstream):
    """Predict waits until `release` is set; metadata answers at once."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def call(self, rpc, request, model, deadline, raw=False, prefer=None):
        if callable(request):  # converted for the endpoint it goes to
            request = request(Endpoint(prefer or "fake:1"))
        self._known_models.add(model)
        if rpc == "GetModelMetadata":
            return fake_metadata_response(model, 1, "serving_default")
        if rpc == "GetModelStatus":
            return get_model_status_pb2.GetModelStatusResponse()
        self.entered.release()
        assert self.release.wait(10)
        response = predict_pb2.PredictResponse()
        response.model_spec.version.value = 1
        y = response.outputs["y"]
        y.dtype = types_pb2.DT_FLOAT
        y.tensor_shape.dim.add(size=1)
        y.float_val.append(2.5)
        return response


def make(**overrides):
    settings = Settings.defaults(**overrides)
    upstream = BlockingUpstream(settings)
    return create_app(settings, upstream), upstream


def test_full_worker_answers_429_with_retry_after_then_admits_again():
    app, upstream = make(max_inflight=1, retry_after_s=2)
    client = app.test_client()
    first: dict = {}
    thread = threading.Thread(target=lambda: first.update(resp=client.post(PREDICT, data=BODY)))
    thread.start()
    try:
        assert upstream.entered.acquire(timeout=10), "first request reached the backend"
        rejected = client.post(PREDICT, data=BODY)
        assert rejected.status_code == 429
        assert rejected.headers["Retry-After"] == "2"
        assert "worker_inflight" in rejected.get_json()["error"]
        assert app.extensions["tfstack"].admission.rejected["worker_inflight"] == 1
    finally:
        upstream.release.set()
        thread.join(10)
    assert first["resp"].status_code == 200
    assert client.post(PREDICT, data=BODY).status_code == 200, "the slot was given back"


def test_per_model_limit_leaves_other_models_alone():
    app, upstream = make(max_inflight=5, model_max_inflight=(("m", 1),))
    client = app.test_client()
    thread = threading.Thread(target=lambda: client.post(PREDICT, data=BODY))
    thread.start()
    try:
        assert upstream.entered.acquire(timeout=10)
        assert client.post(PREDICT, data=BODY).status_code == 429
        assert client.get("/v1/models/other").status_code == 200
    finally:
        upstream.release.set()
        thread.join(10)


def test_default_bound_comes_from_the_ready_endpoints():
    app, upstream = make(max_inflight_per_endpoint=16)
    upstream.health.sync(["a:1", "b:1", "c:1"])
    assert app.extensions["tfstack"].admission.max_inflight == 48


def test_gthread_bound_is_capped_by_the_threads():
    app, upstream = make(worker_class="gthread", threads=4)
    upstream.health.sync(["a:1", "b:1"])
    assert app.extensions["tfstack"].admission.max_inflight == 3


def test_draining_worker_is_not_ready_and_still_serves(monkeypatch, tmp_path):
    """The drain delay (gunicorn.conf.py's master flags SIGTERM with a file): readiness off so
    Kubernetes stops sending, requests still served until gunicorn's own graceful stop."""
    flag = tmp_path / "draining"
    flag.touch()
    monkeypatch.setenv("_TFSTACK_DRAIN_FLAG", str(flag))
    app, upstream = make()
    upstream.release.set()
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json() == {"ready": False, "draining": True}
    assert client.post(PREDICT, data=BODY).status_code == 200
