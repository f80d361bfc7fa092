"""`tfstack export MODEL --name NAME`: a Keras model as a version folder TF Serving loads.

MODEL is a Keras 3 `.keras` file, a legacy `.h5` file, or a SavedModel folder. The result is
`OUT/NAME/VERSION/` with one `serving_default` signature whose input and output names are the
model's own. It is written with Keras's `ExportArchive`, never `tf.saved_model.save` of a module
holding a Keras 3 model: TF Serving's loader (graph mode: import the MetaGraph, run the saver's
restore op) fails on the latter with "Could not find variable" (keras-team/keras#19274,
tensorflow/serving#2226); a SavedModel folder that TF Serving cannot load is re-exported the same
way for that reason, and one it loads as it is (a TF1 export, TF Serving's own test models) is
copied unchanged with all its signatures (re-exporting a TF1 graph fails: its variables are not
TF2 objects).

Before the version folder appears (it is written aside and renamed into place, so a server polling
OUT never sees half of it), the export is loaded back as TF Serving loads it (modelserver's
graph-mode `Servable`), one example is run through it and compared with the source model's output.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIGNATURE = "serving_default"
_MISSING = [  # Keras's words for a custom object it cannot find: .keras, then legacy .h5
    re.compile(r"Could not locate (?:class|function) '([^']+)'"),
    re.compile(r"Unknown (?:layer|object|activation|loss|metric|optimizer)[^:']*: '?([\w.]+)'?"),
]


class ExportError(Exception):
    """Why the model could not be exported, in words a user can act on."""


@dataclass
class Source:
    """What to export: named input specs and a function from named inputs to named outputs."""

    description: str
    inputs: list  # tf.TensorSpec, each named
    call: object  # dict[str, Tensor] -> dict[str, Tensor]
    tracked: object  # what ExportArchive tracks (the Keras model or the loaded SavedModel)
    folder: Path | None = None  # a SavedModel folder: copied as it is if TF Serving loads it


# --- loading ------------------------------------------------------------------------------------


def custom_objects(specs: list[str]) -> dict:
    """`--custom-objects module:attr` (repeatable): a class, a function, or a dict of them."""
    found: dict = {}
    if specs and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise ExportError(
                f"--custom-objects {spec}: expected MODULE:NAME, e.g. my_layers:Scale"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ExportError(
                f"--custom-objects {spec}: cannot import {module_name} ({err}); run from the "
                "folder that holds it or add that folder to PYTHONPATH"
            ) from None
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise ExportError(f"--custom-objects {spec}: {module_name} has no {attr}") from None
        found.update(obj if isinstance(obj, dict) else {attr: obj})
    return found


def load(path: Path, objects: dict) -> Source:
    if not path.exists():
        raise ExportError(f"{path}: no such file or folder")
    if path.is_dir():
        return _from_saved_model(path)
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ExportError(
            f"{path}: expected a Keras 3 .keras file, a legacy .h5 file or a SavedModel folder"
        )
    import keras

    try:
        model = keras.saving.load_model(path, custom_objects=objects, compile=False)
    except (TypeError, ValueError, KeyError) as err:
        raise ExportError(_load_failure(path, err)) from None
    kind = "Keras 3 model" if path.suffix == ".keras" else "legacy HDF5 Keras model"
    return _from_keras(model, f"{path} ({kind} {model.name!r})")


def _load_failure(path: Path, err: Exception) -> str:
    text = str(err)
    for pattern in _MISSING:
        match = pattern.search(text)
        if match:
            name = match.group(1).rsplit(">", 1)[-1]
            return (
                f"{path}: the model uses {name!r}, a custom object Keras cannot find. Supply it "
                f"with --custom-objects MODULE:{name}, where MODULE is the Python module that "
                "defines it (importable from the current folder or PYTHONPATH); repeat the flag "
                "for each custom object."
            )
    return f"{path}: Keras cannot load this model: {text.splitlines()[0] if text else err!r}"


def _from_saved_model(path: Path) -> Source:
    from tfstack.cli.repo import has_saved_model

    if not has_saved_model(path):
        versions = sorted((p.name for p in path.iterdir() if p.name.isdigit()), key=int)
        hint = f" (pass a version folder, e.g. {path / versions[-1]})" if versions else ""
        raise ExportError(f"{path}: not a SavedModel folder: no saved_model.pb{hint}")
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signatures = dict(loaded.signatures)
    if SIGNATURE in signatures:
        function = signatures[SIGNATURE]
    elif len(signatures) == 1:
        function = next(iter(signatures.values()))
    else:
        raise ExportError(
            f"{path}: no {SIGNATURE} signature to export (signatures: "
            f"{', '.join(sorted(signatures)) or 'none'})"
        )
    inputs = function.structured_input_signature[1]
    specs = [tf.TensorSpec(s.shape, s.dtype, name=key) for key, s in sorted(inputs.items())]
    return Source(
        f"{path} (SavedModel)", specs, lambda named: dict(function(**named)), loaded, folder=path
    )


def _from_keras(model, description: str) -> Source:
    import tensorflow as tf

    try:
        keras_inputs = list(model.inputs or ())
    except AttributeError:  # a subclassed model that was never called on keras.Input
        keras_inputs = []
    if not keras_inputs:
        raise ExportError(
            f"{description}: the model has no known inputs (a subclassed model?); build it on "
            "keras.Input(...) (Sequential or functional) so its input names and shapes are known"
        )
    names = _unique([_clean(t.name, "inputs") for t in keras_inputs])
    specs = [
        tf.TensorSpec([None, *t.shape[1:]], tf.as_dtype(t.dtype), name=name)
        for t, name in zip(keras_inputs, names, strict=True)
    ]
    keras_names = [t.name for t in keras_inputs]

    def call(named: dict) -> dict:
        if len(names) == 1:
            result = model(named[names[0]], training=False)
        else:  # a functional model takes its inputs by their own names
            result = model(
                {k: named[n] for k, n in zip(keras_names, names, strict=True)}, training=False
            )
        return _named_outputs(model, result)

    return Source(description, specs, call, model)


def _named_outputs(model, result) -> dict:
    if isinstance(result, dict):
        return {_clean(k, "output"): v for k, v in result.items()}
    flat = list(result) if isinstance(result, list | tuple) else [result]
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(flat):
        names = [model.layers[-1].name] if len(flat) == 1 else []
    names = names or [f"output_{i}" for i in range(len(flat))]
    return dict(zip(_unique([_clean(n, "output") for n in names]), flat, strict=True))


def _clean(name: str, fallback: str) -> str:
    """A signature key usable as a TensorSpec name (Keras names are mostly fine already)."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name.split(":")[0])
    if not name or name.startswith("keras_tensor"):
        return fallback
    return name if re.match(r"[A-Za-z]", name) else f"{fallback}_{name}"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name] - 1}")
    return out


# --- writing and checking -----------------------------------------------------------------------


def next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def write(source: Source, dest: Path) -> None:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(source.tracked)
    names = [spec.name for spec in source.inputs]

    def serve(*tensors):
        return source.call(dict(zip(names, tensors, strict=True)))

    archive.add_endpoint(SIGNATURE, serve, input_signature=source.inputs)
    archive.write_out(str(dest), verbose=False)


def example(specs: list) -> dict[str, np.ndarray]:
    """One instance per input, JSON-exact (floats rounded to 2 decimals), dims of unknown size 2."""
    rng = np.random.default_rng(0)
    values = {}
    for spec in specs:
        shape = [1] + [d if d is not None else 2 for d in spec.shape.as_list()[1:]]
        dtype = spec.dtype
        if dtype.is_floating:
            values[spec.name] = np.round(rng.uniform(0, 1, shape), 2).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            values[spec.name] = rng.integers(0, 2, shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_bool:
            values[spec.name] = np.zeros(shape, dtype=bool)
        else:  # string
            values[spec.name] = np.full(shape, b"hello", dtype=object)
    return values


def expected(source: Source, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return {
        k: np.asarray(v)
        for k, v in source.call({k: tf.constant(v) for k, v in inputs.items()}).items()
    }


def served_outputs(dest: Path, name: str, version: int, inputs: dict) -> tuple[object, dict]:
    """Load `dest` the way TF Serving does and run `inputs` through serving_default."""
    from tensorflow.core.protobuf import config_pb2

    from tfstack.modelserver.errors import ServingError
    from tfstack.modelserver.servable import load_servable

    try:
        servable = load_servable(name, version, dest, config_pb2.ConfigProto(), ["serve"])
        try:
            outputs = servable.run(servable.prepare_predict(SIGNATURE, inputs))
        finally:
            servable.close()
    except ServingError as err:
        raise ExportError(
            f"the export does not run as TF Serving runs it: {err.code_name}: {err.message}"
        ) from None
    return servable.signatures[SIGNATURE], outputs


def compare(got: dict, want: dict) -> float:
    """The largest absolute difference; ExportError when an output differs beyond float noise."""
    worst = 0.0
    for key, value in want.items():
        if key not in got:
            raise ExportError(f"output {key} is missing from the export's answer")
        a, b = np.asarray(got[key]), np.asarray(value)
        if a.dtype == object or b.dtype == object:
            same = a.shape == b.shape and all(
                x == y for x, y in zip(a.ravel(), b.ravel(), strict=True)
            )
            if not same:
                raise ExportError(f"output {key}: the export answers {a!r}, the model {b!r}")
            continue
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-5):
            raise ExportError(f"output {key}: the export answers {a!r}, the model {b!r}")
        if a.size:
            worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    return worst


# --- reporting ----------------------------------------------------------------------------------


def _jsonable(array: np.ndarray):
    """Nested lists for JSON: floats as their shortest float32/64 text, bytes as text."""
    if array.dtype.kind == "f":
        kind = array.dtype.type
        return np.vectorize(lambda x: float(str(kind(x))), otypes=[object])(array).tolist()
    if array.dtype == object:
        return np.vectorize(_text, otypes=[object])(array).tolist()
    return array.tolist()


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def request_body(inputs: dict[str, np.ndarray]) -> str:
    """TF Serving's row format: `{"instances": [...]}`, one object per instance with 2+ inputs."""
    if len(inputs) == 1:
        (value,) = inputs.values()
        instances = _jsonable(value)
    else:
        instances = [{k: _jsonable(v[0]) for k, v in inputs.items()}]
    return json.dumps({"instances": instances})


def response_body(outputs: dict[str, np.ndarray]) -> str:
    """What TF Serving answers a row-format request: a list per output, or objects per instance."""
    if len(outputs) == 1:
        (value,) = outputs.values()
        return json.dumps({"predictions": _jsonable(value)})
    rows = len(next(iter(outputs.values())))
    predictions = [
        {k: _jsonable(np.asarray(v[i])) for k, v in outputs.items()} for i in range(rows)
    ]
    return json.dumps({"predictions": predictions})


def describe_signature(signature) -> list[str]:
    from tfstack.modelserver.tensors import dtype_name

    def tensor(key, info) -> str:
        dims = ", ".join(str(d.size) for d in info.tensor_shape.dim)
        shape = "unknown rank" if info.tensor_shape.unknown_rank else f"[{dims}]"
        return f"    {key}: {dtype_name(info.dtype)} {shape}"

    lines = [f"signature {SIGNATURE} ({signature.method_name})", "  inputs:"]
    lines += [tensor(k, signature.inputs[k]) for k in sorted(signature.inputs)]
    lines += ["  outputs:"] + [tensor(k, signature.outputs[k]) for k in sorted(signature.outputs)]
    return lines


# --- the command --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", type=Path, help="a .keras file, a legacy .h5 file or a SavedModel")
    parser.add_argument("--name", required=True, help="the model's name in TF Serving's URLs")
    parser.add_argument(
        "--version", type=int, help="version number (default: one above the highest in OUT/NAME)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("models"), help="models folder (default ./models)"
    )
    parser.add_argument(
        "--custom-objects",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="a custom layer, function or dict of them the model needs (repeatable)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    return parser


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return _export(args)
    except ExportError as err:
        print(f"tfstack export: {err}", file=sys.stderr, flush=True)
        return 1


def _export(args: argparse.Namespace) -> int:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", args.name):
        raise ExportError(f"--name {args.name!r}: use letters, digits, '_', '-' and '.'")
    base = args.out / args.name
    version = args.version if args.version is not None else next_version(base)
    if version < 1:
        raise ExportError(f"--version {version}: TF Serving versions are whole numbers above 0")
    dest = base / str(version)
    if dest.exists() and not args.force:
        raise ExportError(f"{dest} already exists; choose another --version or add --force")
    source = load(args.model, custom_objects(args.custom_objects))
    staging = base / f".tfstack-export-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    inputs = example(source.inputs)
    want = expected(source, inputs)

    def checked() -> tuple[object, float]:
        signature, got = served_outputs(staging, args.name, version, inputs)
        return signature, compare(got, want)

    kept = False
    try:
        if source.folder is not None:
            # A SavedModel TF Serving already runs is kept byte for byte, every signature with it
            # (TF1 exports such as TF Serving's own test models cannot be re-exported: their
            # variables are not TF2 objects). One it cannot run is re-exported below.
            shutil.copytree(source.folder, staging)
            try:
                signature, worst = checked()
                kept = True
            except ExportError:
                shutil.rmtree(staging)
        if not kept:
            write(source, staging)
            signature, worst = checked()
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    body = request_body(inputs)
    if kept:
        print(f"copied {source.description} to {dest} as it is: TF Serving loads it unchanged")
    else:
        print(f"exported {source.description} to {dest}")
    print("\n".join(describe_signature(signature)))
    print(
        "checked: loaded as TF Serving loads it (graph mode, variables restored), one example "
        f"run through it matches the model's own output (largest difference {worst:.2g})"
    )
    print(f"\nserve it:\n  tfstack up --models {args.out}")
    print(f"  curl -s -X POST http://127.0.0.1:8080/v1/models/{args.name}:predict -d '{body}'")
    print(f"  answers (as the model did here): {response_body(want)}", flush=True)
    return 0
