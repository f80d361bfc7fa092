"""TF Serving's gRPC API in front of the replicas: requests forwarded as bytes, never decoded.

The gRPC counterpart of the REST view in app.py, over the same backend client: per request it
reads the model name (the request's ModelSpec, field 1, parsed with a message that holds nothing
else), takes admission, and hands the request's bytes to `Upstream.call`, which picks an endpoint,
applies the deadline (the client's, capped by TFSTACK_DEADLINE_MS), retries where REST retries and
feeds ejection. The backend's answer goes back as the bytes it sent; its errors go back with their
status code and details unchanged. Tensors are never parsed, so a request costs the same however
it is encoded.

HandleReloadConfigRequest is refused (UNIMPLEMENTED): forwarded, a model config would reach one
replica of many and leave the others serving the old one.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from logging import Logger
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.message import DecodeError

from tfstack.gateway import accesslog, metrics
from tfstack.gateway.admission import Admission
from tfstack.gateway.domain import Deadline, DeadlineExceeded, NoBackend, Overloaded, UpstreamError
from tfstack.gateway.upstream import CALLS, Upstream
from tfstack.protocol.errors import ProtocolError, http_status_for
from tfstack.protocol.proto import _pool, model_pb2
from tfstack.protocol.rpcs import MODEL_SERVICE, PREDICTION_SERVICE, RPCS

log = logging.getLogger(__name__)

RELOAD_REFUSED = (
    "HandleReloadConfigRequest is not forwarded by the tfstack gateway: it would reach one "
    "replica of many. Change the served models in the model config (the chart's `models` values) "
    "instead."
)
REQUEST_ID_KEY = "x-request-id"

# The gateway's own refusals, as gRPC statuses (a backend's error keeps the code it came with).
_STATUS_OF: dict[type[ProtocolError], grpc.StatusCode] = {
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    NoBackend: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def grpc_status(err: ProtocolError) -> grpc.StatusCode:
    if isinstance(err, UpstreamError):
        return err.code
    return _STATUS_OF.get(type(err), grpc.StatusCode.INTERNAL)


@functools.cache
def _routing_messages() -> tuple[type, type]:
    """(ModelSpecOnly, TasksOnly): every forwarded request has its ModelSpec at field 1, except
    MultiInferenceRequest, whose tasks (field 1) each have theirs at field 1. Everything else in
    the bytes is an unknown field to these messages, skipped without being decoded."""
    file = descriptor_pb2.FileDescriptorProto(
        name="tfstack/gateway/grpc_front_routing.proto",
        package="tfstack.gateway",
        syntax="proto3",
        dependency=[model_pb2.DESCRIPTOR.name],
    )
    field = descriptor_pb2.FieldDescriptorProto
    spec_only = file.message_type.add(name="ModelSpecOnly")
    spec_only.field.add(
        name="model_spec", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
        type_name=".tensorflow.serving.ModelSpec",
    )
    tasks_only = file.message_type.add(name="TasksOnly")
    tasks_only.field.add(
        name="tasks", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_REPEATED,
        type_name=".tfstack.gateway.ModelSpecOnly",
    )
    _pool.POOL.AddSerializedFile(file.SerializeToString())
    find = _pool.POOL.FindMessageTypeByName
    return (
        message_factory.GetMessageClass(find("tfstack.gateway.ModelSpecOnly")),
        message_factory.GetMessageClass(find("tfstack.gateway.TasksOnly")),
    )


def model_name(rpc: str, request: bytes) -> str:
    """The model a serialized request names ("" when it names none or does not parse: the
    backend's own answer to it goes back to the client)."""
    spec_only, tasks_only = _routing_messages()
    try:
        if rpc == "MultiInference":
            tasks = tasks_only.FromString(request).tasks
            return tasks[0].model_spec.name if tasks else ""
        return spec_only.FromString(request).model_spec.name
    except DecodeError:
        return ""


class FrontDoor:
    """The generic handlers of PredictionService and ModelService for one `grpc.server`."""

    def __init__(
        self,
        upstream: Upstream,
        admission: Admission,
        deadline_ms: int,
        access_log: Logger | None = None,
    ) -> None:
        self.upstream = upstream
        self.admission = admission
        self.deadline_ms = deadline_ms
        self.access_log = access_log

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        methods: dict[str, dict[str, grpc.RpcMethodHandler]] = {
            PREDICTION_SERVICE: {}, MODEL_SERVICE: {}
        }
        for rpc in RPCS.values():
            methods[rpc.service][rpc.name] = grpc.unary_unary_rpc_method_handler(
                self._forwarder(rpc.name)
            )
        methods[MODEL_SERVICE]["HandleReloadConfigRequest"] = grpc.unary_unary_rpc_method_handler(
            _refuse_reload
        )
        return [grpc.method_handlers_generic_handler(s, m) for s, m in methods.items()]

    def _forwarder(self, rpc: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        return lambda request, context: self.forward(rpc, request, context)

    def forward(self, rpc: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        started = time.perf_counter()
        CALLS.set([])
        model = model_name(rpc, request)
        code, details, response = grpc.StatusCode.OK, "", b""
        try:
            response = self._admitted(rpc, request, model, context)
        except ProtocolError as err:
            code, details = grpc_status(err), err.message
        except Exception:  # a bug here must not kill the server thread; the client gets INTERNAL
            log.exception("unhandled exception in %s", rpc)
            code, details = grpc.StatusCode.INTERNAL, "internal error"
        self._observe(rpc, model, code, time.perf_counter() - started, len(response), context)
        if code != grpc.StatusCode.OK:
            context.abort(code, details)
        return response

    def _admitted(
        self, rpc: str, request: bytes, model: str, context: grpc.ServicerContext
    ) -> bytes:
        # The client's deadline (none: effectively infinite) capped by the gateway's.
        remaining = context.time_remaining()  # None when the client set no deadline
        deadline = Deadline.capped(None if remaining is None else remaining * 1000,
                                   self.deadline_ms)
        key = model or None
        rejection = self.admission.try_acquire(key)
        if rejection is not None:
            metrics.ADMISSION_REJECTIONS.labels(rejection.reason).inc()
            raise Overloaded(rejection.reason, rejection.retry_after_s)
        try:
            with metrics.INFLIGHT.track_inprogress():
                return self.upstream.call(rpc, request, model, deadline, raw=True)
        finally:
            self.admission.release(key)

    def _observe(
        self, rpc: str, model: str, code: grpc.StatusCode, seconds: float, size: int,
        context: grpc.ServicerContext,
    ) -> None:
        method = RPCS[rpc].rest_method
        label = self.upstream.model_label(model)
        status = http_status_for(code)  # the `code` label means the same for both protocols
        metrics.child(metrics.REQUESTS, label, method, str(status), "grpc").inc()
        metrics.child(metrics.REQUEST_DURATION, label, method, "grpc").observe(seconds)
        if self.access_log is None:
            return
        accesslog.log_request(
            self.access_log,
            request_id=_request_id(context),
            protocol="grpc",
            method="POST",
            path=RPCS[rpc].path,
            model=model or None,
            status=status,
            grpc_code=code.name,
            duration_ms=round(seconds * 1000, 3),
            upstream=[f"{address} {name} {ms:.3f}ms" for address, name, ms in CALLS.get() or []],
            bytes=size,
        )


def _request_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == REQUEST_ID_KEY and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return os.urandom(16).hex()


def _refuse_reload(_request: Any, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.UNIMPLEMENTED, RELOAD_REFUSED)
    return b""
