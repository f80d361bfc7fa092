"""One loaded SavedModel version: its MetaGraph's signatures and a TF session to run them.

Loaded the way TF Serving's C++ loader does it (graph mode, one Session per version): import the
MetaGraph for the requested tags, run the saver's restore op on `variables/variables`, then the
main/init op with the asset paths fed. Requests run through session callables, so a signature
runs with the same graph, tensor names and runtime errors as under tensorflow_model_server.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2

from tfstack.modelserver.errors import (
    ServingError,
    failed_precondition,
    from_tf_error,
    invalid_argument,
    not_found,
)
from tfstack.modelserver.tensors import dtype_name, dtype_of, to_ndarray

log = logging.getLogger("tfstack.modelserver.servable")

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclass(frozen=True)
class PreparedRun:
    """A validated Predict: feeds in signature order, and the outputs to fetch."""

    signature_name: str
    feed_aliases: tuple[str, ...]
    feeds: tuple[np.ndarray, ...]
    fetch_aliases: tuple[str, ...]


def _find_meta_graph(path: Path, tags: Sequence[str]) -> meta_graph_pb2.MetaGraphDef:
    saved_model = saved_model_pb2.SavedModel()
    pb, pbtxt = path / "saved_model.pb", path / "saved_model.pbtxt"
    if pb.exists():
        saved_model.ParseFromString(pb.read_bytes())
    elif pbtxt.exists():  # TF's ReadSavedModel: the binary file first, else the text one
        from google.protobuf import text_format

        try:
            text_format.Parse(pbtxt.read_text(), saved_model)
        except (text_format.ParseError, UnicodeDecodeError):
            raise invalid_argument(
                f"Can't parse {os.fspath(path)}/saved_model.pbtxt as text proto"
            ) from None
    else:
        raise not_found(
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
        )
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return meta_graph
    raise not_found(
        "Could not find meta graph def matching supplied tags: { "
        + " ".join(tags)
        + " }. To inspect available tag-sets in the SavedModel, please use the SavedModel "
        "CLI: `saved_model_cli`"
    )


class Servable:
    """A SavedModel version loaded into its own graph and session."""

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        session_config: config_pb2.ConfigProto,
        tags: Sequence[str] = ("serve",),
        tensor_content: bool = False,
    ) -> None:
        self.name = name
        self.version = version
        self.path = Path(path)
        self.tensor_content = tensor_content
        self.meta_graph = _find_meta_graph(self.path, tags)
        self.signatures = dict(self.meta_graph.signature_def)
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config)
        self._callables: dict[tuple, object] = {}
        self._callables_lock = threading.Lock()
        self._restore()

    # -- loading -------------------------------------------------------------------------------
    def _restore(self) -> None:
        meta_graph = self.meta_graph
        with self._graph.as_default():
            tf.compat.v1.train.import_meta_graph(meta_graph, clear_devices=True)
        variables = self.path / "variables" / "variables"
        if meta_graph.HasField("saver_def") and Path(f"{variables}.index").exists():
            saver = meta_graph.saver_def
            self._session.run(saver.restore_op_name, {saver.filename_tensor_name: str(variables)})
        asset_feeds = {
            asset.tensor_info.name: str(self.path / "assets" / asset.filename)
            for asset in meta_graph.asset_file_def
        }
        for key in ("saved_model_main_op", "legacy_init_op"):
            ops = meta_graph.collection_def.get(key)
            if ops is not None and ops.node_list.value:
                self._session.run(ops.node_list.value[0], asset_feeds)
                break

    def close(self) -> None:
        self._callables.clear()
        self._session.close()

    # -- signatures ----------------------------------------------------------------------------
    def predict_signature(self, name: str) -> meta_graph_pb2.SignatureDef:
        signature = self.signatures.get(name)
        if signature is None:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        return signature

    def prepare_predict(
        self,
        signature_name: str,
        inputs: Mapping[str, object],
        output_filter: Sequence[str] = (),
    ) -> PreparedRun:
        """TF Serving's PreProcessPrediction: names and counts checked, tensors parsed."""
        signature = self.predict_signature(signature_name)
        _verify_inputs_size(signature, inputs)
        feeds = []
        aliases = sorted(signature.inputs)
        seen = set()
        for alias in aliases:
            info = signature.inputs[alias]
            if alias not in inputs:
                raise invalid_argument(
                    f"Signature input alias: {alias}(feed name: {info.name}) not found in request"
                    " and no default value provided. Inputs expected to be in the request "
                    f"{{{','.join(sorted(inputs))}}}, or default input alias set: "
                )
            seen.add(alias)
            value = inputs[alias]
            feeds.append(value if isinstance(value, np.ndarray) else to_ndarray(value, alias))
        if inputs and len(seen) != len(inputs):
            raise invalid_argument(
                f"Inputs contains invalid name. Used request inputs: {','.join(sorted(seen))}, "
                f"request input: {','.join(sorted(inputs))}"
            )
        for index, (alias, array) in enumerate(zip(aliases, feeds, strict=True)):
            want, got = signature.inputs[alias].dtype, dtype_of(array)
            if want != got:
                raise invalid_argument(
                    f"Expects arg[{index}] to be {dtype_name(want)} but {dtype_name(got)} "
                    "is provided"
                )
        return PreparedRun(
            signature_name, tuple(aliases), tuple(feeds), _fetch_aliases(signature, output_filter)
        )

    def run(self, prepared: PreparedRun, timeout_ms: int = 0) -> dict[str, np.ndarray]:
        """Session::Run of a prepared Predict; TF runtime errors keep their code and message."""
        run = self._callable(prepared, timeout_ms)
        try:
            values = run(*prepared.feeds)
        except tf.errors.OpError as err:
            raise from_tf_error(err) from None
        return dict(zip(prepared.fetch_aliases, values, strict=True))

    def _callable(self, prepared: PreparedRun, timeout_ms: int):
        signature = self.signatures[prepared.signature_name]
        key = (prepared.signature_name, prepared.feed_aliases, prepared.fetch_aliases, timeout_ms)
        run = self._callables.get(key)
        if run is None:
            with self._callables_lock:
                run = self._callables.get(key)
                if run is None:
                    options = config_pb2.CallableOptions(
                        feed=[signature.inputs[a].name for a in prepared.feed_aliases],
                        fetch=[signature.outputs[a].name for a in prepared.fetch_aliases],
                    )
                    options.run_options.timeout_in_ms = timeout_ms
                    run = self._session._make_callable_from_options(options)  # noqa: SLF001
                    self._callables[key] = run
        return run

    # -- classify / regress ----------------------------------------------------------------------
    def example_signature(self, name: str) -> meta_graph_pb2.SignatureDef:
        signature = self.signatures.get(name)
        if signature is None:
            raise invalid_argument(f"No signature was found with the name: {name}")
        if len(signature.inputs) != 1:
            raise invalid_argument("Expected one input Tensor.")
        return signature

    def run_examples(
        self, signature_name: str, serialized: list[bytes], outputs: Sequence[str], timeout_ms: int
    ) -> dict[str, np.ndarray]:
        signature = self.example_signature(signature_name)
        (alias,) = signature.inputs
        array = np.array(serialized, dtype=object)
        prepared = PreparedRun(signature_name, (alias,), (array,), tuple(outputs))
        return self.run(prepared, timeout_ms)


def _verify_inputs_size(signature: meta_graph_pb2.SignatureDef, inputs: Mapping) -> None:
    n_req, n_sig = len(inputs), len(signature.inputs)
    if n_req > n_sig or (n_req < n_sig and not signature.defaults):
        req, sig = set(inputs), set(signature.inputs)
        raise invalid_argument(
            f"input size does not match signature: {n_req}!={n_sig} "
            f"len({{{','.join(sorted(req))}}}) != len({{{','.join(sorted(sig))}}}). "
            f"Sent extra: {{{','.join(sorted(req - sig))}}}. "
            f"Missing but required: {{{','.join(sorted(sig - req))}}}."
        )


def _fetch_aliases(signature: meta_graph_pb2.SignatureDef, output_filter: Sequence[str]):
    seen: list[str] = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return tuple(seen) if seen else tuple(sorted(signature.outputs))


def load_servable(
    name: str, version: int, path: Path, session_config, tags, tensor_content=False
) -> Servable:
    """Load one version; any failure becomes a ServingError naming the path."""
    try:
        return Servable(name, version, path, session_config, tags, tensor_content)
    except ServingError:
        raise
    except tf.errors.OpError as err:
        raise from_tf_error(err) from None
    except DecodeError:
        raise ServingError(
            grpc.StatusCode.DATA_LOSS,
            f"Can't parse {os.fspath(path)}/saved_model.pb as binary proto",
        ) from None
    except Exception as err:  # noqa: BLE001 (any failure is this version's load error)
        raise ServingError(grpc.StatusCode.UNKNOWN, f"{err} ({os.fspath(path)})") from None
