"""TF Serving's `MonitoringConfig` and `BatchingParameters` messages, declared in a private pool.

`tensorflow-serving-api` on PyPI ships neither `monitoring_config_pb2` nor
`session_bundle_config_pb2`. These declarations copy the wire contract of
`tensorflow_serving/config/monitoring_config.proto` and of `BatchingParameters` in
`tensorflow_serving/servables/tensorflow/session_bundle_config.proto` (package, message names,
field names, numbers and types), which is all the text format needs. They live in a private
descriptor pool, so they never clash with another definition of the same names.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

# (name, number, type, label, type_name)
_BATCHING_FIELDS = [
    ("max_batch_size", 1, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.StringValue"),
    ("allowed_batch_sizes", 6, _F.TYPE_INT64, _REPEATED, None),
    ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, _OPTIONAL, None),
    ("enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.BoolValue"),
    ("max_execution_batch_size", 9, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Int64Value"),
]
_PROMETHEUS_FIELDS = [
    ("enable", 1, _F.TYPE_BOOL, _OPTIONAL, None),
    ("path", 2, _F.TYPE_STRING, _OPTIONAL, None),
]
_MONITORING_FIELDS = [
    ("prometheus_config", 1, _F.TYPE_MESSAGE, _OPTIONAL, ".tensorflow.serving.PrometheusConfig"),
]


def _message(file: descriptor_pb2.FileDescriptorProto, name: str, fields: list) -> None:
    msg = file.message_type.add(name=name)
    for fname, number, ftype, label, type_name in fields:
        f = msg.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="tfstack/model_repo/tf_serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[wrappers.name],
    )
    _message(file, "BatchingParameters", _BATCHING_FIELDS)
    _message(file, "PrometheusConfig", _PROMETHEUS_FIELDS)
    _message(file, "MonitoringConfig", _MONITORING_FIELDS)
    pool.Add(file)
    return pool


_POOL = _build_pool()
BatchingParameters = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
)
PrometheusConfig = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.PrometheusConfig")
)
MonitoringConfig = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
)
