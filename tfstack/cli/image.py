"""`tfstack image DIR --tag REF`: a models image for the Helm chart, built from a folder of models.

DIR is what `tfstack up --models` serves: TF Serving's layout, DIR/NAME/VERSION/saved_model.pb. It
is checked the same way first (layout, then `tfstack validate` on a config listing every model at
the path the chart mounts, /models/NAME). Then a build context of the example models image's shape
is written: `models/` (each model's version folders), `models.config` (that checked config), the
project's batching and monitoring configs, and model_repo/Dockerfile itself, which sets the file
modes and runs as non-root. `docker build` runs on it (`--builder podman` works the same way;
without a builder the command is printed), and the chart values that serve the image are printed.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from tfstack.cli import repo
from tfstack.model_repo import validate

MODEL_REPO = Path(__file__).resolve().parents[2] / "model_repo"
DOCKERFILE = MODEL_REPO / "Dockerfile"
CONFIGS = ("batching_parameters.txt", "monitoring.config")
MOUNT = "/models"  # where the chart's init container copies from and TF Serving reads
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


@dataclass(frozen=True)
class Context:
    """A written build context and what its `models/` holds (model name -> versions)."""

    path: Path
    models: dict[str, list[int]]

    def build_args(self) -> dict[str, str]:
        held = ", ".join(
            name + (f" ({', '.join(f'v{v}' for v in vs)})" if len(vs) > 1 else "")
            for name, vs in self.models.items()
        )
        return {"TITLE": "tfstack models", "DESCRIPTION": f"TF Serving SavedModels: {held}"}

    def command(self, builder: str, ref: str) -> list[str]:
        args = [a for k, v in self.build_args().items() for a in ("--build-arg", f"{k}={v}")]
        return [
            builder,
            "build",
            "-f",
            str(self.path / "Dockerfile"),
            "-t",
            ref,
            *args,
            str(self.path),
        ]


def split_ref(ref: str) -> tuple[str, str]:
    """`registry/path/name:tag` -> (repository, tag); no tag means Docker's `latest`."""
    if "@" in ref:
        raise repo.RepoError(
            f"--tag {ref}: give a tag, not a digest (pin the pushed image's digest afterwards "
            "with modelSource.image.digest)"
        )
    name, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:  # no colon, or the colon of a registry's port
        return ref, "latest"
    return name, tag


def write_context(given: Path, dest: Path) -> Context:
    """Check the models in `given` and write the build context into `dest` (new or empty)."""
    src = given.resolve()
    models = repo.scan_models(src, use="tfstack image")
    config = repo.folder_config(src)
    for entry in config.model_config_list.config:
        entry.base_path = f"{MOUNT}/{entry.name}"
    if dest.exists() and any(dest.iterdir()):
        raise repo.RepoError(f"--context {dest}: not empty (give a new or empty folder)")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "models.config").write_text(
        "# TF Serving model_config_list for the models in this image, at the paths the Helm chart\n"
        f"# mounts; written by `tfstack image {given}`. The chart renders its own from `models:`.\n"
        + text_format.MessageToString(config)
    )
    # `tfstack validate models.config --path-map /models=SRC`: the checks run on the user's own
    # folder, and each message names the path in it to fix.
    checker = validate.Checker(str(dest / "models.config"), [(MOUNT, str(src))])
    checker.run()
    if checker.problems:
        raise repo.RepoError("\n".join(p.message for p in sorted(checker.problems)))
    for name in models:
        for version_dir in repo.version_dirs(src / name).values():
            shutil.copytree(version_dir, dest / "models" / name / version_dir.name)
    for name in CONFIGS:
        shutil.copy(MODEL_REPO / name, dest / name)
    shutil.copy(DOCKERFILE, dest / "Dockerfile")
    return Context(dest, models)


def _scalar(text: str) -> str:
    """`text` as a YAML scalar that stays a string."""
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def chart_values(repository: str, tag: str, models: dict[str, list[int]]) -> str:
    """The values that serve the image's models with the chart (`-f` file contents)."""
    lines = [
        "modelSource:",
        "  type: image",
        "  image:",
        f"    repository: {_scalar(repository)}",
        f"    tag: {json.dumps(tag)}",
        "models:",
    ]
    for name, versions in models.items():
        if len(versions) > 1:
            held = ", ".join(map(str, versions))
            lines.append(
                f"  # {name}: the image holds versions {held}; the chart serves the newest "
                "(versionPolicy: all serves each)"
            )
        lines.append(f"  {_scalar(name)}: {{}}")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "models",
        type=Path,
        metavar="DIR",
        help="a folder in TF Serving's layout, DIR/NAME/VERSION/saved_model.pb (what `tfstack "
        "export` writes)",
    )
    parser.add_argument(
        "--tag",
        required=True,
        metavar="REF",
        help="the image reference to build, e.g. registry.example.com/team/churn-models:1",
    )
    parser.add_argument(
        "--context",
        type=Path,
        metavar="OUT",
        help="write the build context here (a new or empty folder) and keep it; default: a "
        "temporary folder, removed after a successful build",
    )
    parser.add_argument(
        "--builder",
        default="docker",
        metavar="CMD",
        help="the container builder run as `CMD build -f ... -t REF CONTEXT` (docker, podman)",
    )
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="write the context and print the build command, without building",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        repository, tag = split_ref(args.tag)
        dest = args.context or Path(tempfile.mkdtemp(prefix="tfstack-image-"))
        ours = not args.context or not args.context.exists()  # ours to remove on failure
        try:
            context = write_context(args.models, dest)
        except BaseException:
            if ours:
                shutil.rmtree(dest, ignore_errors=True)
            raise
    except repo.RepoError as err:
        print(f"tfstack image: {err}", file=sys.stderr, flush=True)
        return 2
    held = ", ".join(
        f"{name} (version{'s' if len(vs) > 1 else ''} {', '.join(map(str, vs))})"
        for name, vs in context.models.items()
    )
    print(f"checked: {args.models} holds {held}; `tfstack validate` passes on it")
    command = context.command(args.builder, args.tag)
    if args.no_build:
        print(f"build context written to {context.path}; build it with:\n  {shlex.join(command)}")
    else:
        builder = shutil.which(args.builder)
        if not builder:
            print(
                f"tfstack image: {args.builder} not found on PATH. The build context is in "
                f"{context.path}; build it where a builder runs with:\n  {shlex.join(command)}\n"
                "(or choose one with --builder, e.g. podman)",
                file=sys.stderr,
                flush=True,
            )
            return 2
        print(f"building {args.tag}:\n  {shlex.join(command)}", flush=True)
        result = subprocess.run([builder, *command[1:]], check=False)
        if result.returncode != 0:
            print(
                f"tfstack image: {args.builder} build failed (exit {result.returncode}); the "
                f"context is kept in {context.path}",
                file=sys.stderr,
                flush=True,
            )
            return result.returncode
        if not args.context:
            shutil.rmtree(context.path, ignore_errors=True)
        ref = shlex.quote(args.tag)
        print(
            f"built {args.tag}; push it where the cluster pulls from:\n"
            f"  {args.builder} push {ref}\n  (a kind cluster: kind load docker-image {ref})"
        )
    print(
        "\nchart values for it (e.g. my-values.yaml, then `helm install NAME charts/tfstack "
        "-f my-values.yaml`):"
    )
    print(chart_values(repository, tag, context.models), end="")
    return 0
