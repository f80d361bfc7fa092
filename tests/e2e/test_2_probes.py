"""Item 2: the TF Serving probes mean what they say, on a release of its own (values/probes.yaml):
one replica whose models arrive after it starts, copied into its model volume by ephemeral
containers, so the test decides how long loading takes.

1. A model that takes longer to load than liveness period x threshold is not killed.
2. The pod is not Ready until every configured version is AVAILABLE: with the REST API up and
   one version missing, it stays unready; it turns Ready only after that version is AVAILABLE.
3. A process that stops answering (every process of the container stopped with SIGSTOP) is
   restarted by the liveness probe.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import (
    USER_VALUES,
    VALUES,
    Release,
    installed,
    is_ready,
    new_release,
    restarts,
    wait_until,
)

pytestmark = pytest.mark.cluster

LIVENESS_WINDOW_S = 2 * 3  # values/probes.yaml: periodSeconds x failureThreshold
EXPECTED = {"half_plus_two": None, "late": None, "digits": {1, 2, 3}}


@pytest.fixture(scope="module")
def probes(kube):
    rel = new_release(kube, "probes", USER_VALUES, VALUES / "probes.yaml")
    # No --wait: the pod cannot be Ready before the test copies its late models in.
    with installed(rel, wait=False) as release:
        yield release


def serving_pod(release: Release) -> dict:
    return wait_until(lambda: next(iter(release.pods("tfserving")), None), 60,
                      "the TF Serving pod to exist", every=0.5)


def container_status(pod: dict, name: str = "tfserving") -> dict:
    return next((s for s in pod["status"].get("containerStatuses", []) if s["name"] == name), {})


def copy_into_model_volume(release: Release, pod: dict, name: str, source: str, dest: str
                           ) -> None:
    """Runs an ephemeral container with the models image in the pod, mounting its model volume
    read-write, that copies `source` (a path in the models image) to `dest` (a path in the
    volume) under a temporary name first, so TF Serving never sees a half-copied version."""
    init = next(c for c in pod["spec"]["initContainers"] if c["name"] == "copy-models")
    incoming = f"{os.path.dirname(dest)}/.incoming-{name}"
    spec = {
        "name": name,
        "image": init["image"],
        "imagePullPolicy": init.get("imagePullPolicy", "IfNotPresent"),
        "command": ["sh", "-c", f"set -e; mkdir -p {os.path.dirname(dest)}; "
                    f"cp -R {source} {incoming}; mv {incoming} {dest}"],
        "securityContext": init.get("securityContext", {}),
        "volumeMounts": [{"name": "models", "mountPath": "/model-store"}],
    }
    release.kubectl("patch", "pod", pod["metadata"]["name"], "--subresource=ephemeralcontainers",
                    "--type=strategic", "-p", json.dumps({"spec": {"ephemeralContainers": [spec]}}))

    def finished() -> dict:
        current = release.kubectl("get", "pod", pod["metadata"]["name"], "-o", "json")
        statuses = json.loads(current)["status"].get("ephemeralContainerStatuses", [])
        status = next((s for s in statuses if s["name"] == name), {})
        return status.get("state", {}).get("terminated", {})

    done = wait_until(finished, 120, lambda: f"ephemeral container {name}\n{release.describe()}",
                      every=0.5)
    assert done.get("exitCode") == 0, f"copying {source} failed: {done}"


def version_states(url: str) -> dict[str, dict[int, str]] | None:
    """{model: {version: state}} from TF Serving's REST API, None while it does not answer."""
    states: dict[str, dict[int, str]] = {}
    try:
        for model in EXPECTED:
            answer = requests.get(f"{url}/v1/models/{model}", timeout=1)
            states[model] = {int(v["version"]): v["state"]
                             for v in answer.json().get("model_version_status", [])}
    except (requests.RequestException, ValueError):
        return None
    return states


def all_available(states: dict[str, dict[int, str]] | None) -> bool:
    if not states:
        return False
    for model, versions in EXPECTED.items():
        available = {v for v, s in states.get(model, {}).items() if s == "AVAILABLE"}
        if not available or (versions is not None and not versions <= available):
            return False
    return True


@pytest.mark.timeout(900)
def test_slow_model_load_is_not_killed(probes):
    pod = serving_pod(probes)
    started = wait_until(
        lambda: container_status(probes.pods("tfserving")[0]).get("state", {}).get("running"),
        300, lambda: f"the TF Serving container to start\n{probes.describe()}", every=0.5)
    # Three liveness windows with the initial load still waiting for model `late`.
    deadline = time.monotonic() + 3 * LIVENESS_WINDOW_S
    while time.monotonic() < deadline:
        pod = probes.pods("tfserving")[0]
        assert restarts(pod) == 0, f"restarted while loading\n{probes.describe()}"
        assert not is_ready(pod), "Ready while model `late` has no version at all"
        time.sleep(0.5)
    copy_into_model_volume(probes, pod, "late-model", "/models/half_plus_two/1",
                           "/model-store/late/1")
    with probes.pod_url(pod, 8501) as url:
        states = wait_until(lambda: version_states(url), 120,
                            lambda: f"TF Serving's REST API\n{probes.describe()}", every=0.5)
    assert states["late"] == {1: "AVAILABLE"}, states
    pod = probes.pods("tfserving")[0]
    assert restarts(pod) == 0, probes.describe()
    print(f"container started {started['startedAt']}; initial load longer than "
          f"{3 * LIVENESS_WINDOW_S}s (liveness window {LIVENESS_WINDOW_S}s), no restart")


@pytest.mark.timeout(600)
def test_not_ready_until_every_configured_version_is_available(probes):
    pod = probes.pods("tfserving")[0]
    samples: list[tuple[float, bool, bool]] = []  # (time, Ready, all AVAILABLE)

    def sample(url: str) -> tuple[bool, bool]:
        # Ready first: a version never goes away here, so Ready before AVAILABLE shows up as
        # a sample that is Ready with a version still missing.
        ready = is_ready(probes.pods("tfserving")[0])
        available = all_available(version_states(url))
        samples.append((time.monotonic(), ready, available))
        assert not (ready and not available), (
            f"Ready while a configured version is not AVAILABLE: {version_states(url)}")
        return ready, available

    with probes.pod_url(pod, 8501) as url:
        states = version_states(url)
        assert states and states["digits"] == {1: "AVAILABLE", 2: "AVAILABLE"}, states
        # The REST API answers, digits 1 and 2 serve, version 3 is missing: ten probe periods.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready, _ = sample(url)
            assert not ready, "Ready while digits version 3 is missing"
            time.sleep(0.2)
        copy_into_model_volume(probes, pod, "digits-v3", "/models/digits/2",
                               "/model-store/digits/3")
        wait_until(lambda: sample(url)[0], 120,
                   lambda: f"Ready after digits 3 arrived\n{probes.describe()}", every=0.2)
    available_at = next(t for t, _, ok in samples if ok)
    ready_at = next(t for t, ready, _ in samples if ready)
    assert ready_at >= available_at
    print(f"all versions AVAILABLE, then Ready {ready_at - available_at:.1f}s later")


def container_pids(container_id: str) -> list[int]:
    """Host pids of a container's processes: those whose cgroup path names the container. Needs
    this process to share the node's PID namespace (or an ancestor of it), as ci/cluster does."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if container_id in (proc / "cgroup").read_text():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.timeout(600)
def test_a_process_that_stops_answering_is_restarted(probes, settings):
    if not settings.direct:
        pytest.skip("stopping a container's processes needs the node's PID namespace "
                    "(TFSTACK_E2E_DIRECT=1, ci/cluster)")
    pod = wait_until(lambda: next((p for p in probes.pods("tfserving") if is_ready(p)), None),
                     120, lambda: f"a Ready TF Serving pod\n{probes.describe()}")
    before = restarts(pod)
    container_id = container_status(pod)["containerID"].split("://")[-1]
    pids = container_pids(container_id)
    assert pids, f"no process of container {container_id} is visible in /proc"
    # SIGSTOP from inside the container would not reach the server: it is PID 1 there, and the
    # kernel drops SIGSTOP sent to a namespace's init from within the namespace.
    stopped_at = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        pod = wait_until(
            lambda: next((p for p in probes.pods("tfserving") if restarts(p) > before), None),
            LIVENESS_WINDOW_S + 5 + 60,  # + grace period + margin
            lambda: f"the liveness probe to restart a stopped TF Serving\n{probes.describe()}",
            every=0.5)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    restarted_after = time.monotonic() - stopped_at
    last = container_status(pod).get("lastState", {}).get("terminated", {})
    wait_until(lambda: is_ready(probes.pods("tfserving")[0]), 180,
               lambda: f"Ready again after the restart\n{probes.describe()}", every=0.5)
    print(f"stopped process restarted after {restarted_after:.1f}s "
          f"(last state: {last.get('reason')}, exit {last.get('exitCode')})")
