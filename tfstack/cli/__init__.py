"""tfstack: run the stack locally, check model repositories, export Keras models, build images.

`tfstack up` runs the model server and the gateway on loopback; `tfstack validate` checks a model
repository and its TF Serving config before `helm install`; `tfstack export` turns a Keras model
into a version folder TF Serving loads; `tfstack image` builds a folder of models into a models
image for the Helm chart and prints the chart values that serve it.

Each subcommand lives in its own module; TensorFlow is imported only by the ones that need it.
"""

from __future__ import annotations

import argparse


def _parser() -> argparse.ArgumentParser:
    from tfstack import __version__
    from tfstack.cli import export, image, up
    from tfstack.model_repo import validate

    parser = argparse.ArgumentParser(prog="tfstack", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tfstack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    verbs = [
        (up, "up", "run the model server and the gateway locally until Ctrl-C", None),
        (
            validate,
            "validate",
            "check a TF Serving model config and the models it points at",
            validate.DESCRIPTION,
        ),
        (
            export,
            "export",
            "write a Keras model (.keras, .h5) or SavedModel as a version TF Serving loads",
            export.__doc__.splitlines()[0],
        ),
        (
            image,
            "image",
            "build a models image for the Helm chart from a folder of models",
            image.__doc__.splitlines()[0],
        ),
    ]
    for module, name, summary, description in verbs:
        parser_ = sub.add_parser(name, help=summary, description=description)
        module.add_arguments(parser_).set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)
