"""What `tfstack up` serves: a folder of models in TF Serving's layout, or a model config file.

`--models DIR` serves every `DIR/NAME/VERSION/saved_model.pb` (TF Serving's own layout: one
folder per model, numeric version folders inside), rendered into a `model_config_list` with
absolute base paths. `--model-config FILE` serves a config the user wrote, with `--path-map` for
base paths written for a container (`/models/...`). Either way the validator checks the result
first, so a wrong folder fails here with the path named, not later as a model server that waits
forever. Batching parameters are rendered from a file plus command-line overrides, and checked too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfstack.model_repo import config as repo_config
from tfstack.model_repo import layout, validate

_LABEL = re.compile(r"(?P<model>[^:=]+):(?P<label>[^:=]+)=(?P<version>\d+)")


class RepoError(Exception):
    """What is wrong with the models to serve; the message names the paths."""


@dataclass(frozen=True)
class Label:
    model: str
    label: str
    version: int


def parse_label(text: str) -> Label:
    """`--label NAME:LABEL=VERSION`, e.g. `churn:canary=2`."""
    match = _LABEL.fullmatch(text)
    if not match:
        import argparse

        raise argparse.ArgumentTypeError(
            f"expected NAME:LABEL=VERSION (e.g. churn:stable=1), got {text!r}"
        )
    return Label(match["model"], match["label"], int(match["version"]))


@dataclass
class Served:
    """The rendered config and what it serves: model name -> versions, labels."""

    config_path: Path
    models: dict[str, list[int]] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: bool = False  # the example models (README's `make run`)


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """Version number -> folder, ordered by version, as TF Serving reads a base path
    (`00000123` is version 123; tfstack/model_repo/layout.py)."""
    return layout.version_folders(model_dir)


def has_saved_model(version_dir: Path) -> bool:
    """A SavedModel's graph is there, binary or text (TF's ReadSavedModel takes either)."""
    return any((version_dir / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt"))


def scan_models(root: Path, use: str = "--models") -> dict[str, list[int]]:
    """Model name -> version numbers of every model under `root`, or RepoError naming the path.

    `use` is how the command that asks takes a folder of models, for the advice in the errors.
    """
    if not root.is_dir():
        raise RepoError(f"{root}: no such folder")
    if (root / "saved_model.pb").is_file():
        if layout.version_number(root.name) is not None:
            raise RepoError(
                f"{root} is version {root.name} of model {root.parent.name!r}, not a folder of "
                f"models: use {use} {root.parent.parent}"
            )
        raise RepoError(
            f"{root} is one SavedModel, not a folder of models: TF Serving wants "
            f"DIR/NAME/VERSION/saved_model.pb (move it to models/{root.name}/1/ and use "
            f"{use} models, or `tfstack export {root} --name NAME --out models`)"
        )
    own = list(version_dirs(root))
    if own:
        raise RepoError(
            f"{root} holds version folders ({', '.join(map(str, own))}) of one model, not models: "
            f"use {use} {root.parent} to serve it as {root.name!r}"
        )
    models, problems = {}, []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        dirs = version_dirs(child)
        if not dirs:
            problems.append(
                f"{child}: no numeric version folder (TF Serving wants {child}/1/saved_model.pb)"
            )
        problems.extend(f"{d}: no saved_model.pb" for d in dirs.values() if not has_saved_model(d))
        models[child.name] = list(dirs)
    if problems:
        raise RepoError("\n".join(problems))
    if not models:
        raise RepoError(
            f"{root} holds no models: TF Serving wants {root}/NAME/VERSION/saved_model.pb "
            f"(`tfstack export MODEL --name NAME --out {root}` writes one)"
        )
    return models


def folder_config(
    root: Path, labels: list[Label] = (), all_versions: bool = False
) -> model_server_config_pb2.ModelServerConfig:
    """A model_config_list serving every model in `root`.

    Each model serves its latest version (TF Serving's default policy), every version with
    `all_versions`, and otherwise also each version a label points at (labels need their version
    served).
    """
    root = root.resolve()
    models = scan_models(root)
    by_model: dict[str, dict[str, int]] = {}
    for label in labels:
        if label.model not in models:
            raise RepoError(
                f"--label {label.model}:{label.label}: no model {label.model!r} in {root}"
            )
        if label.version not in models[label.model]:
            found = ", ".join(map(str, models[label.model]))
            raise RepoError(
                f"--label {label.model}:{label.label}={label.version}: no version "
                f"{label.version} in {root / label.model} (found: {found})"
            )
        by_model.setdefault(label.model, {})[label.label] = label.version
    config = model_server_config_pb2.ModelServerConfig()
    for name, versions in models.items():
        entry = config.model_config_list.config.add(
            name=name, base_path=str(root / name), model_platform=validate.PLATFORM
        )
        if all_versions:
            entry.model_version_policy.all.SetInParent()
        elif name in by_model:
            served = sorted(set(by_model[name].values()) | {versions[-1]})
            entry.model_version_policy.specific.versions.extend(served)
        for label, version in sorted(by_model.get(name, {}).items()):
            entry.version_labels[label] = version
    return config


def mapped_config(
    path: Path, path_map: list[tuple[str, str]]
) -> model_server_config_pb2.ModelServerConfig:
    """The user's config file with `--path-map` applied to its base paths."""
    config = repo_config.parse_model_server_config(path)
    for entry in config.model_config_list.config:
        entry.base_path = repo_config.map_path(entry.base_path, path_map)
    return config


def write_checked(
    config: model_server_config_pb2.ModelServerConfig, dest: Path, header: str
) -> Served:
    """Write `config` to `dest` and run the validator on it; RepoError lists its problems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(f"# {header}\n" + text_format.MessageToString(config))
    checker = validate.Checker(str(dest), [])
    checker.run()
    if checker.problems:
        raise RepoError("\n".join(str(p) for p in sorted(checker.problems)))
    served = Served(dest)
    for model in checker.models:
        served.models[model.name] = model.versions
        if model.labels:
            served.labels[model.name] = model.labels
    return served


def check_config_file(path: Path, path_map: list[tuple[str, str]]) -> None:
    """The validator on the user's own file, so problems point at its lines."""
    checker = validate.Checker(str(path), path_map)
    checker.run()
    if checker.problems:
        raise RepoError("\n".join(str(p) for p in sorted(checker.problems)))


def batching_parameters(
    base: Path, dest: Path, max_batch_size: int | None, batch_timeout_micros: int | None
) -> Path:
    """`base` with command-line overrides, written to `dest` and checked as TF Serving would."""
    from tfstack.model_repo.protos import BatchingParameters

    problems = validate.check_batching(str(base))
    if problems:
        raise RepoError("\n".join(str(p) for p in problems))
    params = repo_config.parse_file(base, BatchingParameters())
    if max_batch_size is not None:
        params.max_batch_size.value = max_batch_size
        # allowed_batch_sizes must end at max_batch_size: keep the smaller ones, end with it.
        sizes = [s for s in params.allowed_batch_sizes if s < max_batch_size]
        if params.allowed_batch_sizes:
            del params.allowed_batch_sizes[:]
            params.allowed_batch_sizes.extend([*sizes, max_batch_size])
    if batch_timeout_micros is not None:
        params.batch_timeout_micros.value = batch_timeout_micros
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        f"# from {base}, with tfstack up's overrides\n" + text_format.MessageToString(params)
    )
    problems = validate.check_batching(str(dest))
    if problems:
        raise RepoError("\n".join(str(p) for p in problems))
    return dest
