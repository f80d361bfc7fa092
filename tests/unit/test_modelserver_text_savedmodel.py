"""A SavedModel written as text (saved_model.pbtxt, no saved_model.pb) loads and serves, as in TF
Serving (TF's ReadSavedModel takes the binary file first, else the text one)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow.core.protobuf import config_pb2, saved_model_pb2

from tfstack.cli import repo
from tfstack.modelserver.errors import ServingError
from tfstack.modelserver.servable import load_servable

REPO = Path(__file__).resolve().parents[2]
TESTDATA = Path(
    os.environ.get("TFSTACK_TFSERVING_TESTDATA")
    or REPO.parent / "shared" / "testdata" / "tfserving"
)


@pytest.fixture
def text_model(tmp_path) -> Path:
    """TF Serving's TF1 test model (0.5 * x + 2) with its graph as saved_model.pbtxt."""
    source = TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"
    if not source.is_dir():
        pytest.fail(
            f"TF Serving's test models are missing from {TESTDATA} (CI keeps ../shared "
            "beside the clone; elsewhere set TFSTACK_TFSERVING_TESTDATA)",
            pytrace=False,
        )
    dest = tmp_path / "models" / "half" / "1"
    shutil.copytree(source, dest)
    saved = saved_model_pb2.SavedModel.FromString((dest / "saved_model.pb").read_bytes())
    (dest / "saved_model.pbtxt").write_text(text_format.MessageToString(saved))
    (dest / "saved_model.pb").unlink()
    return dest


def test_a_text_savedmodel_serves(text_model):
    servable = load_servable("half", 1, text_model, config_pb2.ConfigProto(), ["serve"])
    try:
        outputs = servable.run(
            servable.prepare_predict("serving_default", {"x": np.array([[1.0], [3.0]], np.float32)})
        )
    finally:
        servable.close()
    np.testing.assert_array_equal(outputs["y"], [[2.5], [3.5]])
    # `tfstack up --models` takes such a version folder as a version too.
    assert repo.scan_models(text_model.parent.parent) == {"half": [1]}


def test_an_unreadable_text_savedmodel_is_named(text_model):
    (text_model / "saved_model.pbtxt").write_text("meta_graphs { nonsense")
    with pytest.raises(ServingError) as caught:
        load_servable("half", 1, text_model, config_pb2.ConfigProto(), ["serve"])
    assert f"{text_model}/saved_model.pbtxt" in caught.value.message
