"""`tfstack up` (README's run command): starts the stack, serves the example models through the
gateway, and stops every process it started on SIGTERM or Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tfstack.runtime.procs import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        found |= children
        frontier = children
    return found


def grpc_predict(address: str) -> list[float]:
    import grpc

    from tfstack.protocol.proto import predict_pb2, prediction_service_pb2_grpc, types_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add(size=3)
    request.inputs["x"].float_val.extend([1.0, 2.0, 5.0])
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return list(stub.Predict(request, timeout=30).outputs["y"].float_val)


def start_up(tmp_path: Path, *flags: str) -> tuple[ManagedProcess, dict[str, int]]:
    """`tfstack up FLAGS` on free ports, once it has printed its banner."""
    names = ("gateway", "gateway-grpc", "gateway-grpc-ops", "grpc", "rest", "prometheus")
    ports = {name: free_port() for name in names}
    argv = [
        sys.executable,
        "-m",
        "tfstack.cli",
        "up",
        f"--gateway-port={ports['gateway']}",
        f"--gateway-grpc-port={ports['gateway-grpc']}",
        f"--gateway-grpc-ops-port={ports['gateway-grpc-ops']}",
        f"--grpc-port={ports['grpc']}",
        f"--rest-port={ports['rest']}",
        f"--prometheus-port={ports['prometheus']}",
        f"--run-dir={tmp_path / 'run'}",
        *flags,
    ]
    proc = ManagedProcess("tfstack up", argv, tmp_path / "up.log", cwd=REPO).start()
    try:
        proc.wait_until(lambda: "tfstack is up." in proc.log_tail(200), 240, "printing its banner")
    except BaseException:
        proc.stop()
        raise
    return proc, ports


@pytest.fixture
def stack(tmp_path, models_root):
    proc, ports = start_up(
        tmp_path, f"--models-root={models_root}", "--workers=2", "--with-prometheus"
    )
    yield proc, ports
    proc.stop()


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_serves_the_examples_and_stops_without_orphans(stack, stop_signal):
    proc, ports = stack
    banner = proc.log_tail(200)
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    assert gateway in banner and "curl" in banner

    body = json.dumps({"instances": [1.0, 2.0, 5.0]}).encode()
    request = urllib.request.Request(f"{gateway}/v1/models/half_plus_two:predict", data=body)
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert json.load(resp) == {"predictions": [2.5, 3.0, 4.5]}

    # The gRPC front door answers TF Serving's gRPC API at the address the banner prints.
    grpc_address = f"127.0.0.1:{ports['gateway-grpc']}"
    assert grpc_address in banner
    assert grpc_predict(grpc_address) == [2.5, 3.0, 4.5]

    # Prometheus came up with it and scrapes both the gateway and the model server.
    query = f"http://127.0.0.1:{ports['prometheus']}/api/v1/query?query=up"
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(query, timeout=10) as resp:
            up = {r["metric"]["job"]: r["value"][1] for r in json.load(resp)["data"]["result"]}
        if len(up) == 2 and set(up.values()) == {"1"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(up) == 2 and set(up.values()) == {"1"}, up

    children = _descendants(proc.pid)
    assert len(children) >= 5, (
        "expected the model server, gunicorn master and workers, the gRPC front door, Prometheus")

    # Signal only the `tfstack up` process itself, as a terminal's Ctrl-C or `kill` would.
    os.kill(proc.pid, stop_signal)
    proc.proc.wait(timeout=60)
    assert proc.proc.returncode == 0, proc.log_tail()
    assert "stopped." in proc.log_tail()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in children):
        time.sleep(0.1)
    assert not [p for p in children if _alive(p)], "processes outlived tfstack up"


@pytest.mark.slow
def test_up_serves_a_folder_of_models_with_labels_and_batching(tmp_path, models_root):
    """`tfstack up --models DIR`: a user's folder, not the examples' config; labels and batching
    from the command line reach the model server."""
    import shutil

    mine = tmp_path / "my models"
    shutil.copytree(models_root / "digits", mine / "churn")  # versions 1 and 2
    proc, ports = start_up(
        tmp_path, f"--models={mine}", "--label=churn:stable=1", "--max-batch-size=4", "--workers=1"
    )
    try:
        banner = proc.log_tail(200)
        assert "  churn: version(s) 1, 2; labels stable=1" in banner
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        body = json.dumps({"instances": [[[0.0] * 8] * 8]}).encode()
        for path in ("churn", "churn/labels/stable", "churn/versions/2"):
            request = urllib.request.Request(f"{gateway}/v1/models/{path}:predict", data=body)
            with urllib.request.urlopen(request, timeout=30) as resp:
                (prediction,) = json.load(resp)["predictions"]
            assert len(prediction["probabilities"]) == 10, path
        # The requests went through the batcher, whose parameters came from the command line.
        metrics_url = f"http://127.0.0.1:{ports['rest']}/monitoring/prometheus/metrics"
        with urllib.request.urlopen(metrics_url, timeout=10) as resp:
            metrics = resp.read().decode()
        processed = r"^:tensorflow:serving:batching_session:processed_batch_size_count\{\} [1-9]"
        assert re.search(processed, metrics, re.M), "no batch ran"
        batching = (tmp_path / "run" / "batching_parameters.txt").read_text()
        assert "max_batch_size {\n  value: 4\n}" in batching
    finally:
        proc.stop()
