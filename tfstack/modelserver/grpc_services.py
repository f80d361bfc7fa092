"""gRPC PredictionService and ModelService on TF Serving's official generated base classes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures

import grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from tfstack.modelserver.errors import ServingError
from tfstack.modelserver.inference import Inference
from tfstack.modelserver.metrics import Counter

log = logging.getLogger("modelserver.grpc")

MAX_MESSAGE_BYTES = 2**31 - 1  # builder.SetMaxMessageSize(INT32_MAX) in server.cc
MAX_ERROR_CHARS = 1024


def _abort(context: grpc.ServicerContext, err: ServingError) -> None:
    message = err.message
    if len(message) > MAX_ERROR_CHARS:  # grpc_status_util.cc
        message = message[:MAX_ERROR_CHARS] + "...TRUNCATED"
    context.abort(err.code, message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: Inference) -> None:
        self._core = core

    def _call(self, api: str | None, method: Callable, request, context):
        """Run one RPC; count it (request_count, request_latency) the way TF Serving does."""
        metrics = self._core.metrics
        started = time.monotonic()
        try:
            response = method(request)
        except ServingError as err:
            if api is not None:
                metrics.request_count.inc(request.model_spec.name, err.code_name)
            _abort(context, err)
        except Exception as err:  # noqa: BLE001 (the client gets INTERNAL, the log the trace)
            log.exception("%s failed", api or type(request).__name__)
            _abort(context, ServingError(grpc.StatusCode.INTERNAL, str(err)))
        if api is not None:
            name = request.model_spec.name
            metrics.request_count.inc(name, "OK")
            metrics.request_latency.observe((time.monotonic() - started) * 1e6, name, api, "GRPC")
        return response

    def Predict(self, request, context):  # noqa: N802 (gRPC method names)
        return self._call("Predict", self._core.predict, request, context)

    def Classify(self, request, context):  # noqa: N802
        return self._call("Classify", self._core.classify, request, context)

    def Regress(self, request, context):  # noqa: N802
        return self._call("Regress", self._core.regress, request, context)

    def MultiInference(self, request, context):  # noqa: N802
        return self._call(None, self._core.multi_inference, request, context)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._call(None, self._core.metadata, request, context)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: Inference, reload_config: Callable) -> None:
        self._core = core
        self._reload_config = reload_config

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            return self._core.status(request)
        except ServingError as err:
            _abort(context, err)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        counters = {m.tf_name: m for m in self._core.metrics.all() if isinstance(m, Counter)}
        before = {name: _first_point(counters.get(name)) for name in request.metric_names}
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                    "ModelConfigList is currently supported",
                )
            self._reload_config(request.config)
        except ServingError as err:
            log.error("HandleReloadConfigRequest failed: %s", err.message)
            _abort(context, err)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        for name in request.metric_names:
            increase = _first_point(counters.get(name)) - before[name]
            response.metric.add(name=name, int64_value_increase=increase)
        return response


def _first_point(counter: Counter | None) -> int:
    if counter is None:
        return 0
    cells = sorted(counter._cells.items())  # noqa: SLF001 (same package)
    return int(cells[0][1]) if cells else 0


def build_server(
    core: Inference,
    reload_config: Callable,
    max_workers: int,
    channel_arguments: list[tuple[str, object]],
) -> grpc.Server:
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        *channel_arguments,
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=options,
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(core), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(core, reload_config), server
    )
    return server
