"""`tfstack up`: the whole stack on one machine.

It starts the local TF-Serving-compatible model server, the gateway under gunicorn and the
gateway's gRPC front door, all on loopback. The model server serves the example models (`make
models`), every model in a folder in TF Serving's layout (`--models DIR`), or a TF Serving model
config file (`--model-config FILE`).
It waits until both are ready, prints where they are and a `curl` that works, and on Ctrl-C or
SIGTERM stops everything it started (each child runs in its own process group, so gunicorn's
workers go too).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import quote

from tfstack.cli import repo
from tfstack.model_repo import validate
from tfstack.model_repo.config import ConfigError
from tfstack.runtime.procs import ManagedProcess, http_status, port_open

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text}")
    return value


def add_arguments(up: argparse.ArgumentParser) -> argparse.ArgumentParser:
    up.add_argument("--host", default="127.0.0.1", help="bind address for every process")
    up.add_argument("--gateway-port", type=int, default=8080)
    up.add_argument(
        "--gateway-grpc-port",
        type=int,
        default=8090,
        help="the gateway's gRPC front door (TF Serving's gRPC API; 8500 is the model server's)",
    )
    up.add_argument(
        "--gateway-grpc-ops-port", type=int, default=8091, help="its /healthz /readyz /metrics"
    )
    up.add_argument("--grpc-port", type=int, default=8500, help="model server gRPC port")
    up.add_argument("--rest-port", type=int, default=8501, help="model server REST port")
    what = up.add_mutually_exclusive_group()
    what.add_argument(
        "--models",
        type=Path,
        metavar="DIR",
        help="serve every model in DIR, laid out as TF Serving wants: DIR/NAME/VERSION/"
        "saved_model.pb (what `tfstack export` writes); each model's latest version",
    )
    what.add_argument(
        "--model-config",
        type=Path,
        metavar="FILE",
        help="serve the models a TF Serving model config file (model_config_list) lists",
    )
    what.add_argument(
        "--models-root",
        type=Path,
        default=REPO / "model_repo" / "models",
        help="where the example models are built (the default: `make models` builds them)",
    )
    up.add_argument(
        "--label",
        type=repo.parse_label,
        action="append",
        default=[],
        metavar="NAME:LABEL=VERSION",
        help="with --models: a version label (e.g. churn:canary=2; the version is served too). "
        "Repeatable",
    )
    up.add_argument(
        "--all-versions", action="store_true", help="with --models: serve every version found"
    )
    up.add_argument(
        "--path-map",
        type=validate._path_map,  # noqa: SLF001 (the validator's own FROM=TO parser)
        action="append",
        default=[],
        metavar="FROM=TO",
        help="with --model-config: read base paths under FROM (e.g. /models, as a container sees "
        "them) from the local folder TO. Repeatable",
    )
    up.add_argument("--run-dir", type=Path, default=REPO / ".run", help="logs and rendered config")
    up.add_argument("--workers", type=int, default=None, help="gateway workers (TFSTACK_WORKERS)")
    up.add_argument("--enable-batching", action="store_true", help="server-side batching")
    up.add_argument(
        "--batching-parameters",
        type=Path,
        metavar="FILE",
        help="TF Serving BatchingParameters file (implies --enable-batching; default "
        "model_repo/batching_parameters.txt)",
    )
    up.add_argument(
        "--max-batch-size",
        type=_positive,
        help="batching: largest batch (implies --enable-batching)",
    )
    up.add_argument(
        "--batch-timeout-micros",
        type=_non_negative,
        help="batching: longest wait for a batch to fill (implies --enable-batching)",
    )
    up.add_argument(
        "--with-prometheus",
        action="store_true",
        help="also run Prometheus (from .tools/, see ci/tools/install-prometheus.sh) with "
        "tfstack's rules, scraping the gateway and the model server",
    )
    up.add_argument("--prometheus-port", type=int, default=9090)
    up.add_argument(
        "--ready-timeout", type=float, default=180.0, help="seconds to wait for readiness"
    )
    return up


def _check_ports_free(host: str, ports: dict[str, int]) -> None:
    busy = [f"{what} port {port}" for what, port in ports.items() if port_open(host, port)]
    if busy:
        raise SystemExit(
            f"tfstack up: {', '.join(busy)} on {host} already in use "
            "(another `tfstack up`?); choose others with --gateway-port, --gateway-grpc-port, "
            "--gateway-grpc-ops-port, --grpc-port, --rest-port"
        )


def _render_config(args: argparse.Namespace) -> repo.Served:
    """Write the model config the model server reads into the run folder; check it first."""
    dest = args.run_dir / "models.config"
    if args.label and not args.models:
        raise repo.RepoError(
            "--label goes with --models (a config file has its own version_labels)"
        )
    if args.path_map and not args.model_config:
        raise repo.RepoError("--path-map goes with --model-config")
    if args.models:
        config = repo.folder_config(args.models, args.label, args.all_versions)
        return repo.write_checked(config, dest, f"tfstack up --models {args.models}")
    if args.model_config:
        repo.check_config_file(args.model_config, args.path_map)
        config = repo.mapped_config(args.model_config, args.path_map)
        return repo.write_checked(config, dest, f"tfstack up --model-config {args.model_config}")
    from tfstack.model_repo.config import render_local_config

    root = args.models_root.resolve()
    if not root.is_dir() or not any(root.iterdir()):
        raise repo.RepoError(f"no models in {root}; run `make models` first")
    dest.write_text(render_local_config(root))
    return repo.Served(dest, {"half_plus_two": [1]}, examples=True)


def _batching(args: argparse.Namespace) -> Path | None:
    overrides = (args.max_batch_size, args.batch_timeout_micros)
    if not (
        args.enable_batching or args.batching_parameters or any(v is not None for v in overrides)
    ):
        return None
    base = args.batching_parameters or REPO / "model_repo" / "batching_parameters.txt"
    return repo.batching_parameters(base, args.run_dir / "batching_parameters.txt", *overrides)


def _modelserver(args: argparse.Namespace, config: Path, batching: Path | None) -> ManagedProcess:
    argv = [
        str(VENV_BIN / "python"),
        "-m",
        "tfstack.modelserver",
        f"--host={args.host}",
        f"--port={args.grpc_port}",
        f"--rest_api_port={args.rest_port}",
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=5",
        f"--monitoring_config_file={REPO / 'model_repo' / 'monitoring.config'}",
        "--allow_version_labels_for_unavailable_models",
    ]
    if batching:
        argv += ["--enable_batching", f"--batching_parameters_file={batching}"]
    return ManagedProcess("model server", argv, args.run_dir / "modelserver.log", cwd=REPO)


def _gateway_env(args: argparse.Namespace) -> dict[str, str]:
    """Both front doors' settings (the gRPC one ignores PROMETHEUS_MULTIPROC_DIR: one process)."""
    env = dict(os.environ)
    env.update(
        TFSTACK_BIND=f"{args.host}:{args.gateway_port}",
        TFSTACK_GRPC_BIND=f"{args.host}:{args.gateway_grpc_port}",
        TFSTACK_GRPC_OPS_BIND=f"{args.host}:{args.gateway_grpc_ops_port}",
        TFSTACK_BACKENDS=f"{args.host}:{args.grpc_port}",
        PROMETHEUS_MULTIPROC_DIR=str(args.run_dir / "gateway-metrics"),
    )
    if args.workers:
        env["TFSTACK_WORKERS"] = str(args.workers)
    return env


def _gateway(args: argparse.Namespace) -> ManagedProcess:
    argv = [
        str(VENV_BIN / "gunicorn"),
        "-c",
        str(REPO / "tfstack" / "gateway" / "gunicorn.conf.py"),
        "tfstack.gateway.app:create_app()",
    ]
    env = _gateway_env(args)
    return ManagedProcess("gateway", argv, args.run_dir / "gateway.log", env=env, cwd=REPO)


def _grpc_gateway(args: argparse.Namespace) -> ManagedProcess:
    """The gateway's gRPC front door: its own process beside gunicorn."""
    argv = [str(VENV_BIN / "python"), "-m", "tfstack.gateway.grpc_server"]
    env = _gateway_env(args)
    log = args.run_dir / "gateway-grpc.log"
    return ManagedProcess("gateway (gRPC)", argv, log, env=env, cwd=REPO)


def _prometheus(args: argparse.Namespace) -> ManagedProcess:
    from tfstack.observability.local import start_prometheus

    targets = {
        "gateway": [
            f"{args.host}:{args.gateway_port}",  # REST
            f"{args.host}:{args.gateway_grpc_ops_port}",  # the gRPC front door
        ],
        "tfserving": [f"{args.host}:{args.rest_port}"],
    }
    return start_prometheus(
        targets,
        port=args.prometheus_port,
        data_dir=args.run_dir / "prometheus",
        scrape_interval="5s",
        host=args.host,
    )


def _try_lines(gw: str, served: repo.Served) -> str:
    if served.examples:
        body = '{"instances": [1.0, 2.0, 5.0]}'
        return (
            f"  curl -s -X POST {gw}/v1/models/half_plus_two:predict -d '{body}'\n"
            f"  curl -s {gw}/v1/models/digits/labels/canary\n"
            f"  curl -s {gw}/v1/models/digits/metadata"
        )
    lines, body = [], '{"instances": [...]}'
    for name, versions in served.models.items():
        labels = ", ".join(f"{k}={v}" for k, v in sorted(served.labels.get(name, {}).items()))
        what = f"version(s) {', '.join(map(str, versions))}" + (
            f"; labels {labels}" if labels else ""
        )
        lines += [
            f"  {name}: {what}",
            f"    curl -s {gw}/v1/models/{quote(name)}/metadata",
            f"    curl -s -X POST {gw}/v1/models/{quote(name)}:predict -d '{body}'",
        ]
    return "\n".join(lines)


def _banner(args: argparse.Namespace, served: repo.Served) -> str:
    gw = f"http://{args.host}:{args.gateway_port}"
    prometheus = (
        f"  prometheus   http://{args.host}:{args.prometheus_port}   (tfstack's rules and alerts)\n"
        if args.with_prometheus
        else ""
    )
    return f"""
tfstack is up.
  gateway      {gw}   (TF Serving REST API; /healthz /readyz /metrics)
  gateway gRPC {args.host}:{args.gateway_grpc_port}   (TF Serving gRPC API; /healthz /readyz
               /metrics at http://{args.host}:{args.gateway_grpc_ops_port})
  model server grpc {args.host}:{args.grpc_port}, rest http://{args.host}:{args.rest_port}
               (metrics at /monitoring/prometheus/metrics)
{prometheus}  config       {served.config_path}
  logs         {args.run_dir}/gateway.log, {args.run_dir}/gateway-grpc.log,
               {args.run_dir}/modelserver.log

Try it:
{_try_lines(gw, served)}

Ctrl-C stops everything.
"""


def run(args: argparse.Namespace) -> int:
    args.run_dir.mkdir(parents=True, exist_ok=True)
    _check_ports_free(
        args.host,
        {"gateway": args.gateway_port, "gateway gRPC": args.gateway_grpc_port,
         "gateway gRPC ops": args.gateway_grpc_ops_port, "gRPC": args.grpc_port,
         "REST": args.rest_port}
        | ({"Prometheus": args.prometheus_port} if args.with_prometheus else {}),
    )
    try:
        served = _render_config(args)
        batching = _batching(args)
    except (repo.RepoError, ConfigError) as err:
        print(f"tfstack up: {err}", file=sys.stderr, flush=True)
        return 2
    config = served.config_path
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    server, gateway = _modelserver(args, config, batching), _gateway(args)
    grpc_gateway = _grpc_gateway(args)
    started: list[ManagedProcess] = []

    def ready(proc: ManagedProcess, url: str) -> bool:
        """Wait for `url` to answer 200; False when asked to stop meanwhile."""
        proc.wait_until(
            lambda: stop.is_set() or http_status(url) == 200,
            args.ready_timeout,
            f"answering 200 at {url}",
        )
        return not stop.is_set()

    try:
        print(f"starting the model server on {config} ...", flush=True)
        started.append(server.start())
        first = quote(next(iter(served.models)))
        if not ready(server, f"http://{args.host}:{args.rest_port}/v1/models/{first}"):
            return 0
        print("starting the gateway (REST and gRPC) ...", flush=True)
        started += [gateway.start(), grpc_gateway.start()]
        if not ready(gateway, f"http://{args.host}:{args.gateway_port}/readyz"):
            return 0
        if not ready(grpc_gateway, f"http://{args.host}:{args.gateway_grpc_ops_port}/readyz"):
            return 0
        if args.with_prometheus:
            print("starting Prometheus ...", flush=True)
            started.append(_prometheus(args))
        print(_banner(args, served), flush=True)
        while not stop.wait(0.5):
            for proc in started:
                if not proc.alive():
                    print(f"tfstack up: the {proc.name} exited; see {proc.log_path}:", flush=True)
                    print(proc.log_tail(), flush=True)
                    return 1
        return 0
    except (TimeoutError, RuntimeError) as err:  # includes a missing Prometheus binary
        print(f"tfstack up: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("stopping ...", flush=True)
        for proc in reversed(started):
            proc.stop()
        print("stopped.", flush=True)
