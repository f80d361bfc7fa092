"""Item 3: the gateway finds TF Serving pods through EndpointSlices. Under steady load through
the gateway Service, TF Serving is scaled up by one; the new pod serves gateway traffic within
2 s of turning Ready.

"Serves gateway traffic" is read on the new pod itself: TF Serving's count of gRPC Predict calls
for the model the load calls (`:tensorflow:serving:request_latency_count{API="Predict",
entrypoint="GRPC"}`, scraped from the pod every 0.1 s). Only the gateway sends gRPC predictions
(the probes ask for model status over REST, which `request_count` would also count), so the
first count is the first request the gateway routed there. "Ready" is when the API server first
shows the pod's Ready condition True (polled every 0.1 s as well).
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.e2e.conftest import Release, is_ready, wait_until
from tests.e2e.load import failure_summary, failures, metric_sum, scrape, steady_load

pytestmark = pytest.mark.cluster

BOUND_S = 2.0


def set_min_replicas(release: Release, replicas: int) -> None:
    patch = {"spec": {"minReplicas": replicas}}
    release.kubectl("patch", "hpa", f"{release.fullname}-tfserving", "--type=merge",
                    "-p", json.dumps(patch))


def served(url: str) -> float | None:
    """Predictions the pod has answered, None while its REST port is closed."""
    try:
        values = scrape(f"{url}/monitoring/prometheus/metrics", timeout=0.5)
    except requests.RequestException:
        return None
    return metric_sum(values, ":tensorflow:serving:request_latency_count",
                      model_name="half_plus_two", API="Predict", entrypoint="GRPC")


def wait_for_replicas(release: Release, count: int, timeout: float = 300) -> None:
    def settled() -> bool:
        pods = [p for p in release.pods("tfserving") if not p["metadata"].get("deletionTimestamp")]
        return len(pods) == count and all(is_ready(p) for p in pods)

    wait_until(settled, timeout, lambda: f"{count} Ready TF Serving pods\n{release.describe()}")


@pytest.mark.timeout(900)
def test_new_replica_serves_gateway_traffic_within_2s_of_ready(release):
    hpa = release.get("hpa", f"{release.fullname}-tfserving")
    minimum = hpa["spec"]["minReplicas"]
    wait_for_replicas(release, minimum)
    before = {p["metadata"]["name"] for p in release.pods("tfserving")}
    with release.gateway_url() as url, steady_load(url, seconds=240, rate=20) as load:
        set_min_replicas(release, minimum + 1)
        try:
            new = wait_until(
                lambda: next((p for p in release.pods("tfserving")
                              if p["metadata"]["name"] not in before), None),
                90, lambda: f"the HPA to add a pod\n{release.describe()}", every=0.5)
            name = new["metadata"]["name"]
            new = wait_until(lambda: next((p for p in release.pods("tfserving")
                                           if p["metadata"]["name"] == name
                                           and p["status"].get("podIP")), None),
                             60, f"an IP for {name}", every=0.2)
            # Bounds that can only overstate the delay: Ready came after the start of the last
            # look that found the pod not Ready; the first request came before the end of the
            # first scrape that counted it.
            not_ready_at = served_at = None
            ready_at = None
            deadline = time.monotonic() + 240
            with release.pod_url(new, 8501) as pod_url:
                while served_at is None and time.monotonic() < deadline:
                    # The count first, then the pod: a count with the pod still not Ready
                    # afterwards means the gateway sent to a pod that was not Ready.
                    count, counted_at = served(pod_url), time.monotonic()
                    looked_at = time.monotonic()
                    pod = next(p for p in release.pods("tfserving")
                               if p["metadata"]["name"] == name)
                    if not is_ready(pod):
                        not_ready_at = looked_at
                    elif ready_at is None:
                        ready_at = looked_at
                    if count:
                        assert ready_at is not None, (
                            f"{name} served {count} predictions before it was Ready\n"
                            f"{release.describe()}")
                        served_at = counted_at
                    time.sleep(0.1)
            assert served_at is not None, f"{name} never served\n{release.describe()}"
            condition_time = next(c["lastTransitionTime"] for c in pod["status"]["conditions"]
                                  if c["type"] == "Ready")
        finally:
            set_min_replicas(release, minimum)
    result = load.result
    assert not_ready_at is not None, f"{name} was Ready before the test first looked at it"
    took = served_at - not_ready_at
    print(f"{name}: Ready ({condition_time}); first gateway request at most {took:.2f}s later "
          f"(polls every ~0.1 s; {served_at - ready_at:+.2f}s from the poll that saw it Ready)")
    assert took < BOUND_S, f"{name} got its first request {took:.2f}s after turning Ready"
    assert result is not None and not failures(result), failure_summary(result)
