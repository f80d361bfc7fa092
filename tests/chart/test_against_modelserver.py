"""The chart's TF Serving configuration run for real, on one machine: the rendered flags, model
config, monitoring and batching files are handed to tfstack's TF-Serving-compatible model server
(same flags, same file formats, same REST API), then the rendered readiness probe is run against
it, and a label change is written the way the kubelet swaps a ConfigMap directory.

The real tensorflow/serving image needs a container engine (kind run: ci/kind/)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.chart.conftest import render
from tests.fixtures.modelserver import start_modelserver

CONTAINER_DIRS = ("/etc/tfstack/models", "/etc/tfstack/config")
# One small model keeps this start-up short; the full default set is checked by
# test_default_model_config_validates_against_the_built_models.
SERVED = (
    "--set",
    "models.digits=null",
    "--set",
    "models.digits_png=null",
    "--set",
    "models.half_plus_two.labels.stable=1",
    "--set",
    "tfserving.batching.enabled=true",
    "--set",
    "tfserving.modelConfigPollSeconds=1",
)


def write_configmap(data: dict[str, str], directory: Path, models_root: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in data.items():
        (directory / name).write_text(text.replace('"/models/', f'"{models_root}/'))


def swap_configmap(data: dict[str, str], directory: Path, models_root: Path) -> None:
    """Replace the files atomically, as the kubelet's `..data` symlink swap does."""
    staging = directory.with_name(directory.name + ".new")
    write_configmap(data, staging, models_root)
    for name in data:
        os.replace(staging / name, directory / name)


@pytest.fixture(scope="module")
def served(models_root, tmp_path_factory):
    """The model server started with the chart's args (batching on, a version label, polling)."""
    rendered = render(*SERVED)
    root = tmp_path_factory.mktemp("chart-tfserving")
    dirs = {CONTAINER_DIRS[0]: root / "models", CONTAINER_DIRS[1]: root / "config"}
    models_cm = rendered.models_config()["data"]
    write_configmap(models_cm, dirs[CONTAINER_DIRS[0]], models_root)
    write_configmap(
        rendered.get("ConfigMap", "-tfserving-config")["data"], dirs[CONTAINER_DIRS[1]], models_root
    )
    container = rendered.container("tfserving")
    args = []
    for arg in container["args"]:
        if arg.startswith(("--port=", "--rest_api_port=")):
            continue  # start_modelserver picks free loopback ports
        for inside, outside in dirs.items():
            arg = arg.replace(inside, str(outside))
        args.append(arg)
    handle = start_modelserver(root, None, *args)
    yield handle, container, dirs[CONTAINER_DIRS[0]], models_cm
    handle.stop()


def run_probe(container: dict, port: int) -> subprocess.CompletedProcess:
    command = container["readinessProbe"]["exec"]["command"]
    script, targets = command[2], command[5:]
    return subprocess.run(
        ["bash", "-c", script, "tfstack-ready", str(port), *targets],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_rendered_flags_and_files_serve_the_models(served):
    handle, _, _, _ = served
    answer = requests.post(
        f"{handle.rest_url}/v1/models/half_plus_two:predict",
        json={"instances": [1.0, 2.0, 5.0]},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == pytest.approx([2.5, 3.0, 4.5])
    metrics = requests.get(handle.metrics_url, timeout=10)
    assert ":tensorflow:serving:request_count" in metrics.text


def test_readiness_probe_passes_against_the_served_models(served):
    handle, container, _, _ = served
    result = run_probe(container, handle.rest_port)
    assert result.returncode == 0, result.stdout + result.stderr + handle.log_text()[-2000:]


def test_label_change_is_picked_up_by_polling(served, models_root):
    handle, _, models_dir, models_cm = served

    def canary() -> str:
        url = f"{handle.rest_url}/v1/models/half_plus_two/labels/canary/metadata"
        return requests.get(url, timeout=5).json().get("model_spec", {}).get("version", "")

    assert canary() == ""  # no such label yet
    added = render(*SERVED, "--set", "models.half_plus_two.labels.canary=1").models_config()[
        "data"
    ]
    swap_configmap(added, models_dir, models_root)
    try:
        handle.process.wait_until(lambda: canary() == "1", 30, "the canary label to appear")
    finally:
        swap_configmap(models_cm, models_dir, models_root)
