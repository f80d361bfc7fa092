"""The model server through TF Serving's official gRPC stubs (tensorflow-serving-api): every
method, and every documented error with its status code and message."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
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

from tfstack.model_repo.data import digits_split, to_png

TIMEOUT = 20


@pytest.fixture(scope="module")
def channel(modelserver):
    with grpc.insecure_channel(modelserver.grpc_target) as chan:
        yield chan


@pytest.fixture(scope="module")
def predict_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture(scope="module")
def digit_images():
    _, x_test, _, y_test = digits_split()
    return x_test[:8], y_test[:8]


def predict_request(name="half_plus_two", inputs=None, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    if inputs is None:
        inputs = {"x": np.array([1.0, 2.0, 5.0], np.float32)}
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


def example(x: float) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(
            feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
        )
    )


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    return info.value


# -- happy paths ---------------------------------------------------------------------------------
def test_predict_half_plus_two(predict_stub):
    response = predict_stub.Predict(predict_request(), timeout=TIMEOUT)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.5, 3.0, 4.5]
    # AsProtoField (typed repeated fields), as TF Serving answers by default.
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.signature_name == "serving_default"
    assert response.model_spec.version.value == 1


@pytest.mark.parametrize(
    ("spec", "version"),
    [
        ({}, 2),
        ({"version": 1}, 1),
        ({"version_label": "stable"}, 1),
        ({"version_label": "canary"}, 2),
    ],
)
def test_predict_digits_versions_and_labels(predict_stub, digit_images, spec, version):
    images, labels = digit_images
    response = predict_stub.Predict(
        predict_request("digits", {"images": images}, **spec), timeout=TIMEOUT
    )
    assert response.model_spec.version.value == version
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    classes = tf.make_ndarray(response.outputs["classes"])
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    assert response.outputs["classes"].dtype == tf.int64.as_datatype_enum
    assert (classes == labels).mean() >= 0.75  # real classifiers, not constants


def test_predict_output_filter(predict_stub, digit_images):
    request = predict_request("digits", {"images": digit_images[0]})
    request.output_filter.append("classes")
    response = predict_stub.Predict(request, timeout=TIMEOUT)
    assert list(response.outputs) == ["classes"]


def test_predict_strings_in_and_out(predict_stub, digit_images):
    images, labels = digit_images
    pngs = np.array([to_png(image) for image in images[:3]], dtype=object)
    response = predict_stub.Predict(
        predict_request("digits_png", {"image_bytes": pngs}), timeout=TIMEOUT
    )
    label = [v.decode() for v in tf.make_ndarray(response.outputs["label"]).tolist()]
    assert sum(a == str(b) for a, b in zip(label, labels[:3], strict=True)) >= 2
    thumbnails = tf.make_ndarray(response.outputs["thumbnail_bytes"])
    assert all(t.startswith(b"\x89PNG") for t in thumbnails.tolist())


def test_classify_and_regress(predict_stub):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_two"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.extend([example(3.0), example(6.0)])
    result = predict_stub.Classify(classify, timeout=TIMEOUT)
    assert [[c.score for c in row.classes] for row in result.result.classifications] == [
        [3.5],
        [5.0],
    ]
    assert result.model_spec.signature_name == "classify_x_to_y"

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list_with_context.context.CopyFrom(example(4.0))
    regress.input.example_list_with_context.examples.add()
    result = predict_stub.Regress(regress, timeout=TIMEOUT)
    assert [r.value for r in result.result.regressions] == [4.0]


def test_multi_inference(predict_stub):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("classify_x_to_y", "tensorflow/serving/classify"),
        ("regress_x_to_y", "tensorflow/serving/regress"),
    ):
        task = request.tasks.add(method_name=method)
        task.model_spec.name = "half_plus_two"
        task.model_spec.signature_name = signature
    request.input.example_list.examples.append(example(2.0))
    response = predict_stub.MultiInference(request, timeout=TIMEOUT)
    assert response.results[0].classification_result.classifications[0].classes[0].score == 3.0
    assert response.results[1].regression_result.regressions[0].value == 3.0


def test_get_model_metadata(predict_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half_plus_two"
    response = predict_stub.GetModelMetadata(request, timeout=TIMEOUT)
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == ""
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", "classify_x_to_y", "regress_x_to_y"} <= set(signatures.signature_def)
    x = signatures.signature_def["serving_default"].inputs["x"]
    assert x.dtype == tf.float32.as_datatype_enum


def test_get_model_status(model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "digits"
    response = model_stub.GetModelStatus(request, timeout=TIMEOUT)
    states = [(s.version, s.state, s.status.error_code) for s in response.model_version_status]
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert states == [(2, available, 0), (1, available, 0)]  # descending versions
    request.model_spec.version.value = 1
    response = model_stub.GetModelStatus(request, timeout=TIMEOUT)
    assert [s.version for s in response.model_version_status] == [1]


# -- errors ----------------------------------------------------------------------------------------
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "method", ["Predict", "Classify", "Regress", "GetModelMetadata", "GetModelStatus"]
)
def test_missing_model_spec(predict_stub, model_stub, method):
    requests = {
        "Predict": predict_pb2.PredictRequest(),
        "Classify": classification_pb2.ClassificationRequest(),
        "Regress": regression_pb2.RegressionRequest(),
        "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"]
        ),
        "GetModelStatus": get_model_status_pb2.GetModelStatusRequest(),
    }
    stub = model_stub if method == "GetModelStatus" else predict_stub
    err = rpc_error(getattr(stub, method), requests[method])
    assert (err.code(), err.details()) == (INVALID, "Missing ModelSpec")


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (predict_request(""), INVALID, "ModelSpec has no name specified."),
        (predict_request("nope"), NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (
            predict_request(version=42),
            NOT_FOUND,
            "Servable not found for request: Specific(half_plus_two, 42)",
        ),
        (
            predict_request("digits", version_label="nope"),
            INVALID,
            "Unrecognized servable version label: nope",
        ),
        (
            predict_request(signature_name="nope"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        (
            predict_request(inputs={"x": np.ones(1, np.float32), "z": np.ones(1, np.float32)}),
            INVALID,
            "input size does not match signature: 2!=1 len({x,z}) != len({x}). "
            "Sent extra: {z}. Missing but required: {}.",
        ),
        (
            predict_request(inputs={"x": np.array([b"a"], dtype=object)}),
            INVALID,
            "Expects arg[0] to be float but string is provided",
        ),
    ],
    ids=[
        "no-name",
        "unknown-model",
        "unknown-version",
        "unknown-label",
        "unknown-signature",
        "extra-input",
        "wrong-dtype",
    ],
)
def test_predict_errors(predict_stub, request_, code, message):
    err = rpc_error(predict_stub.Predict, request_)
    assert (err.code(), err.details()) == (code, message)


def test_predict_wrong_alias(predict_stub):
    err = rpc_error(predict_stub.Predict, predict_request(inputs={"q": np.ones(1, np.float32)}))
    assert err.code() == INVALID
    assert err.details().startswith("Signature input alias: x(feed name: ")
    assert "not found in request and no default value provided" in err.details()


def test_predict_bad_shape_is_a_runtime_error(predict_stub):
    err = rpc_error(
        predict_stub.Predict, predict_request("digits", {"images": np.ones((2, 8, 7), np.float32)})
    )
    assert err.code() == INVALID


@pytest.mark.parametrize(
    ("output_filter", "message"),
    [
        (
            ["nope"],
            "output tensor alias not found in signature: nope Outputs expected to be in "
            "the set {y}.",
        ),
        (["y", "y"], "duplicate output tensor alias: y"),
    ],
)
def test_output_filter_errors(predict_stub, output_filter, message):
    request = predict_request()
    request.output_filter.extend(output_filter)
    err = rpc_error(predict_stub.Predict, request)
    assert (err.code(), err.details()) == (INVALID, message)


def test_classify_unknown_signature(predict_stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "nope"
    request.input.example_list.examples.append(example(1.0))
    err = rpc_error(predict_stub.Classify, request)
    assert (err.code(), err.details()) == (INVALID, "No signature was found with the name: nope")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([], "GetModelMetadataRequest must specify at least one metadata_field"),
        (["nope"], "Metadata field nope is not supported"),
    ],
)
def test_metadata_field_errors(predict_stub, fields, message):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = "half_plus_two"
    err = rpc_error(predict_stub.GetModelMetadata, request)
    assert (err.code(), err.details()) == (INVALID, message)


@pytest.mark.parametrize(
    ("version", "message"),
    [(None, "Could not find any versions of model nope"), (42, None)],
)
def test_status_errors(model_stub, version, message):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope" if version is None else "half_plus_two"
    if version is not None:
        request.model_spec.version.value = version
        message = "Could not find version 42 of model half_plus_two"
    err = rpc_error(model_stub.GetModelStatus, request)
    assert (err.code(), err.details()) == (NOT_FOUND, message)


def test_multi_inference_unsupported_method(predict_stub):
    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add(method_name="tensorflow/serving/predict")
    task.model_spec.name = "half_plus_two"
    task.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.append(example(2.0))
    err = rpc_error(predict_stub.MultiInference, request)
    assert (err.code(), err.details()) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "Unsupported signature method_name: tensorflow/serving/predict",
    )


def test_reload_rejects_non_list_config(model_stub):
    err = rpc_error(
        model_stub.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest()
    )
    assert err.code() == INVALID
    assert err.details() == (
        "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList "
        "is currently supported"
    )


def test_large_messages_are_accepted(modelserver):
    # Beyond gRPC's 4 MiB default: TF Serving raises the server limit to INT32_MAX.
    big = np.ones(2_000_000, np.float32)  # 8 MB as float_val, both ways
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(modelserver.grpc_target, options=options) as chan:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        response = stub.Predict(predict_request(inputs={"x": big}), timeout=60)
    assert response.outputs["y"].tensor_shape.dim[0].size == big.size
