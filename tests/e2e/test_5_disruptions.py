"""Item 5: no request is lost to ordinary operations. Steady load through the gateway Service
(half_plus_two and digits alternately, open loop) while:
- a TF Serving pod is deleted;
- TF Serving rolls (a pod annotation changed through `helm upgrade`);
- the model config changes: a digits version is removed, then added back;
- the gateway itself rolls.
Every request must succeed. A moved version label also reaches the running pods without a
restart (the model config is re-read; docs/architecture.md,
decision 6)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.e2e.conftest import Release, is_ready, wait_until
from tests.e2e.load import HALF_PLUS_TWO, failure_summary, failures, steady_load
from tfstack.testing.loadgen import HttpRequest

pytestmark = pytest.mark.cluster

DIGITS = HttpRequest("POST", "/v1/models/digits:predict",
                     json.dumps({"instances": [[[0.0] * 8] * 8]}).encode())


def mixed(index: int) -> HttpRequest:
    return DIGITS if index % 2 else HALF_PLUS_TWO


def wait_settled(release: Release, component: str, timeout: float = 300) -> None:
    """Every pod of `component` Ready, none terminating, as many as the Deployment wants."""
    deployment = f"{release.fullname}-{component}"

    def settled() -> bool:
        wanted = release.get("deployment", deployment)["spec"]["replicas"]
        pods = release.pods(component)
        return len(pods) == wanted and all(
            is_ready(p) and not p["metadata"].get("deletionTimestamp") for p in pods)

    wait_until(settled, timeout, lambda: f"{deployment} to settle\n{release.describe()}")


@contextmanager
def no_failed_requests(release: Release, what: str) -> Iterator[None]:
    """Steady load (40 requests/s) while the block runs, 3 s before and after; every request
    must succeed."""
    wait_settled(release, "tfserving")
    wait_settled(release, "gateway")
    with release.gateway_url() as url, steady_load(
            url, seconds=900, concurrency=8, rate=40, request=mixed) as load:
        wait_until(lambda: load.offset() > 3, 10, "the load to start", every=0.5)
        yield
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            time.sleep(0.5)
    result = load.result
    assert result is not None and result.records, f"no load ran during {what}"
    assert not failures(result), f"during {what}: {failure_summary(result)}\n{release.describe()}"
    print(f"{what}: {len(result.records)} requests in {result.elapsed_s:.0f}s, all answered 200")


def rollout(release: Release, component: str) -> Callable[[], None]:
    def wait() -> None:
        release.kubectl("rollout", "status", f"deployment/{release.fullname}-{component}",
                        "--timeout=300s", timeout=330)
        wait_settled(release, component)

    return wait


@pytest.mark.timeout(900)
def test_deleting_a_tf_serving_pod_loses_no_request(release):
    with no_failed_requests(release, "a TF Serving pod deleted"):
        victim = release.pods("tfserving")[0]["metadata"]["name"]
        release.kubectl("delete", "pod", victim, "--wait=false")
        wait_until(lambda: victim not in {p["metadata"]["name"] for p in release.pods("tfserving")},
                   120, f"{victim} to go away")
        wait_settled(release, "tfserving")


@pytest.mark.timeout(900)
def test_rolling_update_of_tf_serving_loses_no_request(release):
    with no_failed_requests(release, "a TF Serving rolling update"):
        release.upgrade("--set", f"tfserving.podAnnotations.e2e/rollout=r{time.time():.0f}")
        rollout(release, "tfserving")()


def digits_versions(url: str) -> dict[str, str]:
    status = requests.get(f"{url}/v1/models/digits", timeout=5).json()
    return {v["version"]: v["state"] for v in status.get("model_version_status", [])}


@pytest.mark.timeout(1200)
def test_model_config_change_loses_no_request(release):
    only_2 = ("--set", "models.digits.versions={2}", "--set", "models.digits.labels.stable=2")
    with no_failed_requests(release, "a model version removed"):
        release.upgrade(*only_2)
        rollout(release, "tfserving")()
    with release.gateway_url() as url:
        wait_until(lambda: digits_versions(url) == {"2": "AVAILABLE"}, 120,
                   lambda: f"digits to serve version 2 only: {digits_versions(url)}")
    with no_failed_requests(release, "a model version added"):
        release.upgrade()
        rollout(release, "tfserving")()
    with release.gateway_url() as url:
        wait_until(lambda: digits_versions(url) == {"1": "AVAILABLE", "2": "AVAILABLE"}, 120,
                   lambda: f"digits to serve versions 1 and 2: {digits_versions(url)}")


@pytest.mark.timeout(900)
def test_rolling_update_of_the_gateway_loses_no_request(release, settings):
    if not settings.direct:
        pytest.skip("load through a port-forward follows one gateway pod and breaks when it goes "
                    "away: this case needs Service addresses (TFSTACK_E2E_DIRECT=1)")
    with no_failed_requests(release, "a gateway rolling update"):
        release.upgrade("--set", f"gateway.podAnnotations.e2e/rollout=r{time.time():.0f}")
        rollout(release, "gateway")()


@pytest.mark.timeout(900)
def test_moved_version_label_reaches_running_pods_without_a_restart(release):
    def pod_uids() -> set[str]:
        return {p["metadata"]["uid"] for p in release.pods("tfserving")}

    def canary_version(url: str) -> str:
        answer = requests.get(f"{url}/v1/models/digits/labels/canary/metadata", timeout=5)
        return answer.json().get("model_spec", {}).get("version", "")

    wait_settled(release, "tfserving")
    before = pod_uids()
    release.upgrade("--set", "models.digits.labels.canary=1")
    try:
        pod = release.pods("tfserving")[0]
        with release.pod_url(pod, 8501) as url:
            # The kubelet's ConfigMap sync (up to about a minute) + TF Serving's 10 s poll.
            wait_until(lambda: canary_version(url) == "1", 180,
                       "the canary label to move to version 1")
        assert pod_uids() == before, "a label change restarted TF Serving pods"
    finally:
        release.upgrade()
