"""The gateway's own .proto subset is wire-compatible with TF Serving's official messages.

Both directions: gateway message -> bytes -> official message (and back), compared field by field
and byte for byte; a schema check of every gateway message against the official descriptor with
the same full name; the gRPC method paths of the generated stubs; and the codec's tensors fed to
the real example models. This is the one unit suite that imports TensorFlow (in this process
only: the subprocess test proves the gateway modules themselves never do).
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pool, json_format
from tensorflow.core.example import example_pb2 as tf_example_pb2
from tensorflow.core.framework import tensor_pb2 as tf_tensor_pb2
from tensorflow.core.framework import types_pb2 as tf_types_pb2
from tensorflow.core.protobuf import saved_model_pb2, struct_pb2
from tensorflow_serving.apis import (
    classification_pb2 as tfs_classification_pb2,
)
from tensorflow_serving.apis import (
    get_model_metadata_pb2 as tfs_get_model_metadata_pb2,
)
from tensorflow_serving.apis import (
    get_model_status_pb2 as tfs_get_model_status_pb2,
)
from tensorflow_serving.apis import (
    inference_pb2 as tfs_inference_pb2,
)
from tensorflow_serving.apis import (
    model_service_pb2 as tfs_model_service_pb2,
)
from tensorflow_serving.apis import (
    model_service_pb2_grpc as tfs_model_service_pb2_grpc,
)
from tensorflow_serving.apis import (
    predict_pb2 as tfs_predict_pb2,
)
from tensorflow_serving.apis import (
    prediction_service_pb2 as tfs_prediction_service_pb2,
)
from tensorflow_serving.apis import (
    prediction_service_pb2_grpc as tfs_prediction_service_pb2_grpc,
)
from tensorflow_serving.apis import (
    regression_pb2 as tfs_regression_pb2,
)

from tfstack.protocol import codec
from tfstack.protocol.proto import (
    _pool,
    classification_pb2,
    example_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
    tensor_pb2,
)

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "tfstack" / "protocol" / "proto"
OFFICIAL = descriptor_pool.Default()
# The official service descriptors (imported for their registration in the default pool).
OFFICIAL_SERVICES = (tfs_prediction_service_pb2.DESCRIPTOR, tfs_model_service_pb2.DESCRIPTOR)


# --- schema: every gateway message/enum/service against the official one ------------------------

def gateway_files():
    """The descriptor of every gateway .proto file, loaded by importing its generated module."""
    files = []
    for path in sorted(PROTO_DIR.glob("*.proto")):
        importlib.import_module(f"tfstack.protocol.proto.{path.stem}_pb2")
        files.append(_pool.POOL.FindFileByName(f"tfstack/protocol/proto/{path.name}"))
    return files


def all_messages(container):
    for message in container.message_types_by_name.values():
        yield message
        yield from _nested(message)


def _nested(message):
    for nested in message.nested_types:
        yield nested
        yield from _nested(nested)


def all_enums(file):
    yield from file.enum_types_by_name.values()
    for message in all_messages(file):
        yield from message.enum_types


def test_gateway_proto_files_are_all_in_the_private_pool():
    assert len(gateway_files()) == len(list(PROTO_DIR.glob("*.proto"))) >= 18
    for file in gateway_files():
        with pytest.raises(KeyError):
            OFFICIAL.FindFileByName(file.name)  # never registered in the default pool


@pytest.mark.parametrize("file", gateway_files(), ids=lambda f: f.name.rsplit("/", 1)[-1])
def test_messages_match_official_schema(file):
    for ours in all_messages(file):
        theirs = OFFICIAL.FindMessageTypeByName(ours.full_name)
        for field in ours.fields:
            official = theirs.fields_by_number.get(field.number)
            where = f"{ours.full_name}.{field.name}"
            assert official is not None, f"{where}: number {field.number} not in official"
            assert (field.name, field.type, field.is_repeated, field.json_name) == \
                (official.name, official.type, official.is_repeated, official.json_name), where
            if field.message_type:
                assert field.message_type.full_name == official.message_type.full_name, where
            if field.enum_type:
                assert field.enum_type.full_name == official.enum_type.full_name, where
            oneof = field.containing_oneof.name if field.containing_oneof else None
            official_oneof = official.containing_oneof.name if official.containing_oneof else None
            assert oneof == official_oneof, where
    for ours in all_enums(file):
        theirs = OFFICIAL.FindEnumTypeByName(ours.full_name)
        for value in ours.values:
            assert theirs.values_by_name[value.name].number == value.number, \
                f"{ours.full_name}.{value.name}"
    for service in file.services_by_name.values():
        theirs = OFFICIAL.FindServiceByName(service.full_name)
        for method in service.methods:
            official = theirs.methods_by_name[method.name]
            assert method.input_type.full_name == official.input_type.full_name
            assert method.output_type.full_name == official.output_type.full_name


class RecordingChannel:
    """Enough of grpc.Channel for a generated stub's constructor: records the method paths."""

    def __init__(self):
        self.paths = []

    def unary_unary(self, path, **_kwargs):
        self.paths.append(path)
        return path


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (prediction_service_pb2_grpc.PredictionServiceStub,
         tfs_prediction_service_pb2_grpc.PredictionServiceStub),
        (model_service_pb2_grpc.ModelServiceStub, tfs_model_service_pb2_grpc.ModelServiceStub),
    ],
)
def test_stub_method_paths(ours, theirs):
    mine, official = RecordingChannel(), RecordingChannel()
    ours(mine)
    theirs(official)
    expected = {
        "PredictionServiceStub": {f"/tensorflow.serving.PredictionService/{m}" for m in
                                  ("Classify", "Regress", "Predict", "MultiInference",
                                   "GetModelMetadata")},
        "ModelServiceStub": {"/tensorflow.serving.ModelService/GetModelStatus"},
    }[ours.__name__]
    assert set(mine.paths) == expected
    assert expected <= set(official.paths)  # the official ModelService also has HandleReload...


# --- messages both ways ------------------------------------------------------------------------

def to_dict(message, pool=None) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     descriptor_pool=pool)


def assert_same(ours, theirs):
    """Same bytes on the wire and the same fields (compared as protobuf's JSON mapping)."""
    assert ours.SerializeToString(deterministic=True) == \
        theirs.SerializeToString(deterministic=True)
    assert to_dict(ours, _pool.POOL) == to_dict(theirs)


def both_ways(ours, official_type):
    theirs = official_type.FromString(ours.SerializeToString())
    assert_same(ours, theirs)
    back = type(ours).FromString(theirs.SerializeToString())
    assert_same(back, theirs)
    return theirs


def sample_tensors():
    t = {}
    t["packed_float"] = tensor_pb2.TensorProto(
        dtype=1, tensor_content=np.array([[1.5, -2], [3, 4]], "<f4").tobytes())
    t["packed_float"].tensor_shape.dim.add(size=2)
    t["packed_float"].tensor_shape.dim.add(size=2, name="cols")
    t["strings"] = tensor_pb2.TensorProto(dtype=7, string_val=[b"a", b"\x00\xff"])
    t["strings"].tensor_shape.dim.add(size=2)
    t["everything"] = tensor_pb2.TensorProto(
        dtype=9, version_number=3, half_val=[0x3C00], float_val=[0.5], double_val=[0.25],
        int_val=[-7], string_val=[b"s"], scomplex_val=[1, 2], int64_val=[-(2**63)],
        bool_val=[True, False], dcomplex_val=[3, 4], uint32_val=[2**32 - 1],
        uint64_val=[2**64 - 1], float8_val=b"\x01\x02")
    t["everything"].tensor_shape.unknown_rank = True
    return t


def test_predict_request_and_response():
    request = predict_pb2.PredictRequest(output_filter=["y", "z"])
    request.model_spec.name = "half_plus_two"
    request.model_spec.version.value = 7
    request.model_spec.signature_name = "serving_default"
    for name, tensor in sample_tensors().items():
        request.inputs[name].CopyFrom(tensor)
    theirs = both_ways(request, tfs_predict_pb2.PredictRequest)
    assert theirs.model_spec.WhichOneof("version_choice") == "version"
    assert tf.make_ndarray(theirs.inputs["packed_float"]).tolist() == [[1.5, -2], [3, 4]]
    assert list(theirs.inputs["strings"].string_val) == [b"a", b"\x00\xff"]

    response = predict_pb2.PredictResponse()
    response.model_spec.name = "m"
    response.model_spec.version_label = "canary"
    response.outputs["y"].CopyFrom(sample_tensors()["everything"])
    theirs = both_ways(response, tfs_predict_pb2.PredictResponse)
    assert theirs.model_spec.version_label == "canary"


def test_metadata_request():
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "digits"
    request.model_spec.version_label = "canary"
    theirs = both_ways(request, tfs_get_model_metadata_pb2.GetModelMetadataRequest)
    assert list(theirs.metadata_field) == ["signature_def"]
    assert theirs.model_spec.WhichOneof("version_choice") == "version_label"


def test_unknown_official_fields_survive_a_pass_through_the_gateway():
    official = tfs_predict_pb2.PredictRequest(client_id=b"abc")
    official.request_options.deterministic_mode = 1
    official.inputs["x"].resource_handle_val.add(name="handle")
    ours = predict_pb2.PredictRequest.FromString(official.SerializeToString())
    again = tfs_predict_pb2.PredictRequest.FromString(ours.SerializeToString())
    assert again == official


def test_examples_classify_regress_multi_inference():
    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.extend([1.5, 2.0])
    example.features.feature["n"].int64_list.value.append(-(2**63))
    example.features.feature["s"].bytes_list.value.append(b"\x00img")
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.add().CopyFrom(example)
    both_ways(request, tfs_classification_pb2.ClassificationRequest)

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.input.example_list_with_context.context.CopyFrom(example)
    regress.input.example_list_with_context.examples.add().CopyFrom(example)
    theirs = both_ways(regress, tfs_regression_pb2.RegressionRequest)
    assert theirs.input.WhichOneof("kind") == "example_list_with_context"
    parsed = tf_example_pb2.Example.FromString(example.SerializeToString())
    assert parsed.features.feature["n"].int64_list.value == [-(2**63)]

    response = classification_pb2.ClassificationResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 1
    response.result.classifications.add().classes.add(label="cat", score=0.25)
    both_ways(response, tfs_classification_pb2.ClassificationResponse)
    reg_response = regression_pb2.RegressionResponse()
    reg_response.result.regressions.add(value=2.5)
    both_ways(reg_response, tfs_regression_pb2.RegressionResponse)

    multi = inference_pb2.MultiInferenceRequest()
    multi.tasks.add(method_name="tensorflow/serving/regress").model_spec.name = "m"
    multi.input.example_list.examples.add().CopyFrom(example)
    both_ways(multi, tfs_inference_pb2.MultiInferenceRequest)
    multi_response = inference_pb2.MultiInferenceResponse()
    multi_response.results.add().regression_result.regressions.add(value=1.0)
    both_ways(multi_response, tfs_inference_pb2.MultiInferenceResponse)


def test_model_status():
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "digits"
    request.model_spec.version_label = "stable"
    both_ways(request, tfs_get_model_status_pb2.GetModelStatusRequest)
    response = get_model_status_pb2.GetModelStatusResponse()
    response.model_version_status.add(version=2, state=30)
    failed = response.model_version_status.add(version=1, state=50)
    failed.status.error_code = 13
    failed.status.error_message = "load failed"
    theirs = both_ways(response, tfs_get_model_status_pb2.GetModelStatusResponse)
    assert theirs.model_version_status[1].status.error_code == 13
    # The REST JSON the codec writes equals protobuf's JSON of the official message
    # (MessageToJson with always_print_fields_with_no_presence, as http_rest_api_util.cc does).
    assert codec.status_to_json(response) == json_format.MessageToDict(
        theirs, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


# --- metadata from the real example models -----------------------------------------------------

def official_signature_map(models_root: Path, model: str):
    saved = saved_model_pb2.SavedModel.FromString(
        (models_root / model / "1" / "saved_model.pb").read_bytes())
    sig_map = tfs_get_model_metadata_pb2.SignatureDefMap()
    for name, signature in saved.meta_graphs[0].signature_def.items():
        sig_map.signature_def[name].CopyFrom(signature)
    return sig_map


def official_metadata(models_root: Path, model: str):
    response = tfs_get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = model
    response.model_spec.version.value = 1
    response.metadata["signature_def"].Pack(official_signature_map(models_root, model))
    return response


@pytest.mark.parametrize("model", ["half_plus_two", "digits", "digits_png"])
def test_metadata_with_any_packed_signature_map(models_root, model):
    official = official_metadata(models_root, model)
    ours = get_model_metadata_pb2.GetModelMetadataResponse.FromString(official.SerializeToString())
    assert ours.SerializeToString(deterministic=True) == \
        official.SerializeToString(deterministic=True)
    ours_map = get_model_metadata_pb2.SignatureDefMap()
    assert ours.metadata["signature_def"].Unpack(ours_map)
    official_map = official_signature_map(models_root, model)
    for name, signature in official_map.signature_def.items():
        mine = ours_map.signature_def[name]
        assert mine.method_name == signature.method_name
        for kind in ("inputs", "outputs"):
            for key, info in getattr(signature, kind).items():
                got = getattr(mine, kind)[key]
                assert (got.name, got.dtype, got.tensor_shape.unknown_rank) == \
                    (info.name, info.dtype, info.tensor_shape.unknown_rank)
                assert [d.size for d in got.tensor_shape.dim] == \
                    [d.size for d in info.tensor_shape.dim]
    # The codec's REST JSON equals what TF Serving builds from the official messages.
    expected_sigs = json_format.MessageToDict(official_map, preserving_proto_field_name=True,
                                              always_print_fields_with_no_presence=True)
    got = codec.metadata_to_json(ours)
    assert got["metadata"]["signature_def"] == expected_sigs
    assert got["model_spec"] == {"name": model, "signature_name": "", "version": "1"}
    # And the gateway-built message packs an Any the official side can unpack.
    rebuilt = get_model_metadata_pb2.GetModelMetadataResponse()
    rebuilt.metadata["signature_def"].Pack(ours_map)
    official_back = tfs_get_model_metadata_pb2.GetModelMetadataResponse.FromString(
        rebuilt.SerializeToString())
    unpacked = tfs_get_model_metadata_pb2.SignatureDefMap()
    assert official_back.metadata["signature_def"].Unpack(unpacked)
    assert unpacked == official_map


def test_composite_tensor_signature_metadata():
    """A ragged input's TensorInfo (TypeSpecProto inside) survives and prints as TF's JSON."""
    sig_map = tfs_get_model_metadata_pb2.SignatureDefMap()
    info = sig_map.signature_def["serving_default"].inputs["ragged"]
    info.dtype = tf_types_pb2.DT_FLOAT
    spec = info.composite_tensor.type_spec
    spec.type_spec_class = struct_pb2.TypeSpecProto.RAGGED_TENSOR_SPEC
    spec.type_spec_class_name = "RaggedTensorSpec"
    spec.num_flat_components = 2
    state = spec.type_state.tuple_value.values
    state.add().tensor_shape_value.dim.add(size=-1)
    state.add().tensor_dtype_value = tf_types_pb2.DT_FLOAT
    state.add().int64_value = -1
    state.add().none_value.SetInParent()
    state.add().dict_value.fields["k"].string_value = "v"
    info.composite_tensor.components.add(name="ragged/values:0", dtype=tf_types_pb2.DT_FLOAT)
    info.composite_tensor.components.add(name="ragged/row_splits:0", dtype=tf_types_pb2.DT_INT64)
    official = tfs_get_model_metadata_pb2.GetModelMetadataResponse()
    official.model_spec.name = "ragged"
    official.metadata["signature_def"].Pack(sig_map)

    ours = get_model_metadata_pb2.GetModelMetadataResponse.FromString(official.SerializeToString())
    ours_map = get_model_metadata_pb2.SignatureDefMap()
    assert ours.metadata["signature_def"].Unpack(ours_map)
    assert_same(ours_map, sig_map)
    assert codec.metadata_to_json(ours)["metadata"]["signature_def"] == json_format.MessageToDict(
        sig_map, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    spec = codec.signatures_from_metadata(ours)["serving_default"].inputs["ragged"]
    assert (spec.dtype, spec.shape) == (tf_types_pb2.DT_FLOAT, None)  # no dense shape to check


# --- the codec's tensors, fed to the real models -----------------------------------------------

def gateway_signatures(models_root: Path, model: str) -> dict:
    ours = get_model_metadata_pb2.GetModelMetadataResponse.FromString(
        official_metadata(models_root, model).SerializeToString())
    return codec.signatures_from_metadata(ours)


def official_request(call: codec.PredictCall) -> tfs_predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(inputs=call.inputs)
    request.model_spec.name = "m"
    request.model_spec.signature_name = call.signature_name
    return tfs_predict_pb2.PredictRequest.FromString(request.SerializeToString())


def encode_outputs(outputs: dict, row_format: bool) -> bytes:
    """Model outputs -> official TensorProtos (as TF Serving sends) -> gateway -> JSON text."""
    ours = {}
    for name, value in outputs.items():
        official = tf.make_tensor_proto(value.numpy())
        ours[name] = tensor_pb2.TensorProto.FromString(official.SerializeToString())
    return codec.dumps(codec.encode_predict_response(ours, row_format))


@pytest.fixture(scope="module")
def loaded(models_root):
    cache = {}

    def load(model):
        if model not in cache:
            cache[model] = tf.saved_model.load(str(models_root / model / "1"))
        return cache[model]

    return load


def test_half_plus_two_predict_matches_make_tensor_proto(models_root, loaded):
    signatures = gateway_signatures(models_root, "half_plus_two")
    call = codec.decode_predict_body(codec.parse_json(b'{"instances": [1.0, 2, 5.0]}'),
                                     signatures)
    x = official_request(call).inputs["x"]
    expected = tf.make_tensor_proto(np.array([1.0, 2.0, 5.0], dtype=np.float32))
    assert x.dtype == expected.dtype == tf_types_pb2.DT_FLOAT
    assert x.tensor_shape == expected.tensor_shape
    np.testing.assert_array_equal(tf.make_ndarray(x), tf.make_ndarray(expected))
    assert x.tensor_content == expected.tensor_content

    outputs = loaded("half_plus_two").signatures["serving_default"](x=tf.make_ndarray(x))
    assert encode_outputs(outputs, row_format=True) == b'{"predictions":[2.5,3.0,4.5]}'
    assert encode_outputs(outputs, row_format=False) == b'{"outputs":[2.5,3.0,4.5]}'


def test_typed_output_fields_as_tf_serving_writes_them():
    # TF Serving's default is Tensor::AsProtoField: float_val, not tensor_content.
    official = tf_tensor_pb2.TensorProto(dtype=tf_types_pb2.DT_FLOAT, float_val=[2.5, 3.0, 4.5])
    official.tensor_shape.dim.add(size=3)
    ours = tensor_pb2.TensorProto.FromString(official.SerializeToString())
    assert codec.encode_predict_response({"y": ours}, True) == {"predictions": [2.5, 3.0, 4.5]}


def test_half_plus_two_regress_with_codec_examples(models_root, loaded):
    _, request_input = codec.decode_examples_body(
        {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": 4.0}]}, "regress")
    official = tfs_regression_pb2.RegressionRequest.FromString(
        regression_pb2.RegressionRequest(input=request_input).SerializeToString())
    serialized = [e.SerializeToString() for e in official.input.example_list.examples]
    outputs = loaded("half_plus_two").signatures["regress_x_to_y"](inputs=tf.constant(serialized))
    np.testing.assert_allclose(outputs["outputs"].numpy(), [2.5, 4.0])


def test_digits_multi_output_row_format(models_root, loaded):
    signatures = gateway_signatures(models_root, "digits")
    images = np.arange(2 * 64, dtype=np.float32).reshape(2, 8, 8) % 17
    body = json.dumps({"instances": images.tolist()}).encode()
    call = codec.decode_predict_body(codec.parse_json(body), signatures)
    x = official_request(call).inputs["images"]
    np.testing.assert_array_equal(tf.make_ndarray(x), images)
    outputs = loaded("digits").signatures["serving_default"](images=tf.make_ndarray(x))
    predictions = json.loads(encode_outputs(outputs, row_format=True))["predictions"]
    assert [p["classes"] for p in predictions] == outputs["classes"].numpy().tolist()
    np.testing.assert_allclose([p["probabilities"] for p in predictions],
                               outputs["probabilities"].numpy(), rtol=1e-6)

    # A shape the signature does not declare is the model's to refuse (as in TF Serving); the
    # gateway only keeps a hint for when it does.
    call = codec.decode_predict_body({"instances": [[1.0] * 64]}, signatures)
    assert codec.shape_hint(signatures["serving_default"], call.inputs) == (
        "input images was sent with shape [1,64], the signature declares [-1,8,8] (-1 = any size)")


def test_digits_png_b64_in_and_bytes_out(models_root, loaded):
    from PIL import Image

    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[1:7, 3:5] = 255  # a "1"
    png = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(png, format="PNG")
    body = {"instances": [{"b64": base64.b64encode(png.getvalue()).decode()}]}
    call = codec.decode_predict_body(body, gateway_signatures(models_root, "digits_png"))
    image_bytes = official_request(call).inputs["image_bytes"]
    assert list(image_bytes.string_val) == [png.getvalue()]
    outputs = loaded("digits_png").signatures["serving_default"](
        image_bytes=tf.make_ndarray(image_bytes))
    (prediction,) = json.loads(encode_outputs(outputs, row_format=True))["predictions"]
    assert prediction["label"] in [str(d) for d in range(10)]
    thumbnail = base64.b64decode(prediction["thumbnail_bytes"]["b64"])
    assert Image.open(io.BytesIO(thumbnail)).size == (32, 32)


# --- the gateway's modules never load TensorFlow ------------------------------------------------

def test_gateway_codec_and_protos_import_without_tensorflow():
    modules = [f"tfstack.protocol.{name}" for name in (
        "codec", "dtypes", "json_to_tensor", "tensor_to_json", "examples", "routes", "errors")] + [
        f"tfstack.protocol.proto.{p.stem}" for p in sorted(PROTO_DIR.glob("*_pb2*.py"))]
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tensorflow_serving', 'keras', 'tf_keras'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert len(modules) >= 20
