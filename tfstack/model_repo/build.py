"""Build the example SavedModels: `python -m tfstack.model_repo.build [--out DIR] [--force]
[--only NAME]`.

Writes TF Serving's layout `<out>/<name>/<version>/saved_model.pb + variables/`. Each model keeps a
stamp next to its versions: a hash of the build code, of its parameters and of the versions of
TensorFlow, Keras, scikit-learn and numpy. A model whose stamp matches and whose versions are all
there is skipped without importing TensorFlow, so a repeated run takes well under a second.
Everything stale is built in one process (TensorFlow starts once). A model is written to a staging
folder and then renamed into place, so a server polling the base path never sees a half-written
version.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CODE = Path(__file__).resolve().parent
MODEL_REPO = Path(__file__).resolve().parents[2] / "model_repo"  # models, configs, README
DEFAULT_OUT = MODEL_REPO / "models"
STAMP = ".tfstack-build-stamp"
# The code, and the packages, whose every change rebuilds the models.
BUILD_CODE = ("build.py", "examples.py", "data.py")
TOOLCHAIN = ("tensorflow", "keras", "scikit-learn", "numpy")
# Bumped whenever the export format changes (2: Keras models via keras.export.ExportArchive, which
# TF Serving's graph-mode loader can restore), so every stale model is rebuilt.
FORMAT = 2

# name -> version -> parameters. digits_png reuses the classifier of digits at `classifier`.
MODELS: dict[str, dict[int, dict]] = {
    "half_plus_two": {1: {}},
    "digits": {
        1: {"seed": 1, "epochs": 15, "hidden": 32},
        2: {"seed": 2, "epochs": 30, "hidden": 64},
    },
    "digits_png": {1: {"classifier": ["digits", 1]}},
}


def stamp_for(name: str) -> str:
    digest = hashlib.sha256(f"format {FORMAT}\n".encode())
    for filename in BUILD_CODE:
        digest.update((CODE / filename).read_bytes())
    for package in TOOLCHAIN:
        digest.update(f"{package}=={importlib.metadata.version(package)}\n".encode())
    params = [MODELS[name]] + [
        MODELS[source][version]
        for spec in MODELS[name].values()
        for source, version in [spec.get("classifier") or (None, None)]
        if source
    ]
    digest.update(json.dumps(params, sort_keys=True).encode())
    return digest.hexdigest()


def up_to_date(out: Path, name: str) -> bool:
    base = out / name
    stamp = base / STAMP
    return (
        stamp.is_file()
        and stamp.read_text().strip() == stamp_for(name)
        and all((base / str(v) / "saved_model.pb").is_file() for v in MODELS[name])
    )


def stale_models(
    out: Path = DEFAULT_OUT, force: bool = False, only: list[str] | None = None
) -> list[str]:
    names = [name for name in MODELS if not only or name in only]
    return [name for name in names if force or not up_to_date(out, name)]


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One build at a time per output folder (e.g. `make models` and a test fixture)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(
    out: Path = DEFAULT_OUT, force: bool = False, log=print, only: list[str] | None = None
) -> list[str]:
    """Build every stale model (of `only`, if given) into `out`; returns the names built."""
    out = Path(out).resolve()
    with _locked(out):
        todo = stale_models(out, force, only)
        for name in MODELS:
            if name not in todo and (not only or name in only):
                log(f"skip   {name}: up to date ({out / name})")
        if not todo:
            return []
        started = time.monotonic()
        builder = _Builder(out, log)
        for name in todo:
            builder.build_model(name)
        log(f"built {len(todo)} model(s) in {time.monotonic() - started:.1f} s")
        return todo


class _Builder:
    """Builds models in one process, training each digits classifier at most once."""

    def __init__(self, out: Path, log) -> None:
        import tensorflow as tf

        from tfstack.model_repo import examples  # imports TensorFlow: only when something is stale

        tf.get_logger().setLevel("ERROR")  # the TF1 builder's deprecation notices
        # Same seeds and data give the same weights on every run.
        tf.config.experimental.enable_op_determinism()
        self.examples = examples
        self.out = out
        self.log = log
        self.classifiers: dict[tuple[str, int], tuple] = {}

    def classifier(self, name: str, version: int) -> tuple:
        key = (name, version)
        if key not in self.classifiers:
            params = MODELS[name][version]
            self.classifiers[key] = self.examples.train_digits(**params)
        return self.classifiers[key]

    def export(self, name: str, version: int, dest: Path) -> str:
        if name == "half_plus_two":
            return self.examples.export_half_plus_two(dest)
        if name == "digits":
            return self.examples.export_digits(dest, *self.classifier(name, version))
        if name == "digits_png":
            source, source_version = MODELS[name][version]["classifier"]
            model = self.classifier(source, source_version)[0]
            return self.examples.export_digits_png(dest, model, f"{source} v{source_version}")
        raise KeyError(name)

    def build_model(self, name: str) -> None:
        staging = self.out / f".staging-{name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for version in MODELS[name]:
            started = time.monotonic()
            summary = self.export(name, version, staging / str(version))
            size = sum(f.stat().st_size for f in (staging / str(version)).rglob("*") if f.is_file())
            took = time.monotonic() - started
            self.log(f"build  {name} v{version}: {summary} ({size / 1024:.0f} KiB, {took:.1f} s)")
        (staging / STAMP).write_text(stamp_for(name) + "\n")
        final, old = self.out / name, self.out / f".old-{name}"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tfstack.model_repo.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"models root (default {DEFAULT_OUT})"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--only", action="append", choices=list(MODELS), help="build just this model (repeatable)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    build(args.out, args.force, log=lambda line: print(line, flush=True), only=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
