"""tfstack: run the stack on this machine, check a model repository, export a Keras model.

`tfstack up` runs the model server and the gateway on loopback; `tfstack validate` checks a model
repository and its TF Serving config before `helm install`; `tfstack export` turns a Keras model
into a version folder TF Serving loads.

Each subcommand lives in its own module; TensorFlow is imported only by the ones that need it.
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    from model_repo import validate
    from tfstack import export, up

    parser = argparse.ArgumentParser(prog="tfstack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up.add_arguments(
        sub.add_parser("up", help="run the model server and the gateway locally until Ctrl-C")
    ).set_defaults(run=up.run)
    validate.add_arguments(
        sub.add_parser(
            "validate",
            help="check a TF Serving model config and the models it points at",
            description=validate.DESCRIPTION,
        )
    ).set_defaults(run=validate.run)
    export.add_arguments(
        sub.add_parser(
            "export",
            help="write a Keras model (.keras, .h5) or SavedModel as a version TF Serving loads",
            description=export.__doc__.splitlines()[0],
        )
    ).set_defaults(run=export.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
