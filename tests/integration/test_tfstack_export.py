"""`tfstack export`: small Keras models made here (random weights, nothing downloaded) are exported,
served by the local model server behind the gateway, and answer what Keras answers.

Covered: a Sequential `.keras`, a functional model with two named inputs and two outputs, a string
input through `StringLookup`, a legacy `.h5`, a SavedModel written by `tf.saved_model.save` (the
kind TF Serving cannot load, keras#19274), and a custom layer that needs `--custom-objects`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tfstack import cli
from tfstack.cli import repo

REPO = Path(__file__).resolve().parents[2]
TESTDATA = Path(
    os.environ.get("TFSTACK_TFSERVING_TESTDATA")
    or REPO.parent / "shared" / "testdata" / "tfserving"
)

CUSTOM_MODULE = """
import keras


class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
"""


def _models(folder: Path) -> dict[str, Path]:
    """Save the test models into `folder`; name -> saved file or folder."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    paths = {}
    seq = keras.Sequential(
        [
            keras.Input(shape=(4,), name="features"),
            keras.layers.Dense(3, activation="relu"),
            keras.layers.Dense(2, activation="softmax", name="probabilities"),
        ]
    )
    paths["seq"] = folder / "seq.keras"
    seq.save(paths["seq"])

    age = keras.Input(shape=(1,), name="age")
    history = keras.Input(shape=(3,), name="history")
    joined = keras.layers.Concatenate()([age, history])
    churn = keras.layers.Dense(1, activation="sigmoid", name="churn")(joined)
    spend = keras.layers.Dense(1, name="spend")(joined)
    paths["two_inputs"] = folder / "two_inputs.keras"
    keras.Model({"age": age, "history": history}, [churn, spend]).save(paths["two_inputs"])

    city = keras.Input(shape=(1,), dtype="string", name="city")
    ids = keras.layers.StringLookup(vocabulary=["paris", "tokyo", "lima"])(city)
    embedded = keras.layers.Flatten()(keras.layers.Embedding(4, 2)(ids))
    paths["text"] = folder / "text.keras"
    keras.Model(city, keras.layers.Dense(1, name="score")(embedded)).save(paths["text"])

    legacy = keras.Sequential([keras.Input(shape=(3,), name="x"), keras.layers.Dense(2)])
    paths["legacy"] = folder / "legacy.h5"
    legacy.save(paths["legacy"])

    # tf.saved_model.save of a module holding a Keras 3 model: loads in eager TF, not in TF Serving.
    module = tf.Module()
    module.model = seq
    module.serve = tf.function(
        lambda features: {"probabilities": seq(features)},
        input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")],
    )
    paths["saved"] = folder / "saved"
    tf.saved_model.save(module, str(paths["saved"]), signatures={"serving_default": module.serve})
    return paths


def _export(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["export", *map(str, argv)])
    return code, out.getvalue(), err.getvalue()


def _body(stdout: str) -> dict:
    return json.loads(re.search(r"-d '(.*)'$", stdout, re.MULTILINE).group(1))


def _keras_answer(path: Path, body: dict):
    """The source model's own predictions for a TF Serving row-format body, as JSON would hold."""
    import keras
    import tensorflow as tf

    instances = body["instances"]
    if path.is_dir():
        function = tf.saved_model.load(str(path)).signatures["serving_default"]
        result = function(features=tf.constant(instances, tf.float32))
        return [{k: v.numpy()[0].tolist() for k, v in result.items()}["probabilities"]]
    model = keras.saving.load_model(path, compile=False)
    if isinstance(instances[0], dict):
        inputs = {k: np.array([row[k] for row in instances]) for k in instances[0]}
        outputs = model({k: v.astype(np.float32) for k, v in inputs.items()}, training=False)
        return [
            dict(zip(model.output_names, (np.asarray(o)[i].tolist() for o in outputs), strict=True))
            for i in range(len(instances))
        ]
    values = np.array(instances, dtype=object if isinstance(instances[0][0], str) else np.float32)
    return np.asarray(model(values, training=False)).tolist()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every model exported into one models folder: name -> (source, stdout)."""
    folder = tmp_path_factory.mktemp("keras")
    out = folder / "models"
    results = {}
    for name, source in _models(folder).items():
        code, stdout, stderr = _export(source, "--name", name, "--out", out)
        assert code == 0, stderr
        results[name] = (source, stdout)
    return out, results


def test_export_prints_the_signature_the_check_and_a_curl(exported):
    out, results = exported
    _, stdout = results["two_inputs"]
    assert f"to {out / 'two_inputs' / '1'}" in stdout
    assert "signature serving_default (tensorflow/serving/predict)" in stdout
    assert "    age: float [-1, 1]\n    history: float [-1, 3]\n" in stdout
    assert "    churn: float [-1, 1]\n    spend: float [-1, 1]\n" in stdout
    assert "matches the model's own output" in stdout
    assert f"tfstack up --models {out}" in stdout
    assert "    city: string [-1, 1]" in results["text"][1]
    assert "    features: float [-1, 4]" in results["saved"][1]
    # The Keras model TF Serving cannot load (keras#19274) was re-exported, not kept.
    assert results["saved"][1].startswith(f"exported {results['saved'][0]} (SavedModel)")
    assert (out / "seq" / "1" / "saved_model.pb").is_file()
    assert not list(out.glob("*/.tfstack-export-*")), "staging folders left behind"


@pytest.mark.parametrize(
    "folder", ["saved_model_half_plus_two_cpu", "saved_model_half_plus_two_tf2_cpu"]
)
def test_a_savedmodel_tf_serving_loads_is_kept_as_it_is(tmp_path, folder):
    # TF Serving's own test models: a TF1 export (its variables are not TF2 objects: re-exporting
    # it fails) and a TF2 one. Both load in TF Serving as they are, every signature included.
    source = TESTDATA / folder / "00000123"
    if not source.is_dir():
        pytest.fail(
            f"TF Serving's test models are missing from {TESTDATA} (CI keeps ../shared "
            "beside the clone; elsewhere set TFSTACK_TFSERVING_TESTDATA)",
            pytrace=False,
        )
    code, stdout, stderr = _export(source, "--name", "half", "--out", tmp_path / "models")
    assert code == 0, stderr
    dest = tmp_path / "models" / "half" / "1"
    assert stdout.startswith(f"copied {source} (SavedModel) to {dest} as it is")
    for path in source.rglob("*"):
        if path.is_file():
            assert (dest / path.relative_to(source)).read_bytes() == path.read_bytes(), path
    body = _body(stdout)
    printed = json.loads(re.search(r"answers \(as the model did here\): (.*)$", stdout, re.M)[1])
    assert _flat(printed["predictions"]) == [0.5 * x + 2 for x in _flat(body["instances"])]


def test_exported_models_answer_through_the_gateway_as_keras_does(exported, tmp_path):
    from tests.fixtures.gateway import start_gateway
    from tests.fixtures.modelserver import start_modelserver

    out, results = exported
    config = repo.write_checked(repo.folder_config(out), tmp_path / "models.config", "test")
    assert set(config.models) == set(results)
    server = start_modelserver(tmp_path, config.config_path, "--max_num_load_retries=0")
    try:
        gateway = start_gateway(tmp_path, [server.grpc_target])
        try:
            for name, (source, stdout) in results.items():
                body = _body(stdout)
                request = urllib.request.Request(
                    f"{gateway.url}/v1/models/{name}:predict", data=json.dumps(body).encode()
                )
                with urllib.request.urlopen(request, timeout=30) as resp:
                    answer = json.load(resp)["predictions"]
                want = _keras_answer(source, body)
                assert _flat(want), name
                np.testing.assert_allclose(
                    _flat(answer), _flat(want), rtol=1e-5, atol=1e-6, err_msg=name
                )
                printed = re.search(r"answers \(as the model did here\): (.*)$", stdout, re.M)
                np.testing.assert_allclose(
                    _flat(answer), _flat(json.loads(printed.group(1))["predictions"]), rtol=1e-5
                )
        finally:
            gateway.stop()
    finally:
        server.stop()


def _flat(predictions) -> list[float]:
    if isinstance(predictions, dict):
        return [x for key in sorted(predictions) for x in _flat(predictions[key])]
    if isinstance(predictions, list):
        return [x for item in predictions for x in _flat(item)]
    return [float(predictions)]


def test_a_custom_layer_is_named_with_how_to_supply_it(tmp_path, monkeypatch):
    import keras

    (tmp_path / "my_layers.py").write_text(textwrap.dedent(CUSTOM_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_layers

    model = keras.Sequential([keras.Input(shape=(2,), name="x"), my_layers.Scale(3.0)])
    model.save(tmp_path / "custom.keras")
    monkeypatch.delitem(sys.modules, "my_layers")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    monkeypatch.chdir(tmp_path.parent)

    code, stdout, stderr = _export(tmp_path / "custom.keras", "--name", "c", "--out", tmp_path)
    assert code == 1 and not stdout
    assert "uses 'Scale', a custom object Keras cannot find" in stderr
    assert "--custom-objects MODULE:Scale" in stderr
    assert not (tmp_path / "c" / "1").exists()

    monkeypatch.chdir(tmp_path)  # the module is importable from the current folder
    code, stdout, stderr = _export(
        "custom.keras", "--name", "c", "--out", "models", "--custom-objects", "my_layers:Scale"
    )
    assert code == 0, stderr
    assert _body(stdout) and (tmp_path / "models" / "c" / "1" / "saved_model.pb").is_file()
    code, _, stderr = _export("custom.keras", "--name", "c", "--out", "models", "--version", "1")
    assert (
        code == 1 and "models/c/1 already exists; choose another --version or add --force" in stderr
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nowhere.keras"], "nowhere.keras: no such file or folder"),
        (["model.pkl"], "expected a Keras 3 .keras file, a legacy .h5 file or a SavedModel"),
        (["--custom-objects", "nomodule_xyz:Thing", "model.pkl"], "cannot import nomodule_xyz"),
    ],
)
def test_bad_arguments_are_explained(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.pkl").write_bytes(b"not a model")
    code, _, stderr = _export(*argv, "--name", "m")
    assert code == 1 and message in stderr
