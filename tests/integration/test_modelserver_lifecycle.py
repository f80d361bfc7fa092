"""Model server lifecycle: version hot-swap under load with no failed request, config reload
(file polling and HandleReloadConfigRequest, good and bad), start-up on a bad config, warmup."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.fixtures.modelserver import start_modelserver

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def model_config(*models: tuple[str, Path]) -> str:
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }}\n'
        for name, path in models
    )
    return "model_config_list {\n" + entries + "}\n"


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def copy_version(src: Path, base: Path, version: int) -> None:
    """Copy a version in under a temporary name, then rename: never a half-written version."""
    staging = base / f".staging-{version}"
    shutil.copytree(src, staging)
    os.rename(staging, base / str(version))


def versions(handle, name: str) -> dict[int, int]:
    with grpc.insecure_channel(handle.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        try:
            response = stub.GetModelStatus(request, timeout=10)
        except grpc.RpcError:
            return {}
    return {s.version: s.state for s in response.model_version_status}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Load:
    """Bounded concurrent Predict traffic (gRPC and REST) on `digits` Latest; records failures."""

    def __init__(self, handle, images: np.ndarray, workers: int = 4, limit_s: float = 90) -> None:
        self.handle, self.images, self.limit = handle, images, limit_s
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[int] = set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._grpc) for _ in range(workers - 1)]
        self.threads.append(threading.Thread(target=self._rest))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _record(self, version: int | None, failure: str | None) -> None:
        with self.lock:
            if failure is None:
                self.ok += 1
                if version is not None:
                    self.versions.add(version)
            else:
                self.failures.append(failure)

    def _grpc(self) -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "digits"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(self.images))
        deadline = time.monotonic() + self.limit
        with grpc.insecure_channel(self.handle.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    response = stub.Predict(request, timeout=10)
                    self._record(response.model_spec.version.value, None)
                except grpc.RpcError as err:
                    self._record(None, f"gRPC {err.code()}: {err.details()}")

    def _rest(self) -> None:
        url = f"{self.handle.rest_url}/v1/models/digits:predict"
        body = {"instances": self.images.tolist()}
        deadline = time.monotonic() + self.limit
        with requests.Session() as http:
            while not self.stop.is_set() and time.monotonic() < deadline:
                resp = http.post(url, json=body, timeout=10)
                self._record(None, None if resp.ok else f"REST {resp.status_code}: {resp.text}")


@pytest.fixture
def digits_images():
    from tfstack.model_repo.data import digits_split

    return digits_split()[1][:2]


def test_version_hot_swap_under_load(tmp_path, served_models_root, digits_images):
    base = tmp_path / "digits"
    base.mkdir()
    copy_version(served_models_root / "digits" / "1", base, 1)
    config = tmp_path / "models.config"
    config.write_text(model_config(("digits", base)))
    handle = start_modelserver(
        tmp_path, config, "--file_system_poll_wait_seconds=1", "--max_num_load_retries=0"
    )
    try:
        with Load(handle, digits_images) as load:
            wait_for(lambda: load.ok >= 20, 30, "traffic on version 1")
            copy_version(served_models_root / "digits" / "2", base, 2)
            # Latest(1): version 2 loads first, then version 1 unloads.
            wait_for(lambda: versions(handle, "digits") == {2: AVAILABLE, 1: END}, 60, "swap")
            seen = load.ok
            wait_for(lambda: load.ok >= seen + 20, 30, "traffic on version 2")
            shutil.rmtree(base / "1")
            copy_version(served_models_root / "digits" / "1", base, 3)
            wait_for(lambda: versions(handle, "digits").get(2) == END, 60, "swap to 3")
            seen = load.ok
            wait_for(lambda: load.ok >= seen + 20, 30, "traffic on version 3")
        assert load.failures == []
        assert load.versions == {1, 2, 3}
        assert versions(handle, "digits") == {3: AVAILABLE, 2: END, 1: END}

        # A version that cannot load ends in END, with its error in the status.
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        copy_version(broken, base, 4)
        wait_for(lambda: versions(handle, "digits").get(4) == END, 60, "failed load")
        status = requests.get(f"{handle.rest_url}/v1/models/digits/versions/4", timeout=10).json()
        (failed,) = status["model_version_status"]
        assert failed["state"] == "END" and failed["status"]["error_code"] != "OK"
        assert failed["status"]["error_message"]
        log = handle.log_text()
        assert "Successfully loaded servable version {name: digits version: 2}" in log
        assert "Done unloading servable version {name: digits version: 1}" in log
    finally:
        handle.stop()


def test_config_file_reload_good_and_bad(tmp_path, served_models_root):
    config = tmp_path / "models.config"
    half = ("half_plus_two", served_models_root / "half_plus_two")
    digits = ("digits", served_models_root / "digits")
    config.write_text(model_config(half))
    handle = start_modelserver(
        tmp_path, config, "--model_config_file_poll_wait_seconds=1", "--max_num_load_retries=0"
    )
    status = f"{handle.rest_url}/v1/models/digits"
    predict = f"{handle.rest_url}/v1/models/half_plus_two:predict"
    try:
        assert requests.get(status, timeout=10).status_code == 404
        write_atomically(config, model_config(half, digits))
        wait_for(lambda: requests.get(status, timeout=10).status_code == 200, 60, "digits added")

        # A file that does not parse: logged, the old config keeps serving.
        write_atomically(config, "model_config_list {\n  config { name: \n")
        handle.wait_for_log("Failed to read ModelServerConfig file: Invalid protobuf file:")
        # A file that parses but is invalid: logged with TF Serving's message, nothing changes.
        write_atomically(config, model_config(half, ("digits", Path("relative/digits"))))
        handle.wait_for_log(
            "PollFilesystemAndReloadConfig failed to ReloadConfig: INVALID_ARGUMENT"
        )
        assert (
            "Expected model digits to have an absolute path or URI; got base_path()="
            "relative/digits" in handle.log_text()
        )
        assert requests.get(status, timeout=10).status_code == 200
        assert requests.post(predict, json={"instances": [2.0]}, timeout=10).json() == {
            "predictions": [3.0]
        }

        # A model dropped from the config is unloaded; its history stays (END).
        write_atomically(config, model_config(half))
        wait_for(lambda: set(versions(handle, "digits").values()) == {END}, 60, "unload")
        resp = requests.post(
            f"{handle.rest_url}/v1/models/digits:predict",
            json={"instances": [[[0.0] * 8] * 8]},
            timeout=10,
        )
        assert resp.status_code == 404
        assert resp.json() == {"error": "Servable not found for request: Latest(digits)"}
    finally:
        handle.stop()


def test_handle_reload_config_request(tmp_path, served_models_root):
    config = tmp_path / "models.config"
    config.write_text(model_config(("half_plus_two", served_models_root / "half_plus_two")))
    handle = start_modelserver(tmp_path, config, "--max_num_load_retries=0")
    try:
        with grpc.insecure_channel(handle.grpc_target) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            request = model_management_pb2.ReloadConfigRequest()
            entry = request.config.model_config_list.config.add(
                name="digits",
                base_path=str(served_models_root / "digits"),
                model_platform="tensorflow",
            )
            entry.model_version_policy.specific.versions.extend([1, 2])
            entry.version_labels["canary"] = 2
            response = stub.HandleReloadConfigRequest(request, timeout=60)
            assert response.status.error_code == 0
            # Synchronous: when it returns, the new model serves (and half_plus_two is gone).
            assert versions(handle, "digits") == {2: AVAILABLE, 1: AVAILABLE}
            assert set(versions(handle, "half_plus_two").values()) == {END}

            bad = model_management_pb2.ReloadConfigRequest()
            bad.config.CopyFrom(request.config)
            bad.config.model_config_list.config.add().CopyFrom(entry)
            with pytest.raises(grpc.RpcError) as info:
                stub.HandleReloadConfigRequest(bad, timeout=60)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == (
                "Illegal to list model digits multiple times in config list"
            )

            label = model_management_pb2.ReloadConfigRequest()
            label.config.CopyFrom(request.config)
            label.config.model_config_list.config[0].version_labels["canary"] = 7
            with pytest.raises(grpc.RpcError) as info:
                stub.HandleReloadConfigRequest(label, timeout=60)
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert info.value.details() == (
                "Request to assign label to version 7 of model digits, which is not currently "
                "available for inference"
            )
        assert versions(handle, "digits") == {2: AVAILABLE, 1: AVAILABLE}
    finally:
        handle.stop()


def _wait_exit(handle, timeout: float = 90) -> int:
    return handle.process.proc.wait(timeout=timeout)


def test_bad_config_at_startup_exits_naming_file_and_line(tmp_path, served_models_root):
    syntax = tmp_path / "syntax.config"
    syntax.write_text('model_config_list {\n  config {\n    name: "x"\n    base_pth: "/m"\n')
    relative = tmp_path / "relative.config"
    relative.write_text(
        model_config(
            ("half_plus_two", served_models_root / "half_plus_two"),
            ("digits", Path("models/digits")),
        )
    )
    labels = tmp_path / "labels.config"
    labels.write_text(
        'model_config_list { config { name: "digits" base_path: "%s" model_platform: '
        '"tensorflow" version_labels { key: "stable" value: 1 } } }\n'
        % (served_models_root / "digits")
    )
    # Started together: each pays TensorFlow's import once, in parallel.
    handles = [start_modelserver(tmp_path, path, wait=False) for path in (syntax, relative, labels)]
    try:
        codes = [_wait_exit(h) for h in handles]
    finally:
        for h in handles:
            h.stop()
    assert codes == [255, 255, 255]
    syntax_log, relative_log, labels_log = (h.log_text() for h in handles)
    assert f"{syntax}:4:" in syntax_log
    assert "Failed to start server. Error:" in syntax_log
    assert f"Invalid protobuf file: '{syntax}'" in syntax_log
    assert f"{relative}:3: Expected model digits to have an absolute path or URI" in relative_log
    # Labels at start-up need --allow_version_labels_for_unavailable_models, as in TF Serving.
    assert (
        "Request to assign label to version 1 of model digits, which is not currently "
        "available for inference"
    ) in labels_log
    for log in (syntax_log, relative_log, labels_log):
        assert "Running gRPC ModelServer" not in log


def test_warmup_replays_the_warmup_file(modelserver, served_models_root):
    log = modelserver.log_text()
    for version in (1, 2):
        path = (
            served_models_root
            / "digits"
            / str(version)
            / "assets.extra"
            / "tf_serving_warmup_requests"
        )
        assert f"Starting to read warmup data for model at {path}" in log
        assert (
            f"Finished reading warmup data for model at {path}. Number of warmup records "
            "read: " in log
        )
    half = served_models_root / "half_plus_two" / "1" / "assets.extra"
    assert f"No warmup data file found at {half}" in log
    # The ports open only after the initial load (and its warmup), with TF Serving's log lines.
    assert log.index("Finished reading warmup data") < log.index(
        f"Running gRPC ModelServer at 127.0.0.1:{modelserver.grpc_port} ..."
    )
    assert f"Exporting HTTP/REST API at:localhost:{modelserver.rest_port} ..." in log
