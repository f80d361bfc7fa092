"""The gateway's gRPC front door (`python -m tfstack.gateway.grpc_server`) through TF Serving's
official client stubs (tensorflow-serving-api), as a TF Serving client would use it.

Against the session's model server: every RPC answers what the model server itself answers,
errors come back unchanged, HandleReloadConfigRequest is refused, health and metrics. Against a
slow stand-in backend: deadlines and overload. Against 3 model servers (slow): one channel spread
over all three, and kill -9 of one under load with no client error.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

import tfstack
from tests.fixtures.gateway import FakeBackend, start_grpc_gateway
from tests.fixtures.modelserver import MONITORING_CONFIG
from tests.integration.test_balancing_unequal import served
from tests.integration.test_faults import Replicas

TIMEOUT = 20
REPO = Path(__file__).resolve().parents[2]


def predict(name: str = "half_plus_two", values=(1.0, 2.0, 5.0)) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(values, np.float32)))
    return request


def example(x: float) -> example_pb2.Example:
    item = example_pb2.Example()
    item.features.feature["x"].float_list.value.append(x)
    return item


def classify() -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.extend([example(3.0), example(6.0)])
    return request


def regress() -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.extend([example(4.0)])
    return request


def multi_inference() -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify_x_to_y", "tensorflow/serving/classify"),
                              ("regress_x_to_y", "tensorflow/serving/regress")):
        task = request.tasks.add(method_name=method)
        task.model_spec.name = "half_plus_two"
        task.model_spec.signature_name = signature
    request.input.example_list.examples.extend([example(2.0)])
    return request


def metadata() -> get_model_metadata_pb2.GetModelMetadataRequest:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "digits"
    return request


def status(name: str = "digits") -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    return request


CALLS = {
    "Predict": predict,
    "Classify": classify,
    "Regress": regress,
    "MultiInference": multi_inference,
    "GetModelMetadata": metadata,
    "GetModelStatus": status,
}


class Stubs:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def call(self, rpc: str, request, **kwargs):
        stub = self.model if rpc in ("GetModelStatus", "HandleReloadConfigRequest") \
            else self.prediction
        return getattr(stub, rpc)(request, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)

    def error(self, rpc: str, request, **kwargs) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as err:
            self.call(rpc, request, **kwargs)
        return err.value


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def front(tmp_path_factory, modelserver):
    handle = start_grpc_gateway(tmp_path_factory.mktemp("grpc-gateway"),
                                [modelserver.grpc_target])
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def via_gateway(front):
    stubs = Stubs(front.target)
    yield stubs
    stubs.channel.close()


@pytest.fixture(scope="module")
def direct(modelserver):
    stubs = Stubs(modelserver.grpc_target)
    yield stubs
    stubs.channel.close()


@pytest.mark.parametrize("rpc", list(CALLS))
def test_every_rpc_answers_what_the_model_server_answers(rpc, via_gateway, direct):
    request = CALLS[rpc]()
    assert via_gateway.call(rpc, request) == direct.call(rpc, request)


@pytest.mark.parametrize(
    ("rpc", "request_"),
    [
        ("Predict", predict("no_such_model")),
        ("GetModelStatus", status("no_such_model")),
        ("GetModelMetadata", get_model_metadata_pb2.GetModelMetadataRequest()),  # no model name
        ("Predict", predict_pb2.PredictRequest(model_spec={"name": "half_plus_two"})),  # no input
    ],
    ids=["unknown-model", "unknown-model-status", "no-model-name", "missing-input"],
)
def test_backend_errors_come_back_with_their_code_and_text_unchanged(
    rpc, request_, via_gateway, direct
):
    through, itself = via_gateway.error(rpc, request_), direct.error(rpc, request_)
    assert through.code() == itself.code() != grpc.StatusCode.OK
    assert through.details() == itself.details()


def test_gzip_compressed_messages_over_grpcs_4_mib_default_pass_both_ways(front):
    """TF Serving takes messages up to 2 GiB; a client that raises its own limits and compresses
    gets its 6 MB tensor answered through the gateway, and a 6 MB answer back."""
    limits = [("grpc.max_send_message_length", 64 * 2**20),
              ("grpc.max_receive_message_length", 64 * 2**20)]
    with grpc.insecure_channel(front.target, options=limits,
                               compression=grpc.Compression.Gzip) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        values = np.arange(1_500_000, dtype=np.float32) / 1024
        response = stub.Predict(predict(values=values), timeout=60)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), values * 0.5 + 2)


def test_unknown_model_is_tf_servings_not_found(via_gateway):
    err = via_gateway.error("Predict", predict("half"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Servable not found for request: Latest(half)"


def test_reload_config_is_refused_not_sent_to_one_replica(via_gateway):
    err = via_gateway.error("HandleReloadConfigRequest", model_management_pb2.ReloadConfigRequest())
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "not forwarded by the tfstack gateway" in err.details()


def test_health_service_readyz_and_metrics(front, via_gateway):
    health = health_pb2_grpc.HealthStub(via_gateway.channel)
    for service in ("", "tensorflow.serving.PredictionService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    code, body = get(front.ops_url + "/readyz")
    assert code == 200 and json.loads(body)["ready"] is True
    assert get(front.ops_url + "/healthz")[0] == 200

    via_gateway.call("Predict", predict(), metadata=[("x-request-id", "grpc-test-1")])
    _, text = get(front.ops_url + "/metrics")
    assert ('tfstack_gateway_requests_total{code="200",method="predict",model="half_plus_two",'
            'protocol="grpc"}') in text.decode()
    assert f'tfstack_gateway_build_info{{version="{tfstack.__version__}"}} 1.0' in text.decode()
    front.process.wait_until(
        lambda: any(line["request_id"] == "grpc-test-1" for line in front.access_log()),
        5, "logging the request")
    line = next(line for line in front.access_log() if line["request_id"] == "grpc-test-1")
    assert line["protocol"] == "grpc" and line["grpc_code"] == "OK"
    assert line["path"] == "/tensorflow.serving.PredictionService/Predict"
    assert line["model"] == "half_plus_two" and len(line["upstream"]) == 1


def test_the_python_client_in_the_docs_works_against_the_front_door(front, capsys):
    """docs/gateway.md's tensorflow-serving-api client, run as written (its address swapped)."""
    doc = (REPO / "docs" / "gateway.md").read_text().split("## gRPC front door", 1)[1]
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"127.0.0.1:8090"' in code
    exec(code.replace('"127.0.0.1:8090"', repr(front.target)), {})  # noqa: S102
    assert capsys.readouterr().out.strip() == "[2.5 3.  4.5]"


# --- a slow stand-in backend: deadlines and overload ----------------------------------------------


@pytest.fixture
def slow_backend():
    backend = FakeBackend(delay_s=5.0)
    yield backend
    backend.stop()


def slow_predict() -> predict_pb2.PredictRequest:
    return predict("slow", values=[1.0])


def slow_predict_error(tmp_path, backend: FakeBackend, timeout: float, **env):
    """The error of one Predict with `timeout` through a front door to `backend`, and its time."""
    front = start_grpc_gateway(tmp_path, [backend.address], **env)
    stubs = Stubs(front.target)
    try:
        started = time.monotonic()
        err = stubs.error("Predict", slow_predict(), timeout=timeout)
        return err, time.monotonic() - started
    finally:
        stubs.channel.close()
        front.stop()


def test_client_deadline_shorter_than_a_slow_backend_is_deadline_exceeded(
    tmp_path, slow_backend
):
    err, took = slow_predict_error(tmp_path, slow_backend, timeout=0.3)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert took < 2.0, "the client's deadline, not the backend's 5 s"


def test_gateway_deadline_caps_a_longer_client_deadline(tmp_path, slow_backend):
    err, took = slow_predict_error(tmp_path, slow_backend, timeout=30, deadline_ms=300)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no answer from the backend in 300 ms" in err.details()
    assert took < 3.0


def test_overload_is_resource_exhausted_at_once(tmp_path, slow_backend):
    front = start_grpc_gateway(tmp_path, [slow_backend.address], grpc_threads=4,
                               grpc_max_inflight=2)
    stubs = Stubs(front.target)
    try:
        held = [stubs.prediction.Predict.future(slow_predict(), timeout=10) for _ in range(2)]
        front.process.wait_until(lambda: slow_backend.calls >= 2, 5, "holding 2 calls")
        started = time.monotonic()
        err = stubs.error("Predict", slow_predict())
        took = time.monotonic() - started
        slow_backend.release.set()  # let the held calls finish
        assert all(call.result().outputs["y"].float_val == [2.5] for call in held)
        _, text = get(front.ops_url + "/metrics")
    finally:
        stubs.channel.close()
        front.stop()
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Too many requests in flight" in err.details()
    assert took < 1.0, "refused at once, not after the backend's 5 s"
    rejected = 'tfstack_gateway_admission_rejections_total{reason="worker_inflight"} 1.0'
    assert rejected in text.decode()


def test_no_reachable_backend_is_unavailable(tmp_path):
    front = start_grpc_gateway(tmp_path, ["127.0.0.1:1"], wait=False)
    try:
        front.process.wait_http(front.ops_url + "/healthz", timeout=30)
        assert get(front.ops_url + "/readyz")[0] == 503
        stubs = Stubs(front.target)
        err = stubs.error("Predict", slow_predict())
        stubs.channel.close()
    finally:
        front.stop()
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert err.details().startswith("No backend available: 127.0.0.1:1")


def test_sigterm_drains_not_serving_yet_answering_then_exits_0(tmp_path):
    backend = FakeBackend()
    front = start_grpc_gateway(tmp_path, [backend.address], drain_delay_s=8)
    stubs = Stubs(front.target)
    health = health_pb2_grpc.HealthStub(stubs.channel)
    try:
        front.process.signal(signal.SIGTERM)
        front.process.wait_until(lambda: get(front.ops_url + "/readyz")[0] == 503, 5, "draining")
        check = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert list(stubs.call("Predict", slow_predict()).outputs["y"].float_val) == [2.5]
        assert front.process.proc.wait(timeout=40) == 0
    finally:
        stubs.channel.close()
        front.stop()
        backend.stop()


# --- three model servers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, models_root):
    # Monitoring on: each replica's own request count shows where requests went.
    pool = Replicas(tmp_path_factory.mktemp("replicas"), models_root,
                    f"--monitoring_config_file={MONITORING_CONFIG}")
    try:
        pool.start(3)
        yield pool
    finally:
        pool.stop_all()


class Load:
    """`concurrency` threads sending Predicts over ONE channel until stopped; every outcome kept."""

    def __init__(self, stub, concurrency: int = 8) -> None:
        self.stub, self.outcomes = stub, []
        self.stop = threading.Event()
        self.pool = futures.ThreadPoolExecutor(concurrency)
        self.running = [self.pool.submit(self._loop) for _ in range(concurrency)]

    def _loop(self) -> None:
        request = predict()
        while not self.stop.is_set():
            try:
                self.stub.Predict(request, timeout=10)
                self.outcomes.append("OK")
            except grpc.RpcError as err:
                self.outcomes.append(f"{err.code().name}: {err.details()}")

    def finish(self) -> list[str]:
        self.stop.set()
        for running in self.running:
            running.result()
        self.pool.shutdown()
        return self.outcomes


@pytest.mark.slow
def test_one_channel_is_spread_over_all_three_backends(tmp_path, replicas):
    servers = replicas.take(3)
    before = [served(s) for s in servers]
    front = start_grpc_gateway(tmp_path, [s.grpc_target for s in servers], access_log="false")
    stubs = Stubs(front.target)  # one channel: one HTTP/2 connection to the gateway
    try:
        for _ in range(150):
            stubs.call("Predict", predict())
    finally:
        stubs.channel.close()
        front.stop()
    shares = [served(s) - b for s, b in zip(servers, before, strict=True)]
    assert sum(shares) >= 150
    assert all(share >= 20 for share in shares), f"requests per backend: {shares}"


@pytest.mark.slow
def test_kill_9_of_one_backend_under_grpc_load_costs_no_client_error(tmp_path, replicas):
    servers = replicas.take(3)
    victim = servers[0]
    front = start_grpc_gateway(tmp_path, [s.grpc_target for s in servers], access_log="false",
                               grpc_threads=32)
    stubs = Stubs(front.target)
    try:
        load = Load(stubs.prediction, concurrency=8)
        front.process.wait_until(lambda: load.outcomes.count("OK") >= 300, 20, "serving")
        victim.process.signal(signal.SIGKILL)
        killed_at = len(load.outcomes)
        time.sleep(3)
        outcomes = load.finish()
        _, text = get(front.ops_url + "/metrics")
    finally:
        stubs.channel.close()
        front.stop()
        replicas.discard(victim)
    failures = [o for o in outcomes if o != "OK"]
    assert failures == [], f"client-visible failures: {failures[:5]} ({len(failures)})"
    assert len(outcomes) - killed_at >= 200, "the two survivors carried the load"
    assert 'tfstack_gateway_retries_total{outcome="retry"}' in text.decode()
