"""`tfstack-modelserver` / `python -m tfstack.modelserver`: wire flags, config, manager, batching,
gRPC and REST together; open the ports only after the initial load; drain on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from tfstack.modelserver import flags
from tfstack.runtime import logconfig

log = logging.getLogger("tfstack.modelserver")

SHUTDOWN_GRACE_SECONDS = 10.0
EXIT_START_FAILED = 255  # TF Serving's main returns -1


def _session_config(args):
    from tensorflow.core.protobuf import config_pb2

    cpus = os.cpu_count() or 1
    intra = args.tensorflow_intra_op_parallelism or args.tensorflow_session_parallelism
    inter = args.tensorflow_inter_op_parallelism or args.tensorflow_session_parallelism
    # 0 means auto: small pools, since requests already run concurrently on their own threads.
    return config_pb2.ConfigProto(
        intra_op_parallelism_threads=intra or min(cpus, 2),
        inter_op_parallelism_threads=inter or min(cpus, 2),
    )


class ConfigWatcher:
    """Re-reads `--model_config_file` every N seconds (server.cc PollFilesystemAndReloadConfig)."""

    def __init__(self, path: Path, interval: float, reload) -> None:
        self._path, self._interval, self._reload = path, interval, reload
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._loop, name="config-poll", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        from tfstack.modelserver.config import ConfigFileError, read_model_server_config
        from tfstack.modelserver.errors import ServingError

        while not self._stop.wait(self._interval):
            try:
                config = read_model_server_config(self._path)
            except (ConfigFileError, OSError) as err:
                log.error(
                    "Failed to read ModelServerConfig file: Invalid protobuf file: '%s' (%s)",
                    self._path,
                    err,
                )
                continue
            try:
                self._reload(config, self._path)
            except ServingError as err:
                log.error(
                    "PollFilesystemAndReloadConfig failed to ReloadConfig: %s: %s",
                    err.code_name,
                    err.message,
                )


def main(argv: list[str] | None = None) -> int:
    args, unknown, warnings = flags.parse(argv)
    logconfig.setup("info")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.version:
        import tensorflow as tf

        from tfstack.modelserver import __version__

        print(f"TensorFlow ModelServer: {__version__}-tfstack")
        print(f"TensorFlow Library: {tf.__version__}")
        return 0
    for arg in unknown:
        log.error("unknown argument: %s", arg)
    for warning in warnings:
        log.warning(warning)
    code = Server(args).run()
    # Everything is drained by now; skip interpreter teardown (joining gRPC's executor and
    # destroying TF's thread pools takes seconds and serves nobody).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Server:
    def __init__(self, args) -> None:
        self.args = args
        self.stop_event = threading.Event()
        self._reload_lock = threading.Lock()

    def _initial_config(self):
        from tfstack.modelserver import config as cfg

        args = self.args
        if args.model_config_file:
            path = Path(args.model_config_file)
            return cfg.read_model_server_config(path), path
        if not args.model_base_path:
            raise cfg.ConfigFileError(
                "Both server_options.model_base_path and server_options.model_config_file "
                "are empty!"
            )
        return cfg.single_model_config(args.model_name, args.model_base_path), None

    def reload(self, config, source: Path | None = None) -> None:
        with self._reload_lock:
            self.manager.reload(config, source)

    def run(self) -> int:
        from tfstack.modelserver import config as cfg
        from tfstack.modelserver.errors import ServingError

        try:
            model_config, source = self._initial_config()
            cfg.validate_model_config(model_config, source)  # before TensorFlow's slow import
            monitoring = cfg.read_monitoring_config(self.args.monitoring_config_file or None)
            batching = (
                cfg.read_batching_parameters(self.args.batching_parameters_file or None)
                if self.args.enable_batching
                else None
            )
        except (cfg.ConfigFileError, OSError) as err:
            return _start_failed(str(err))
        except ServingError as err:
            return _start_failed(f"{err.code_name}: {err.message}")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        self._build(batching)
        try:
            self.manager.load_initial(model_config, source)
        except ServingError as err:
            return _start_failed(f"{err.code_name}: {err.message}")
        if self.stop_event.is_set():
            return 0
        return self._serve(monitoring)

    def _build(self, batching) -> None:
        import tensorflow as tf

        tf.compat.v1.disable_eager_execution()
        from tfstack.modelserver.batching import BatchScheduler
        from tfstack.modelserver.inference import Inference
        from tfstack.modelserver.manager import Manager, ManagerOptions
        from tfstack.modelserver.metrics import Metrics
        from tfstack.modelserver.servable import load_servable
        from tfstack.modelserver.warmup import make_warmup

        args = self.args
        self.metrics = Metrics()
        session_config = _session_config(args)
        tags = [t.strip() for t in args.saved_model_tags.split(",") if t.strip()]
        as_content = args.enable_serialization_as_tensor_content

        def loader(name, version, path):
            return load_servable(name, version, path, session_config, tags, as_content)

        warmup = None
        if args.enable_model_warmup:
            iterations = args.num_request_iterations_for_warmup

            def warmup(servable) -> None:
                # Replays through the core, which needs the manager: bound at call time, after
                # both exist (no model loads before load_initial).
                make_warmup(self.core, iterations)(servable)

        self.batcher = BatchScheduler(batching, self.metrics) if batching else None
        self.manager = Manager(
            loader,
            ManagerOptions(
                file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
                allow_version_labels_for_unavailable_models=(
                    args.allow_version_labels_for_unavailable_models
                ),
                max_num_load_retries=args.max_num_load_retries,
                load_retry_interval_seconds=args.load_retry_interval_micros / 1e6,
            ),
            self.metrics,
            warmup,
        )
        self.core = Inference(
            self.manager, self.metrics, self.batcher, as_content, args.rest_api_timeout_in_ms
        )

    def _serve(self, monitoring) -> int:
        from tfstack.modelserver.grpc_services import build_server
        from tfstack.modelserver.rest import RestApi, RestServer

        args = self.args
        grpc_server = build_server(
            self.core,
            self.reload,
            args.grpc_max_threads,
            flags.channel_arguments(args.grpc_channel_arguments),
        )
        try:
            if args.port:
                grpc_server.add_insecure_port(f"{args.host}:{args.port}")
            if args.grpc_socket_path:
                grpc_server.add_insecure_port(f"unix:{args.grpc_socket_path}")
        except RuntimeError as err:
            print(
                f"Failed to start server. Error: gRPC could not bind {args.host}:{args.port}: "
                f"{err}",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_START_FAILED
        if not args.port and not args.grpc_socket_path:
            print(
                "Failed to start server. Error: INVALID_ARGUMENT: At least one of "
                "server_options.grpc_port or server_options.grpc_socket_path must be set.",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_START_FAILED
        grpc_server.start()
        log.info("Running gRPC ModelServer at %s:%d ...", args.host, args.port)
        rest = None
        if args.rest_api_port and args.rest_api_port == args.port:
            log.error(
                "server_options.http_port cannot be same as grpc_port. Please use a "
                "different port for HTTP/REST API. Skipped setting up HTTP/REST API."
            )
        elif args.rest_api_port:
            metrics_path = monitoring.path if monitoring.enabled else None
            try:
                rest = RestServer(
                    args.host,
                    args.rest_api_port,
                    RestApi(self.core),
                    metrics_path,
                    args.rest_api_enable_cors_support,
                )
            except OSError as err:
                log.error(
                    "Failed to start HTTP Server at localhost:%d: %s", args.rest_api_port, err
                )
                grpc_server.stop(0)
                return EXIT_START_FAILED
            rest.start()
            log.info("Exporting HTTP/REST API at:localhost:%d ...", args.rest_api_port)
        self.manager.start_polling()
        watcher = None
        if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
            watcher = ConfigWatcher(
                Path(args.model_config_file), args.model_config_file_poll_wait_seconds, self.reload
            )
            watcher.start()
        self.stop_event.wait()
        return self._shutdown(grpc_server, rest, watcher)

    def _shutdown(self, grpc_server, rest, watcher) -> int:
        log.info(
            "Shutting down: no new requests; waiting up to %.0fs for in-flight ones",
            SHUTDOWN_GRACE_SECONDS,
        )
        if watcher is not None:
            watcher.stop()
        self.manager.stop()
        stopped = grpc_server.stop(SHUTDOWN_GRACE_SECONDS)
        if rest is not None:
            rest.stop(SHUTDOWN_GRACE_SECONDS)
        stopped.wait(SHUTDOWN_GRACE_SECONDS)
        log.info("Server stopped.")
        return 0


def _start_failed(error: str) -> int:
    """TF Serving's start-up failure: its message on stderr and exit code 255."""
    print(f"Failed to start server. Error: {error}", file=sys.stderr, flush=True)
    return EXIT_START_FAILED
