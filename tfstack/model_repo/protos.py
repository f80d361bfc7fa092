"""TF Serving's `MonitoringConfig` and `BatchingParameters` messages, declared in a private pool.

`tensorflow-serving-api` on PyPI ships neither `monitoring_config_pb2` nor
`session_bundle_config_pb2`. These declarations copy the wire contract of
`tensorflow_serving/config/monitoring_config.proto` and of `BatchingParameters` in
`tensorflow_serving/servables/tensorflow/session_bundle_config.proto` (package, message names,
field names, numbers and types), which is all the text format needs. They live in a private
descriptor pool, so they never clash with another definition of the same names.

`SavedModel` here is the subset of `tensorflow/core/protobuf/saved_model.proto` and
`meta_graph.proto` that the validator reads: meta graph tags and signature defs. Unknown fields are
skipped on parse, so any real saved_model.pb parses, and reading one needs no TensorFlow import
(~5 s saved per run). Maps are declared in their wire form (repeated key/value entries).
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
_TENSOR_SHAPE_DIM_FIELDS = [
    ("size", 1, _F.TYPE_INT64, _OPTIONAL, None),
    ("name", 2, _F.TYPE_STRING, _OPTIONAL, None),
]
_TENSOR_SHAPE_FIELDS = [
    ("dim", 2, _F.TYPE_MESSAGE, _REPEATED, ".tensorflow.TensorShapeProto.Dim"),
    ("unknown_rank", 3, _F.TYPE_BOOL, _OPTIONAL, None),
]
_TENSOR_INFO_FIELDS = [
    ("name", 1, _F.TYPE_STRING, _OPTIONAL, None),
    ("dtype", 2, _F.TYPE_INT32, _OPTIONAL, None),  # enum DataType on the wire: a varint
    ("tensor_shape", 3, _F.TYPE_MESSAGE, _OPTIONAL, ".tensorflow.TensorShapeProto"),
]
_TENSOR_INFO_ENTRY_FIELDS = [
    ("key", 1, _F.TYPE_STRING, _OPTIONAL, None),
    ("value", 2, _F.TYPE_MESSAGE, _OPTIONAL, ".tensorflow.TensorInfo"),
]
_SIGNATURE_DEF_FIELDS = [
    ("inputs", 1, _F.TYPE_MESSAGE, _REPEATED, ".tensorflow.SignatureDef.TensorInfoEntry"),
    ("outputs", 2, _F.TYPE_MESSAGE, _REPEATED, ".tensorflow.SignatureDef.TensorInfoEntry"),
    ("method_name", 3, _F.TYPE_STRING, _OPTIONAL, None),
]
_SIGNATURE_ENTRY_FIELDS = [
    ("key", 1, _F.TYPE_STRING, _OPTIONAL, None),
    ("value", 2, _F.TYPE_MESSAGE, _OPTIONAL, ".tensorflow.SignatureDef"),
]
_META_INFO_FIELDS = [("tags", 4, _F.TYPE_STRING, _REPEATED, None)]
_META_GRAPH_FIELDS = [
    ("meta_info_def", 1, _F.TYPE_MESSAGE, _OPTIONAL, ".tensorflow.MetaGraphDef.MetaInfoDef"),
    ("signature_def", 5, _F.TYPE_MESSAGE, _REPEATED, ".tensorflow.MetaGraphDef.SignatureDefEntry"),
]
_SAVED_MODEL_FIELDS = [
    ("saved_model_schema_version", 1, _F.TYPE_INT64, _OPTIONAL, None),
    ("meta_graphs", 2, _F.TYPE_MESSAGE, _REPEATED, ".tensorflow.MetaGraphDef"),
]
_MONITORING_FIELDS = [
    ("prometheus_config", 1, _F.TYPE_MESSAGE, _OPTIONAL, ".tensorflow.serving.PrometheusConfig"),
]


def _message(parent, name: str, fields: list, nested: tuple = ()):
    """Add message `name` to a FileDescriptorProto or (nested) DescriptorProto `parent`."""
    container = parent.message_type if hasattr(parent, "message_type") else parent.nested_type
    msg = container.add(name=name)
    for child_name, child_fields in nested:
        _message(msg, child_name, child_fields)
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
    saved_model = descriptor_pb2.FileDescriptorProto(
        name="tfstack/model_repo/saved_model_subset.proto", package="tensorflow", syntax="proto3"
    )
    _message(
        saved_model, "TensorShapeProto", _TENSOR_SHAPE_FIELDS, (("Dim", _TENSOR_SHAPE_DIM_FIELDS),)
    )
    _message(saved_model, "TensorInfo", _TENSOR_INFO_FIELDS)
    _message(
        saved_model,
        "SignatureDef",
        _SIGNATURE_DEF_FIELDS,
        (("TensorInfoEntry", _TENSOR_INFO_ENTRY_FIELDS),),
    )
    _message(
        saved_model,
        "MetaGraphDef",
        _META_GRAPH_FIELDS,
        (("MetaInfoDef", _META_INFO_FIELDS), ("SignatureDefEntry", _SIGNATURE_ENTRY_FIELDS)),
    )
    _message(saved_model, "SavedModel", _SAVED_MODEL_FIELDS)
    pool.Add(saved_model)
    return pool


_POOL = _build_pool()


def _class(full_name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


BatchingParameters = _class("tensorflow.serving.BatchingParameters")
PrometheusConfig = _class("tensorflow.serving.PrometheusConfig")
MonitoringConfig = _class("tensorflow.serving.MonitoringConfig")
SavedModel = _class("tensorflow.SavedModel")
