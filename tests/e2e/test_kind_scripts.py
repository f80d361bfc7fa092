"""The kind end-to-end scripts, exercised without a cluster: syntax, dry-run command sequence, and
the manifests they apply. (The run itself needs Docker and kind: `make e2e-kind`.)"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KIND = REPO / "ci" / "kind"
STEPS = sorted(p.name for p in KIND.glob("0*.sh"))


def dry_run(script: str, *args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "DRY_RUN": "1", "TFSTACK_ARTIFACTS": str(tmp_path), **env}
    return subprocess.run(
        ["bash", str(KIND / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environ,
        cwd=REPO,
    )


def commands(output: str) -> list[str]:
    return [line[2:] for line in output.splitlines() if line.startswith("+ ")]


def test_every_step_is_its_own_script():
    assert STEPS == [
        "01-cluster.sh",
        "02-addons.sh",
        "03-images.sh",
        "04-install.sh",
        "05-test.sh",
        "06-load.sh",
        "07-diagnostics.sh",
        "08-delete.sh",
    ]


@pytest.mark.parametrize("script", [*STEPS, "e2e.sh", "lib.sh"])
def test_scripts_parse(script):
    result = subprocess.run(
        ["bash", "-n", str(KIND / script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr


def test_full_run_in_order(tmp_path):
    result = dry_run("e2e.sh", "--dry-run", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    expected_order = [
        r"^kind create cluster --name tfstack-e2e --config .*/k8s/kind-cluster\.yaml",
        r"^helm --kube-context kind-tfstack-e2e upgrade --install metrics-server ",
        r"^docker build -f tfstack/gateway/Dockerfile -t tfstack/gateway:e2e \.$",
        r"^docker build -f model_repo/Dockerfile -t tfstack/models:e2e model_repo$",
        r"^kind load docker-image --name tfstack-e2e tfstack/gateway:e2e$",
        r"^kind load docker-image --name tfstack-e2e tfstack/models:e2e$",
        r"^helm --kube-context kind-tfstack-e2e upgrade --install tfstack .*/tfstack .*--wait",
        r"^kubectl --context kind-tfstack-e2e -n tfstack rollout status .*/tfstack-tfserving",
        r"^helm --kube-context kind-tfstack-e2e test tfstack ",
        r"^\.venv/bin/python -m pytest -m cluster tests/e2e",
        r"^kubectl --context kind-tfstack-e2e -n tfstack apply -f .*load-job\.yaml$",
        r"^wait up to \d+s for: HPA tfstack-tfserving to scale out above 1 replicas$",
        r"^wait up to \d+s for: HPA tfstack-tfserving to scale back in to 1 replicas$",
        r"^kind delete cluster --name tfstack-e2e$",
    ]
    position = 0
    for pattern in expected_order:
        while position < len(cmds) and not re.search(pattern, cmds[position]):
            position += 1
        assert position < len(cmds), f"missing or out of order: {pattern}\n" + "\n".join(cmds)
    assert "kube-prometheus-stack" not in result.stdout
    assert "PASSED: kind end-to-end run" in result.stderr


def test_with_prometheus_adds_the_monitoring_stack(tmp_path):
    cmds = commands(dry_run("e2e.sh", "--dry-run", "--with-prometheus", tmp_path=tmp_path).stdout)
    joined = "\n".join(cmds)
    assert re.search(
        r"upgrade --install kube-prometheus-stack .*k8s/monitoring/"
        r"kube-prometheus-stack-values\.yaml",
        joined,
    )
    assert re.search(
        r"upgrade --install prometheus-adapter .*k8s/prometheus-adapter/values\.yaml", joined
    )
    assert "ci/kind/values-kind-prometheus.yaml" in joined


def test_keep_cluster_skips_the_delete(tmp_path):
    result = dry_run("e2e.sh", "--dry-run", "--keep-cluster", tmp_path=tmp_path)
    assert "kind delete cluster" not in result.stdout
    assert "keeping cluster tfstack-e2e" in result.stderr


def test_unknown_flag_is_refused(tmp_path):
    result = dry_run("e2e.sh", "--frobnicate", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "unknown argument --frobnicate" in result.stderr


def test_steps_run_alone_with_the_same_settings(tmp_path):
    result = dry_run(
        "04-install.sh",
        tmp_path=tmp_path,
        TFSTACK_RELEASE="demo",
        TFSTACK_NAMESPACE="ml",
        TFSTACK_KIND_CLUSTER="c1",
    )
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    assert cmds[0].startswith("helm --kube-context kind-c1 upgrade --install demo ")
    assert "--namespace ml" in cmds[0] and "--set fullnameOverride=demo" in cmds[0]
    assert "kubectl --context kind-c1 -n ml rollout status deployment/demo-tfserving" in cmds[1]


def test_diagnostics_cover_events_describe_and_logs(tmp_path):
    out = dry_run("07-diagnostics.sh", tmp_path=tmp_path).stdout
    for what in ("get events -A", "describe pods", "describe hpa", "helm --kube-context"):
        assert what in out, what


def test_load_job_is_bounded_and_targets_the_gateway(tmp_path):
    dry_run("06-load.sh", tmp_path=tmp_path)
    job = yaml.safe_load((tmp_path / "load-job.yaml").read_text())
    assert job["kind"] == "Job"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] <= 1800
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["URL"] == "http://tfstack-gateway:8080/v1/models/half_plus_two:predict"
    assert int(env["SECONDS_TO_RUN"]) <= 600
    assert container["image"] == "tfstack/gateway:e2e"
    assert "2_000_000" in container["command"][2]  # request-count bound


def test_load_script_counts_failures(tmp_path):
    """The load Job's script against a local server that fails every 10th request: exit 1."""
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    dry_run("06-load.sh", tmp_path=tmp_path)
    job = yaml.safe_load((tmp_path / "load-job.yaml").read_text())
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    calls = {"n": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                calls["n"] += 1
                fail = calls["n"] % 10 == 0
            body = b'{"predictions": [2.5, 3.0, 4.5]}'
            self.send_response(503 if fail else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        env = {
            **os.environ,
            "URL": f"http://127.0.0.1:{server.server_address[1]}/p",
            "SECONDS_TO_RUN": "1",
            "CONCURRENCY": "2",
        }
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        server.shutdown()
    assert result.returncode == 1
    assert "503" in result.stdout and "failed:" in result.stdout
