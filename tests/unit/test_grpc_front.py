"""The gRPC front door's pure parts: the model name read from request bytes, its settings, and the
process refusing a bad setting by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tfstack.gateway.domain import DeadlineExceeded, NoBackend, Overloaded, UpstreamError
from tfstack.gateway.grpc_front import grpc_status, model_name
from tfstack.gateway.settings import SettingsError, load_settings
from tfstack.protocol.proto import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
    types_pb2,
)
from tfstack.protocol.rpcs import RPCS

REPO = Path(__file__).resolve().parents[2]


def _predict() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=3)
    tensor.tensor_content = bytes(12)
    request.model_spec.name = "digits"  # set after the inputs: field order on the wire is fixed
    request.model_spec.version.value = 2
    return request


def _multi() -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    for method in ("tensorflow/serving/classify", "tensorflow/serving/regress"):
        task = request.tasks.add(method_name=method)
        task.model_spec.name = "digits"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(1)
    return request


@pytest.mark.parametrize(
    ("rpc", "request_"),
    [
        ("Predict", _predict()),
        ("Classify", classification_pb2.ClassificationRequest(model_spec={"name": "digits"})),
        ("Regress", regression_pb2.RegressionRequest(model_spec={"name": "digits"})),
        ("MultiInference", _multi()),
        ("GetModelMetadata", get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "digits"}, metadata_field=["signature_def"])),
        ("GetModelStatus", get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "digits", "version_label": "canary"})),
    ],
)
def test_the_model_name_is_read_from_every_forwarded_request(rpc, request_):
    assert rpc in RPCS
    assert model_name(rpc, request_.SerializeToString()) == "digits"


@pytest.mark.parametrize(
    "raw", [b"", b"\xff\xff\xff", predict_pb2.PredictRequest().SerializeToString()]
)
def test_a_request_without_a_readable_name_has_none(raw):
    """Forwarded all the same: the backend answers it as TF Serving would."""
    assert model_name("Predict", raw) == ""
    assert model_name("MultiInference", raw) == ""


def test_gateway_refusals_become_grpc_statuses_and_backend_errors_keep_theirs():
    assert grpc_status(DeadlineExceeded(100)) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert grpc_status(NoBackend("x")) == grpc.StatusCode.UNAVAILABLE
    assert grpc_status(Overloaded("worker_inflight", 1)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    error = UpstreamError(grpc.StatusCode.FAILED_PRECONDITION, "as the backend said")
    assert grpc_status(error) == grpc.StatusCode.FAILED_PRECONDITION


def test_grpc_settings_defaults_and_refusals():
    settings = load_settings({})
    assert settings.grpc_bind == "0.0.0.0:8500" and settings.grpc_ops_bind == "0.0.0.0:8081"
    assert settings.grpc_threads == 32 and settings.grpc_max_inflight == 0
    for variable, value, problem in [
        ("TFSTACK_GRPC_BIND", "8500", "expected host:port"),
        ("TFSTACK_GRPC_OPS_BIND", "host:0", "expected host:port"),
        ("TFSTACK_GRPC_THREADS", "1", "in [2, 1024]"),
        ("TFSTACK_GRPC_MAX_INFLIGHT", "-1", "expected an integer in"),
    ]:
        with pytest.raises(SettingsError) as err:
            load_settings({variable: value})
        assert str(err.value).startswith(f"{variable}: ") and problem in str(err.value)


def test_the_grpc_server_refuses_to_start_and_names_the_variable():
    result = subprocess.run(
        [sys.executable, "-m", "tfstack.gateway.grpc_server"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "TFSTACK_GRPC_BIND": "everywhere"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TFSTACK_GRPC_BIND: expected host:port, got 'everywhere'" in result.stderr
    assert "Traceback" not in result.stderr
