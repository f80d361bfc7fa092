"""Cluster tests for an installed release (kind; run by ci/kind/05-test.sh after `helm install`)."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.conftest import REPO, wait_until

CHART = REPO / "charts" / "tfstack"

pytestmark = pytest.mark.kind


def test_every_pod_is_ready_and_runs_locked_down(cluster):
    pods = cluster.get("pods", "-l", f"app.kubernetes.io/instance={cluster.release}")["items"]
    serving = [
        p
        for p in pods
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        in ("tfserving", "gateway")
    ]
    assert len(serving) >= 2
    for pod in serving:
        name = pod["metadata"]["name"]
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions.get("Ready") == "True", name
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, name
        for status in pod["status"]["containerStatuses"]:
            assert status["restartCount"] == 0, f"{name}/{status['name']} restarted"


def test_prediction_through_the_gateway(cluster, tmp_path):
    with cluster.port_forward(f"svc/{cluster.release}-gateway", 8080, tmp_path) as port:
        base = f"http://127.0.0.1:{port}/v1/models"
        answer = requests.post(
            f"{base}/half_plus_two:predict", json={"instances": [1.0, 2.0, 5.0]}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == pytest.approx([2.5, 3.0, 4.5])
        status = requests.get(f"{base}/digits", timeout=10).json()
        states = {v["version"]: v["state"] for v in status["model_version_status"]}
        assert states == {"2": "AVAILABLE", "1": "AVAILABLE"}
        canary = requests.get(f"{base}/digits/labels/canary/metadata", timeout=10)
        assert canary.status_code == 200, canary.text
        assert canary.json()["model_spec"]["version"] == "2"


def test_tf_serving_exports_prometheus_metrics(cluster, tmp_path):
    with cluster.port_forward(f"deploy/{cluster.release}-tfserving", 8501, tmp_path) as port:
        text = requests.get(
            f"http://127.0.0.1:{port}/monitoring/prometheus/metrics", timeout=10
        ).text
    assert ":tensorflow:serving:request_count" in text or ":tensorflow:cc:saved_model" in text


def test_gateway_may_watch_endpointslices_and_nothing_more(cluster):
    account = f"system:serviceaccount:{cluster.namespace}:{cluster.release}-gateway"

    def can(verb: str, resource: str) -> str:
        return cluster.kubectl(
            "auth", "can-i", verb, resource, "--as", account, check=False
        ).strip()

    assert can("watch", "endpointslices.discovery.k8s.io") == "yes"
    assert can("list", "endpointslices.discovery.k8s.io") == "yes"
    assert can("get", "secrets") == "no"
    assert can("delete", "pods") == "no"


def test_model_config_change_is_picked_up_without_a_restart(cluster, tmp_path):
    """Decision 6: the ConfigMap is mounted as a directory and polled, so moving a version label
    reaches the running pods (no rollout: the pod template does not change)."""
    selector = f"app.kubernetes.io/instance={cluster.release},app.kubernetes.io/component=tfserving"

    def pod_uids() -> set[str]:
        return {p["metadata"]["uid"] for p in cluster.get("pods", "-l", selector)["items"]}

    def upgrade(setting: str) -> None:
        cluster.helm(
            "upgrade",
            cluster.release,
            str(CHART),
            "--reuse-values",
            "--set",
            setting,
            "--wait",
            "--timeout",
            "5m",
        )

    def canary_version(port: int) -> str:
        url = f"http://127.0.0.1:{port}/v1/models/digits/labels/canary/metadata"
        return requests.get(url, timeout=5).json().get("model_spec", {}).get("version", "")

    before = pod_uids()
    upgrade("models.digits.labels.canary=1")
    try:
        with cluster.port_forward(f"deploy/{cluster.release}-tfserving", 8501, tmp_path) as port:
            # kubelet's ConfigMap sync (up to ~60 s) + TF Serving's poll (10 s in values-kind.yaml).
            wait_until(
                lambda: canary_version(port) == "1",
                timeout=180,
                what="the canary label to move to version 1",
            )
        assert pod_uids() == before, "a label change restarted TF Serving pods"
    finally:
        upgrade("models.digits.labels.canary=2")
