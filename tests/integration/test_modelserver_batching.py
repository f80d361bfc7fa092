"""Server-side batching (`--enable_batching`): concurrent Predicts merge into one run, results
equal the unbatched ones, batch sizes show in the metrics, a full queue answers UNAVAILABLE.
The last test drains this module's server with SIGTERM while a request is still queued."""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.fixtures.modelserver import MONITORING_CONFIG, start_modelserver
from tfstack.model_repo.data import digits_split

# A batch runs when it holds 4 rows, or after 2 s: timing-independent tests below rely on that.
BATCHING = """
max_batch_size { value: 4 }
batch_timeout_micros { value: 2000000 }
max_enqueued_batches { value: 1 }
num_batch_threads { value: 1 }
"""


@pytest.fixture(scope="module")
def batching_server(served_models_config, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batching")
    params = tmp / "batching.txt"
    params.write_text(BATCHING)
    handle = start_modelserver(
        tmp,
        served_models_config,
        "--enable_batching",
        f"--batching_parameters_file={params}",
        f"--monitoring_config_file={MONITORING_CONFIG}",
        "--allow_version_labels_for_unavailable_models",
        "--max_num_load_retries=0",
    )
    yield handle
    handle.stop()


def stub_for(target: str):
    channel = grpc.insecure_channel(target)
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def digits_request(images: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.version.value = 1
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images.astype(np.float32)))
    return request


def probabilities(response) -> np.ndarray:
    return tf.make_ndarray(response.outputs["probabilities"])


def enqueued_tasks(handle) -> int:
    """Tasks the batch scheduler has accepted so far (input_batch_size observations)."""
    text = requests.get(handle.metrics_url, timeout=20).text
    name = ":tensorflow:serving:batching_session:input_batch_size_count"
    return int(re.search(rf"^{name}\{{\}} (\d+)", text, re.M).group(1))


def submit_and_wait_queued(handle, stub, request):
    """Send `request` asynchronously and return once it sits in the batch queue."""
    before = enqueued_tasks(handle)
    future = stub.Predict.future(request, timeout=30)
    deadline = time.monotonic() + 20
    while enqueued_tasks(handle) == before:
        assert time.monotonic() < deadline, "request never reached the batch queue"
        time.sleep(0.05)
    return future


def test_batched_results_equal_unbatched(batching_server, modelserver):
    _, x_test, _, _ = digits_split()
    rows = [x_test[i : i + 1] for i in range(4)]
    channel, stub = stub_for(modelserver.grpc_target)
    with channel:
        expected = [probabilities(stub.Predict(digits_request(r), timeout=20)) for r in rows]
    channel, stub = stub_for(batching_server.grpc_target)
    with channel, ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        got = list(
            pool.map(lambda r: probabilities(stub.Predict(digits_request(r), timeout=20)), rows)
        )
        elapsed = time.monotonic() - started
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)
    # Four one-row tasks fill a batch of 4, which runs at once rather than after the 2 s timeout.
    assert elapsed < 1.9

    text = requests.get(batching_server.metrics_url, timeout=20).text
    name = ":tensorflow:serving:batching_session:processed_batch_size"
    # TF's histograms put a value in the first bucket whose limit is *above* it: 4 is in le="8".
    le4 = int(re.search(rf'^{name}_bucket\{{le="4"\}} (\d+)', text, re.M).group(1))
    le8 = int(re.search(rf'^{name}_bucket\{{le="8"\}} (\d+)', text, re.M).group(1))
    assert le8 - le4 >= 1  # a batch of 4 ran
    assert re.search(
        r"^:tensorflow:serving:batching_session:input_batch_size_count\{\} [4-9]", text, re.M
    )
    assert (
        ':tensorflow:serving:batching_session:queuing_latency_count{thread_pool_name="'
        'model_server_batch_threads"}' in text
    )


def test_full_queue_is_unavailable_and_oversized_task_invalid(batching_server):
    _, x_test, _, _ = digits_split()
    channel, stub = stub_for(batching_server.grpc_target)
    with channel:
        # 3 rows wait in the only batch allowed (not full, 2 s timeout); 3 more need a new batch.
        waiting = stub.Predict.future(digits_request(x_test[:3]), timeout=20)
        time.sleep(
            0.3
        )  # let the first task reach the queue (a race only makes this test pass late)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(digits_request(x_test[3:6]), timeout=20)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.value.details() == (
            "The batch scheduling queue to which this task was submitted is full"
        )
        assert probabilities(waiting.result()).shape == (3, 10)

        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(digits_request(x_test[:5]), timeout=20)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "Task size 5 is larger than maximum input batch size 4"


def test_sigterm_finishes_in_flight_then_exits_zero(batching_server):
    """Runs last in this module: it stops the module's server."""
    _, x_test, _, _ = digits_split()
    channel, stub = stub_for(batching_server.grpc_target)
    with channel:
        # Queued: it waits out the 2 s batch timeout, so it is in flight when SIGTERM comes.
        in_flight = submit_and_wait_queued(batching_server, stub, digits_request(x_test[:1]))
        batching_server.process.signal(signal.SIGTERM)
        assert probabilities(in_flight.result()).shape == (1, 10)
    assert batching_server.process.proc.wait(timeout=30) == 0
    assert "Shutting down" in batching_server.log_text()
