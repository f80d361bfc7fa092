"""Model warmup (`saved_model_warmup_util.cc`): replay `assets.extra/tf_serving_warmup_requests`
(a TFRecord of PredictionLogs) against a version before it becomes AVAILABLE. A bad file fails
that version's load, as in TF Serving."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

from tfstack.modelserver.errors import ServingError, from_tf_error, invalid_argument, unimplemented
from tfstack.modelserver.inference import Inference
from tfstack.modelserver.servable import Servable

log = logging.getLogger("tfstack.modelserver.warmup")

REQUESTS_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000


def make_warmup(core: Inference, iterations: int) -> Callable[[Servable], None]:
    iterations = max(iterations, 1)

    def warmup(servable: Servable) -> None:
        path = servable.path / "assets.extra" / REQUESTS_FILE
        if not path.exists():
            log.info("No warmup data file found at %s", path)
            return
        started = time.monotonic()
        log.info(
            "Starting to read warmup data for model at %s with model-warmup-options "
            "num_request_iterations: %d",
            path,
            iterations,
        )
        count, status = 0, "OK"
        try:
            try:
                records = list(tf.compat.v1.io.tf_record_iterator(str(path)))
            except tf.errors.OpError as err:
                raise from_tf_error(err) from None
            if len(records) > MAX_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
                )
            for raw in records:
                _replay(core, servable, raw, iterations)
                count += 1
        except ServingError as err:
            status = err.code_name
            raise
        finally:
            elapsed = (time.monotonic() - started) * 1e6
            core.metrics.warmup_latency.observe(elapsed, str(servable.path), status)
            core.metrics.warmup_records_read.inc(str(servable.path), status, amount=count)
        log.info(
            "Finished reading warmup data for model at %s. Number of warmup records read: "
            "%d. Elapsed time (microseconds): %d.",
            path,
            count,
            elapsed,
        )

    return warmup


def _replay(core: Inference, servable: Servable, raw: bytes, iterations: int) -> None:
    record = prediction_log_pb2.PredictionLog()
    try:
        record.ParseFromString(raw)
    except DecodeError as err:
        raise invalid_argument(f"Failed to parse warmup record: {err}") from None
    kind = record.WhichOneof("log_type")
    handlers = {
        "predict_log": lambda: core.predict_on(servable, record.predict_log.request, False),
        "classify_log": lambda: core.classify_on(servable, record.classify_log.request),
        "regress_log": lambda: core.regress_on(servable, record.regress_log.request),
        "multi_inference_log": lambda: core.multi_inference_on(
            servable, record.multi_inference_log.request
        ),
    }
    if kind not in handlers:
        raise unimplemented(f"Unsupported log_type for warmup: {kind}")
    for _ in range(iterations):
        handlers[kind]()
