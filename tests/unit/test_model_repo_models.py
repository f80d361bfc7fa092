"""The built example models: the signatures the brief fixes, and answers that are right."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from tfstack.model_repo import build
from tfstack.model_repo.data import digits_split, to_png, to_uint8

PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
F, S, I64 = tf.float32.as_datatype_enum, tf.string.as_datatype_enum, tf.int64.as_datatype_enum

# The contract in the brief: (model, version, signature) -> method, {input: (dtype, shape)},
# {output: (dtype, shape)}.
CONTRACT = {
    ("half_plus_two", 1, "serving_default"): (PREDICT, {"x": (F, [-1])}, {"y": (F, [-1])}),
    ("half_plus_two", 1, "regress_x_to_y"): (
        REGRESS,
        {"inputs": (S, [-1])},
        {"outputs": (F, [-1])},
    ),
    ("half_plus_two", 1, "classify_x_to_y"): (
        CLASSIFY,
        {"inputs": (S, [-1])},
        {"scores": (F, [-1, 1])},
    ),
    **{
        ("digits", v, "serving_default"): (
            PREDICT,
            {"images": (F, [-1, 8, 8])},
            {"probabilities": (F, [-1, 10]), "classes": (I64, [-1])},
        )
        for v in (1, 2)
    },
    ("digits_png", 1, "serving_default"): (
        PREDICT,
        {"image_bytes": (S, [-1])},
        {"label": (S, [-1]), "score": (F, [-1]), "thumbnail_bytes": (S, [-1])},
    ),
}


@pytest.fixture(scope="module")
def load(models_root):
    cache: dict[tuple[str, int], object] = {}

    def loader(name: str, version: int):
        if (name, version) not in cache:
            cache[name, version] = tf.saved_model.load(str(models_root / name / str(version)))
        return cache[name, version]

    return loader


@pytest.fixture(scope="module")
def test_split():
    _, x_test, _, y_test = digits_split()
    return x_test, y_test


def _tensors(infos) -> dict[str, tuple[int, list[int]]]:
    return {k: (v.dtype, [d.size for d in v.tensor_shape.dim]) for k, v in infos.items()}


@pytest.mark.parametrize(("model", "version", "signature"), list(CONTRACT), ids=str)
def test_signature_matches_contract(models_root, model, version, signature):
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((models_root / model / str(version) / "saved_model.pb").read_bytes())
    (graph,) = [g for g in saved.meta_graphs if "serve" in g.meta_info_def.tags]
    sig = graph.signature_def[signature]
    method, inputs, outputs = CONTRACT[model, version, signature]
    assert sig.method_name == method
    assert _tensors(sig.inputs) == inputs
    assert _tensors(sig.outputs) == outputs


def test_every_model_version_is_small_and_in_tf_serving_layout(models_root):
    for name, versions in build.MODELS.items():
        for version in versions:
            folder = models_root / name / str(version)
            assert (folder / "saved_model.pb").is_file()
            assert (folder / "variables" / "variables.index").is_file()
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            assert size < 1_000_000, f"{folder} is {size} bytes"


def _example(x: float) -> bytes:
    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[x]))
    return tf.train.Example(features=tf.train.Features(feature={"x": feature})).SerializeToString()


def test_half_plus_two_predict_regress_classify_exact(load):
    model = load("half_plus_two", 1)
    xs = [0.0, 1.0, 2.0, 5.0, -4.0]
    want = np.array([0.5 * x + 2 for x in xs], dtype=np.float32)
    y = model.signatures["serving_default"](x=tf.constant(xs))["y"].numpy()
    np.testing.assert_array_equal(y, want)
    examples = tf.constant([_example(x) for x in xs])
    outputs = model.signatures["regress_x_to_y"](inputs=examples)["outputs"].numpy()
    np.testing.assert_array_equal(outputs, want)
    scores = model.signatures["classify_x_to_y"](inputs=examples)["scores"].numpy()
    np.testing.assert_array_equal(scores, want.reshape(-1, 1))


@pytest.mark.parametrize("version", [1, 2])
def test_digits_classifies_held_out_images(load, test_split, version):
    x_test, y_test = test_split
    out = load("digits", version).signatures["serving_default"](images=tf.constant(x_test))
    probabilities, classes = out["probabilities"].numpy(), out["classes"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(classes, probabilities.argmax(axis=1))
    accuracy = float(np.mean(classes == y_test))
    assert accuracy > 0.9, f"digits v{version} held-out accuracy {accuracy:.3f}"


def test_digits_versions_are_different_models(load, test_split):
    x_test, _ = test_split
    images = tf.constant(x_test)
    p1 = load("digits", 1).signatures["serving_default"](images=images)["probabilities"].numpy()
    p2 = load("digits", 2).signatures["serving_default"](images=images)["probabilities"].numpy()
    assert np.abs(p1 - p2).max() > 0.05


def test_digits_png_label_matches_digits_for_the_same_image(load, test_split):
    x_test, _ = test_split
    images = x_test[:40]
    pngs = tf.constant([to_png(image) for image in images])
    out = load("digits_png", 1).signatures["serving_default"](image_bytes=pngs)
    # The PNG holds 0..255; the model maps it back to sklearn's 0..16 scale.
    seen = to_uint8(images).astype(np.float32) * np.float32(16.0 / 255.0)
    digits = load("digits", 1).signatures["serving_default"](images=tf.constant(seen))
    want = [str(c).encode() for c in digits["classes"].numpy()]
    assert list(out["label"].numpy()) == want
    np.testing.assert_allclose(
        out["score"].numpy(), digits["probabilities"].numpy().max(axis=1), rtol=1e-5
    )


def test_digits_png_thumbnail_is_the_digit_at_32x32(load, test_split):
    image = test_split[0][0]
    out = load("digits_png", 1).signatures["serving_default"](
        image_bytes=tf.constant([to_png(image)])
    )
    thumbnail = Image.open(io.BytesIO(out["thumbnail_bytes"].numpy()[0]))
    assert (thumbnail.format, thumbnail.size, thumbnail.mode) == ("PNG", (32, 32), "L")
    np.testing.assert_array_equal(
        np.asarray(thumbnail), np.kron(to_uint8(image), np.ones((4, 4), np.uint8))
    )


def test_digits_png_rejects_an_image_that_is_not_8x8(load):
    buf = io.BytesIO()
    Image.new("L", (16, 16)).save(buf, format="PNG")
    with pytest.raises(tf.errors.InvalidArgumentError):
        load("digits_png", 1).signatures["serving_default"](
            image_bytes=tf.constant([buf.getvalue()])
        )


@pytest.mark.parametrize("version", [1, 2])
def test_digits_warmup_requests_are_valid_predict_requests(models_root, load, version):
    path = models_root / "digits" / str(version) / "assets.extra" / "tf_serving_warmup_requests"
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert 1 <= len(records) <= 1000  # TF Serving reads at most 1000 records
    serve = load("digits", version).signatures["serving_default"]
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert set(request.inputs) == {"images"}
        images = tf.make_ndarray(request.inputs["images"])
        assert images.dtype == np.float32 and images.shape[1:] == (8, 8)
        assert serve(images=tf.constant(images))["classes"].shape == (images.shape[0],)


# --- loaded the way TF Serving loads them ---------------------------------------------------------
# TF Serving's C++ loader works in graph mode: import the MetaGraph into a Session, run the saver's
# restore op and the init op, then run a signature's tensors by name. A SavedModel can load with
# `tf.saved_model.load` and still fail there (`FAILED_PRECONDITION: Could not find variable ...`,
# the Keras 3 + `tf.saved_model.save(tf.Module)` export), so every version is loaded this way too.


class GraphServable:
    def __init__(self, path) -> None:
        graph = tf.Graph()
        with graph.as_default():
            self.session = tf.compat.v1.Session(graph=graph)
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        self.signatures = {
            name: sig for name, sig in meta.signature_def.items() if name != "__saved_model_init_op"
        }

    def run(self, signature: str, **inputs) -> dict[str, np.ndarray]:
        sig = self.signatures[signature]
        fetches = {alias: info.name for alias, info in sig.outputs.items()}
        feeds = {sig.inputs[alias].name: value for alias, value in inputs.items()}
        return self.session.run(fetches, feeds)


@pytest.fixture(scope="module")
def graph_load(models_root):
    cache: dict[tuple[str, int], GraphServable] = {}

    def loader(name: str, version: int) -> GraphServable:
        if (name, version) not in cache:
            cache[name, version] = GraphServable(models_root / name / str(version))
        return cache[name, version]

    yield loader
    for servable in cache.values():
        servable.session.close()


def test_contract_covers_every_built_version_and_signature(graph_load):
    built = {(name, v) for name, versions in build.MODELS.items() for v in versions}
    assert {(m, v) for m, v, _ in CONTRACT} == built
    for name, version in built:
        want = {s for m, v, s in CONTRACT if (m, v) == (name, version)}
        assert set(graph_load(name, version).signatures) == want, (name, version)


def test_graph_loaded_half_plus_two_answers_every_signature_exactly(graph_load):
    servable = graph_load("half_plus_two", 1)
    xs = np.array([0.0, 1.0, 2.0, 5.0, -4.0], np.float32)
    want = 0.5 * xs + 2
    np.testing.assert_array_equal(servable.run("serving_default", x=xs)["y"], want)
    examples = np.array([_example(float(x)) for x in xs], dtype=object)
    outputs = servable.run("regress_x_to_y", inputs=examples)["outputs"]
    np.testing.assert_array_equal(outputs, want)
    scores = servable.run("classify_x_to_y", inputs=examples)["scores"]
    np.testing.assert_array_equal(scores, want.reshape(-1, 1))


@pytest.mark.parametrize("version", [1, 2])
def test_graph_loaded_digits_classifies_held_out_images(graph_load, load, test_split, version):
    x_test, y_test = test_split  # the whole held-out set (450 images; a batch of a few is noisy)
    out = graph_load("digits", version).run("serving_default", images=x_test)
    probabilities, classes = out["probabilities"], out["classes"]
    assert (probabilities.dtype, probabilities.shape) == (np.float32, (len(x_test), 10))
    assert (classes.dtype, classes.shape) == (np.int64, (len(x_test),))
    np.testing.assert_array_equal(classes, probabilities.argmax(axis=1))
    accuracy = float(np.mean(classes == y_test))
    assert accuracy > 0.9, f"digits v{version} held-out accuracy {accuracy:.3f}"
    # The same weights as the TF2 loader restores (not freshly initialised ones).
    eager = load("digits", version).signatures["serving_default"](images=tf.constant(x_test))
    np.testing.assert_allclose(probabilities, eager["probabilities"].numpy(), rtol=1e-5, atol=1e-6)


def test_graph_loaded_digits_png_label_matches_digits_v1(graph_load, test_split):
    images = test_split[0][:30]
    pngs = np.array([to_png(image) for image in images], dtype=object)
    out = graph_load("digits_png", 1).run("serving_default", image_bytes=pngs)
    seen = to_uint8(images).astype(np.float32) * np.float32(16.0 / 255.0)
    digits = graph_load("digits", 1).run("serving_default", images=seen)
    assert list(out["label"]) == [str(c).encode() for c in digits["classes"]]
    np.testing.assert_allclose(out["score"], digits["probabilities"].max(axis=1), rtol=1e-5)
    thumbnail = Image.open(io.BytesIO(out["thumbnail_bytes"][0]))
    assert (thumbnail.format, thumbnail.size) == ("PNG", (32, 32))
    np.testing.assert_array_equal(
        np.asarray(thumbnail), np.kron(to_uint8(images[0]), np.ones((4, 4), np.uint8))
    )


def test_build_skips_up_to_date_models_without_importing_tensorflow(models_root):
    code = (
        "import sys; from pathlib import Path; from tfstack.model_repo import build; "
        f"assert build.build(Path({str(models_root)!r})) == []; "
        "print('tensorflow imported:', 'tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [f"skip   {n}" for n in build.MODELS]
    assert lines[-1] == "tensorflow imported: False"


def test_build_only_checks_the_models_asked_for(models_root):
    logged: list[str] = []
    assert build.build(models_root, log=logged.append, only=["digits"]) == []
    assert [line.split(":")[0] for line in logged] == ["skip   digits"]


def test_stamp_notices_changed_parameters_and_missing_versions(models_root, monkeypatch):
    assert build.stale_models(models_root) == []
    monkeypatch.setitem(build.MODELS["digits"], 2, {"seed": 3, "epochs": 30, "hidden": 64})
    # digits_png reuses digits v1, so only digits is stale
    assert build.stale_models(models_root) == ["digits"]
    monkeypatch.setitem(build.MODELS["digits"], 1, {"seed": 9, "epochs": 1, "hidden": 8})
    assert build.stale_models(models_root) == ["digits", "digits_png"]
    monkeypatch.setitem(build.MODELS["half_plus_two"], 2, {})
    assert "half_plus_two" in build.stale_models(models_root)  # version 2 is not on disk


@pytest.mark.slow
def test_build_is_deterministic(models_root, tmp_path):
    """A fresh build (another process, another folder) gives byte-identical trained weights."""
    result = subprocess.run(
        [sys.executable, "-m", "tfstack.model_repo.build", "--out", str(tmp_path),
         "--only", "digits"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test accuracy" in result.stdout
    weights = "variables/variables.data-00000-of-00001"
    for version in build.MODELS["digits"]:
        fresh = (tmp_path / "digits" / str(version) / weights).read_bytes()
        assert fresh == (models_root / "digits" / str(version) / weights).read_bytes(), version
    warmup = "digits/1/assets.extra/tf_serving_warmup_requests"
    assert (tmp_path / warmup).read_bytes() == (models_root / warmup).read_bytes()
