"""`tfstack up`: the whole stack on one machine.

It starts the local TF-Serving-compatible model server on the example models and the gateway under
gunicorn, both on loopback, waits until both are ready, prints where they are and a `curl` that
works, and on Ctrl-C or SIGTERM stops everything it started (each child runs in its own process
group, so gunicorn's workers go too).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from tfstack.procs import ManagedProcess, http_status, port_open

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def add_arguments(up: argparse.ArgumentParser) -> argparse.ArgumentParser:
    up.add_argument("--host", default="127.0.0.1", help="bind address for every process")
    up.add_argument("--gateway-port", type=int, default=8080)
    up.add_argument("--grpc-port", type=int, default=8500, help="model server gRPC port")
    up.add_argument("--rest-port", type=int, default=8501, help="model server REST port")
    up.add_argument(
        "--models-root",
        type=Path,
        default=REPO / "model_repo" / "models",
        help="built example models (`make models` builds them)",
    )
    up.add_argument("--run-dir", type=Path, default=REPO / ".run", help="logs and rendered config")
    up.add_argument("--workers", type=int, default=None, help="gateway workers (TFSTACK_WORKERS)")
    up.add_argument("--enable-batching", action="store_true", help="server-side batching")
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
            "(another `tfstack up`?); choose others with --gateway-port/--grpc-port/--rest-port"
        )


def _render_config(models_root: Path, run_dir: Path) -> Path:
    from model_repo.config import render_local_config

    if not models_root.is_dir() or not any(models_root.iterdir()):
        raise SystemExit(f"tfstack up: no models in {models_root}; run `make models` first")
    config = run_dir / "models.config"
    config.write_text(render_local_config(models_root))
    return config


def _modelserver(args: argparse.Namespace, config: Path) -> ManagedProcess:
    argv = [
        str(VENV_BIN / "python"),
        "-m",
        "modelserver",
        f"--host={args.host}",
        f"--port={args.grpc_port}",
        f"--rest_api_port={args.rest_port}",
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=5",
        f"--monitoring_config_file={REPO / 'model_repo' / 'monitoring.config'}",
        "--allow_version_labels_for_unavailable_models",
    ]
    if args.enable_batching:
        argv += [
            "--enable_batching",
            f"--batching_parameters_file={REPO / 'model_repo' / 'batching_parameters.txt'}",
        ]
    return ManagedProcess("model server", argv, args.run_dir / "modelserver.log", cwd=REPO)


def _gateway(args: argparse.Namespace) -> ManagedProcess:
    env = dict(os.environ)
    env.update(
        TFSTACK_BIND=f"{args.host}:{args.gateway_port}",
        TFSTACK_BACKENDS=f"{args.host}:{args.grpc_port}",
        PROMETHEUS_MULTIPROC_DIR=str(args.run_dir / "gateway-metrics"),
    )
    if args.workers:
        env["TFSTACK_WORKERS"] = str(args.workers)
    argv = [
        str(VENV_BIN / "gunicorn"),
        "-c",
        str(REPO / "gateway" / "gunicorn.conf.py"),
        "gateway.app:create_app()",
    ]
    return ManagedProcess("gateway", argv, args.run_dir / "gateway.log", env=env, cwd=REPO)


def _prometheus(args: argparse.Namespace) -> ManagedProcess:
    from observability.local import start_prometheus

    targets = {
        "gateway": [f"{args.host}:{args.gateway_port}"],
        "tfserving": [f"{args.host}:{args.rest_port}"],
    }
    return start_prometheus(
        targets,
        port=args.prometheus_port,
        data_dir=args.run_dir / "prometheus",
        scrape_interval="5s",
        host=args.host,
    )


def _banner(args: argparse.Namespace) -> str:
    gw = f"http://{args.host}:{args.gateway_port}"
    prometheus = (
        f"  prometheus   http://{args.host}:{args.prometheus_port}   (tfstack's rules and alerts)\n"
        if args.with_prometheus
        else ""
    )
    return f"""
tfstack is up.
  gateway      {gw}   (TF Serving REST API; /healthz /readyz /metrics)
  model server grpc {args.host}:{args.grpc_port}, rest http://{args.host}:{args.rest_port}
               (metrics at /monitoring/prometheus/metrics)
{prometheus}  logs         {args.run_dir}/gateway.log, {args.run_dir}/modelserver.log

Try it:
  curl -s -X POST {gw}/v1/models/half_plus_two:predict -d '{{"instances": [1.0, 2.0, 5.0]}}'
  curl -s {gw}/v1/models/digits/labels/canary
  curl -s {gw}/v1/models/digits/metadata

Ctrl-C stops everything.
"""


def run(args: argparse.Namespace) -> int:
    args.run_dir.mkdir(parents=True, exist_ok=True)
    _check_ports_free(
        args.host,
        {"gateway": args.gateway_port, "gRPC": args.grpc_port, "REST": args.rest_port}
        | ({"Prometheus": args.prometheus_port} if args.with_prometheus else {}),
    )
    config = _render_config(args.models_root.resolve(), args.run_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    server, gateway = _modelserver(args, config), _gateway(args)
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
        if not ready(server, f"http://{args.host}:{args.rest_port}/v1/models/half_plus_two"):
            return 0
        print("starting the gateway ...", flush=True)
        started.append(gateway.start())
        if not ready(gateway, f"http://{args.host}:{args.gateway_port}/readyz"):
            return 0
        if args.with_prometheus:
            print("starting Prometheus ...", flush=True)
            started.append(_prometheus(args))
        print(_banner(args), flush=True)
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
