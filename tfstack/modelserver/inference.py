"""The request-level core shared by the gRPC services, the REST API and warmup.

Each method takes and returns TF Serving's own messages and raises ServingError with TF Serving's
code and message; `*_on` variants run against one already-held servable (warmup, REST).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
from google.protobuf import text_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from tfstack.modelserver.batching import BatchScheduler
from tfstack.modelserver.errors import (
    invalid_argument,
    not_found,
    unimplemented,
)
from tfstack.modelserver.manager import Manager
from tfstack.modelserver.metrics import Metrics
from tfstack.modelserver.servable import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    Servable,
)
from tfstack.modelserver.tensors import dtype_name, to_proto


def make_model_spec(name: str, signature_name: str | None, version: int) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name)
    if signature_name is not None:
        spec.signature_name = signature_name
    spec.version.value = version
    return spec


class Inference:
    def __init__(
        self,
        manager: Manager,
        metrics: Metrics,
        batcher: BatchScheduler | None = None,
        tensor_content: bool = False,
        timeout_ms: int = 0,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.batcher = batcher
        self.tensor_content = tensor_content
        self.timeout_ms = timeout_ms
        # method_name -> (check the signature and name the outputs to fetch, run and shape)
        self._example_methods = {
            CLASSIFY_METHOD: (_classify_outputs, self._classify),
            REGRESS_METHOD: (_regress_outputs, self._regress),
        }

    # -- model spec ------------------------------------------------------------------------------
    def resolve(self, request) -> tuple[str, int | None]:
        """ServableRequestFromModelSpec: (name, version or None for Latest)."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        return self.resolve_spec(request.model_spec)

    def resolve_spec(self, spec: model_pb2.ModelSpec) -> tuple[str, int | None]:
        if not spec.name:
            raise invalid_argument("ModelSpec has no name specified.")
        choice = spec.WhichOneof("version_choice")
        if choice == "version":
            return spec.name, spec.version.value
        if choice == "version_label":
            return spec.name, self.manager.resolve_label(spec.name, spec.version_label)
        return spec.name, None

    # -- Predict ---------------------------------------------------------------------------------
    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        name, version = self.resolve(request)
        with self.manager.acquire(name, version) as servable:
            return self.predict_on(servable, request)

    def predict_on(self, servable: Servable, request, batching: bool = True):
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        outputs = self.run_predict(
            servable, signature_name, request.inputs, request.output_filter, batching
        )
        response = predict_pb2.PredictResponse(
            model_spec=make_model_spec(request.model_spec.name, signature_name, servable.version)
        )
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(to_proto(value, self.tensor_content))
        return response

    def run_predict(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, object],
        output_filter: Sequence[str] = (),
        batching: bool = True,
    ) -> dict[str, np.ndarray]:
        """Validate, then run (batched when enabled); records runtime_latency."""
        prepared = servable.prepare_predict(signature_name, inputs, output_filter)
        started = time.monotonic()
        if self.batcher is not None and batching:
            key = (
                id(servable),
                prepared.signature_name,
                prepared.feed_aliases,
                prepared.fetch_aliases,
            )

            def runner(feeds, prepared=prepared):
                return servable.run(
                    type(prepared)(
                        prepared.signature_name,
                        prepared.feed_aliases,
                        feeds,
                        prepared.fetch_aliases,
                    ),
                    self.timeout_ms,
                )

            outputs = self.batcher.run(key, prepared.feeds, runner)
        else:
            outputs = servable.run(prepared, self.timeout_ms)
        self.metrics.runtime_latency.observe(
            (time.monotonic() - started) * 1e6, servable.name, "Predict", "TF1"
        )
        return outputs

    # -- Classify / Regress / MultiInference ---------------------------------------------------
    def classify(self, request):
        name, version = self.resolve(request)
        with self.manager.acquire(name, version) as servable:
            return self.classify_on(servable, request)

    def classify_on(self, servable: Servable, request):
        return self._examples_on(
            servable, request, CLASSIFY_METHOD, classification_pb2.ClassificationResponse
        )

    def regress(self, request):
        name, version = self.resolve(request)
        with self.manager.acquire(name, version) as servable:
            return self.regress_on(servable, request)

    def regress_on(self, servable: Servable, request):
        return self._examples_on(
            servable, request, REGRESS_METHOD, regression_pb2.RegressionResponse
        )

    def _examples_on(self, servable: Servable, request, method: str, response_type):
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        plan, run = self._example_methods[method]
        fetch = plan(servable.example_signature(signature_name))  # the signature before the input
        result = run(servable, signature_name, fetch, _serialized_examples(request.input))
        return response_type(
            model_spec=make_model_spec(request.model_spec.name, signature_name, servable.version),
            result=result,
        )

    def multi_inference(self, request):
        if not request.tasks:
            raise invalid_argument("Expected at least one task")
        name = request.tasks[0].model_spec.name
        for task in request.tasks:
            if task.model_spec.name != name:
                raise invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
        spec_version = self.resolve_spec(request.tasks[0].model_spec)[1]
        with self.manager.acquire(name, spec_version) as servable:
            return self.multi_inference_on(servable, request)

    def multi_inference_on(self, servable: Servable, request):
        # As multi_inference.cc: every task's signature is checked before the input is read.
        planned = []
        seen: set[str] = set()
        for task in request.tasks:
            signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if signature_name in seen:
                raise invalid_argument(f"Duplicate evaluation of signature: {signature_name}")
            seen.add(signature_name)
            if task.method_name not in self._example_methods:
                raise unimplemented(f"Unsupported signature method_name: {task.method_name}")
            plan, run = self._example_methods[task.method_name]
            fetch = plan(servable.example_signature(signature_name))
            planned.append((task, signature_name, run, fetch))
        serialized = _serialized_examples(request.input)
        self.metrics.request_example_counts.observe(len(serialized), servable.name)
        self.metrics.request_example_count_total.inc(servable.name, amount=len(serialized))
        response = inference_pb2.MultiInferenceResponse()
        for task, signature_name, run, fetch in planned:
            result = response.results.add(
                model_spec=make_model_spec(task.model_spec.name, signature_name, servable.version)
            )
            answer = run(servable, signature_name, fetch, serialized)
            if task.method_name == CLASSIFY_METHOD:
                result.classification_result.CopyFrom(answer)
            else:
                result.regression_result.CopyFrom(answer)
        return response

    def _classify(
        self, servable: Servable, signature_name: str, wanted: list[str], serialized: list[bytes]
    ):
        values = self._run_examples(servable, signature_name, serialized, wanted, "Classify")
        classes, scores = values.get("classes"), values.get("scores")
        for name, value in (("classes", classes), ("scores", scores)):
            if value is not None and (value.ndim != 2 or value.shape[0] != len(serialized)):
                raise invalid_argument(
                    f"Expected Tensor shape: [{len(serialized)} num_classes] but got "
                    f"{list(value.shape)} for {name}"
                )
        result = classification_pb2.ClassificationResult()
        for row in range(len(serialized)):
            classifications = result.classifications.add()
            width = (scores if scores is not None else classes).shape[1]
            for col in range(width):
                label = classes[row, col] if classes is not None else b""
                score = float(scores[row, col]) if scores is not None else 0.0
                classifications.classes.add(
                    label=label.decode("utf-8", "replace") if isinstance(label, bytes) else label,
                    score=score,
                )
        return result

    def _regress(
        self, servable: Servable, signature_name: str, wanted: list[str], serialized: list[bytes]
    ):
        value = self._run_examples(servable, signature_name, serialized, wanted, "Regress")
        value = value["outputs"]
        if value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        if value.ndim != 1 or value.shape[0] != len(serialized):
            raise invalid_argument(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
                f"got {list(value.shape)}"
            )
        result = regression_pb2.RegressionResult()
        for v in value:
            result.regressions.add(value=float(v))
        return result

    def _run_examples(self, servable, signature_name, serialized, outputs, api):
        started = time.monotonic()
        values = servable.run_examples(signature_name, serialized, outputs, self.timeout_ms)
        self.metrics.runtime_latency.observe(
            (time.monotonic() - started) * 1e6, servable.name, api, "TF1"
        )
        return values

    # -- metadata and status ---------------------------------------------------------------------
    def metadata(self, request):
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for name in request.metadata_field:
            if name != "signature_def":
                raise invalid_argument(f"Metadata field {name} is not supported")
        name, version = self.resolve(request)
        with self.manager.acquire(name, version) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse(
                model_spec=make_model_spec(name, None, servable.version)
            )
            signatures = get_model_metadata_pb2.SignatureDefMap()
            for key, signature in servable.signatures.items():
                signatures.signature_def[key].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signatures)
        return response

    def status(self, request):
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        name = request.model_spec.name
        entries = self.manager.version_states(name)
        if not entries:
            raise not_found(f"Could not find any versions of model {name}")
        if request.model_spec.HasField("version"):
            wanted = request.model_spec.version.value
            entries = [e for e in entries if e.version == wanted]
            if not entries:
                raise not_found(f"Could not find version {wanted} of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for entry in entries:
            item = response.model_version_status.add(version=entry.version, state=entry.state)
            item.status.SetInParent()  # TF Serving always sets it (error_code OK)
            if entry.error is not None:
                item.status.error_code = entry.error.code.value[0]
                item.status.error_message = entry.error.message
        return response


def _serialized_examples(model_input) -> list[bytes]:
    """input_util.cc: one serialized tf.Example per example, context merged in first."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in model_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = model_input.example_list_with_context
        examples = []
        for example in with_context.examples:
            merged = example_pb2.Example()
            merged.MergeFrom(with_context.context)
            merged.MergeFrom(example)
            examples.append(merged.SerializeToString())
    else:
        examples = []
    if not examples:
        raise invalid_argument("Input is empty.")
    return examples


def _classify_outputs(signature) -> list[str]:
    """TF Serving's PreProcessClassification (classifier.cc), its checks in its order."""
    outputs = signature.outputs
    if len(outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {len(outputs)}")
    if "inputs" not in signature.inputs:
        raise invalid_argument(
            "No classification inputs found in SignatureDef: " + _debug_string(signature)
        )
    wanted = [alias for alias in ("classes", "scores") if alias in outputs]
    if not wanted:
        raise invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" or '
            '"scores". Signature was: ' + _debug_string(signature)
        )
    for alias, dtype in (("classes", types_pb2.DT_STRING), ("scores", types_pb2.DT_FLOAT)):
        if alias in outputs and outputs[alias].dtype != dtype:
            raise invalid_argument(
                f"Expected {alias} Tensor of {types_pb2.DataType.Name(dtype)}. Got: "
                f"{types_pb2.DataType.Name(outputs[alias].dtype)}"
            )
    return wanted


def _regress_outputs(signature) -> list[str]:
    """TF Serving's PreProcessRegression (regressor.cc), its checks in its order."""
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    for alias, side in (("inputs", signature.inputs), ("outputs", signature.outputs)):
        if alias not in side:
            raise invalid_argument(
                f"No regression {alias} found in SignatureDef: " + _debug_string(signature)
            )
    if signature.outputs["outputs"].dtype != types_pb2.DT_FLOAT:
        raise invalid_argument(
            "Expected output Tensor of DT_FLOAT.  Got: "
            + dtype_name(signature.outputs["outputs"].dtype)
        )
    return ["outputs"]


def _debug_string(signature) -> str:
    """The SignatureDef as TF Serving's C++ `DebugString()` prints it into its errors: text
    format, fields in number order, map entries sorted by key, a newline after each field."""
    return text_format.MessageToString(signature)
