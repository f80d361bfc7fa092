"""tensorflow_model_server's command line (`model_servers/main.cc`): same names, same defaults,
`--name=value` or `--name value`, a bare `--bool_flag` means true. Plus tfstack's `--host`.

Flags TF Serving has but this server does not implement are accepted with a warning (they only
tune things that do not exist here), except the ones whose silent absence would be unsafe
(TLS/ALTS credentials), which stop the server with a message.
"""

from __future__ import annotations

import argparse
import os

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _bool(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# name -> (type, default, help). Implemented: they change what the server does.
SUPPORTED: dict[str, tuple[type, object, str]] = {
    "port": (int, 8500, "gRPC port; 0 disables TCP gRPC"),
    "grpc_socket_path": (str, "", "also serve gRPC on this Unix socket"),
    "rest_api_port": (int, 0, "REST API port; 0 (the default) disables REST"),
    "rest_api_timeout_in_ms": (int, 30000, "session run timeout of every inference"),
    "rest_api_enable_cors_support": (_bool, False, "add CORS headers to REST responses"),
    "rest_api_num_threads": (int, 0, "accepted; REST uses a thread per connection"),
    "enable_batching": (_bool, False, "server-side batching of Predict calls"),
    "batching_parameters_file": (str, "", "BatchingParameters text proto"),
    "allow_version_labels_for_unavailable_models": (
        _bool,
        False,
        "labels may point at versions not yet loaded (new labels only)",
    ),
    "model_config_file": (str, "", "ModelServerConfig text proto"),
    "model_config_file_poll_wait_seconds": (int, 0, "re-read the config every N s; 0 = never"),
    "model_name": (str, "default", "single-model mode: model name"),
    "model_base_path": (str, "", "single-model mode: base path"),
    "max_num_load_retries": (int, 5, "retries of a failed version load"),
    "load_retry_interval_micros": (int, 60_000_000, "wait between load retries"),
    "file_system_poll_wait_seconds": (int, 1, "poll base paths every N s; 0 = once"),
    "tensorflow_session_parallelism": (int, 0, "both thread pools; 0 = auto"),
    "tensorflow_intra_op_parallelism": (int, 0, "intra-op threads; 0 = auto"),
    "tensorflow_inter_op_parallelism": (int, 0, "inter-op threads; 0 = auto"),
    "saved_model_tags": (str, "serve", "comma-separated MetaGraph tags"),
    "grpc_channel_arguments": (str, "", "k=v,k=v gRPC server arguments"),
    "grpc_max_threads": (int, 4 * (os.cpu_count() or 1), "gRPC worker threads"),
    "enable_model_warmup": (_bool, True, "replay assets.extra/tf_serving_warmup_requests"),
    "num_request_iterations_for_warmup": (int, 0, "replays per warmup record (0 = 1)"),
    "monitoring_config_file": (str, "", "MonitoringConfig text proto"),
    "enable_serialization_as_tensor_content": (_bool, False, "packed tensor_content outputs"),
}

# Accepted for command-line compatibility; they have no effect here (a warning says so).
IGNORED: dict[str, type] = {
    "enable_per_model_batching_parameters": _bool,
    "num_load_threads": int,
    "num_unload_threads": int,
    "flush_filesystem_caches": _bool,
    "tensorflow_session_config_file": str,
    "platform_config_file": str,
    "per_process_gpu_memory_fraction": float,
    "remove_unused_fields_from_bundle_metagraph": _bool,
    "prefer_tflite_model": _bool,
    "num_tflite_pools": int,
    "num_tflite_interpreters_per_pool": int,
    "enable_signature_method_name_check": _bool,
    "xla_cpu_compilation_enabled": _bool,
    "xla_gpu_compilation_enabled": _bool,
    "enable_profiler": _bool,
    "thread_pool_factory_config_file": str,
    "mixed_precision": str,
    "skip_initialize_tpu": _bool,
    "enable_grpc_healthcheck_service": _bool,
}

# Refused: serving without the credentials the user asked for would be a silent downgrade.
REFUSED = {
    "ssl_config_file": "TLS is not supported by this local server; terminate TLS in front of it",
    "use_alts_credentials": "ALTS is not supported by this local server",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfstack-modelserver",
        description="TF-Serving-compatible model server (tfstack).",
        allow_abbrev=False,
    )
    parser.add_argument("--host", default="0.0.0.0", help="bind address (tfstack extension)")
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    for name, (kind, default, text) in SUPPORTED.items():
        _add(parser, name, kind, default, text)
    for name, kind in IGNORED.items():
        _add(parser, name, kind, None, "accepted for compatibility; no effect here")
    for name, why in REFUSED.items():
        _add(parser, name, str, None, f"refused: {why}")
    return parser


def _add(parser, name: str, kind, default, text: str) -> None:
    if kind is _bool:
        parser.add_argument(
            f"--{name}", type=_bool, nargs="?", const=True, default=default, help=text
        )
    else:
        parser.add_argument(f"--{name}", type=kind, default=default, help=text)


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str], list[str]]:
    """(flags, unknown arguments, warnings). Refused flags exit with status 2."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    warnings = [
        f"--{name} is accepted for compatibility with tensorflow_model_server but has no "
        "effect in this server"
        for name in IGNORED
        if getattr(args, name) is not None
    ]
    for name, why in REFUSED.items():
        value = getattr(args, name)
        if value not in (None, "", "false", "0"):
            parser.error(f"--{name}: {why}")
    if args.batching_parameters_file and not args.enable_batching:
        parser.error(
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true."
        )
    if (
        args.tensorflow_session_parallelism > 0
        and args.tensorflow_intra_op_parallelism > 0
        and args.tensorflow_inter_op_parallelism > 0
    ):
        parser.error(
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism). Both configured."
        )
    return args, unknown, warnings


def channel_arguments(text: str) -> list[tuple[str, object]]:
    """`--grpc_channel_arguments`: ints stay ints, everything else is a string."""
    result: list[tuple[str, object]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        try:
            result.append((key, int(value)))
        except ValueError:
            result.append((key, value))
    return result
