"""Item 1: `helm install --wait` with a user's values file and image overrides only; `helm test`;
an answer through the gateway Service; the release as installed (security, RBAC, metrics).
Item 6: bad input to the chart fails at `helm install`, against the API server, with the
schema's or the chart's own message."""

from __future__ import annotations

import pytest
import requests
import yaml

from tests.e2e.conftest import CHART, USER_VALUES, is_ready, new_release, restarts

pytestmark = pytest.mark.cluster


@pytest.mark.timeout(1200)
def test_install_waits_until_every_pod_serves(release):
    serving, gateways = release.pods("tfserving"), release.pods("gateway")
    # user.yaml: 2 gateways, TF Serving at its HPA's minimum of 2 at least (the HPA may have
    # added a replica since, for TensorFlow's start-up CPU, which need not be Ready yet).
    ready = [p for p in serving + gateways if is_ready(p)]
    assert len(gateways) == 2 and len(ready) >= 4, (
        f"not Ready after helm install --wait\n{release.describe()}")
    for pod in serving + gateways:
        name = pod["metadata"]["name"]
        assert restarts(pod) == 0, f"{name} restarted\n{release.describe()}"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["spec"]["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
    assert all(is_ready(p) for p in gateways), release.describe()
    print(f"helm install --wait took {release.install_seconds:.0f}s")


def test_helm_test_passes(release):
    # No --logs: the test pod is deleted once it succeeds (so that uninstall leaves nothing),
    # and helm then fails to fetch its logs.
    out = release.helm_ok("test", release.name, "--timeout", "5m")
    assert "Phase:          Succeeded" in out, out


def test_prediction_through_the_gateway_service(release):
    with release.gateway_url() as url:
        answer = requests.post(f"{url}/v1/models/half_plus_two:predict",
                               json={"instances": [1.0, 2.0, 5.0]}, timeout=10)
        assert answer.status_code == 200, answer.text
        # TF Serving's documented answer for its half_plus_two example.
        assert answer.json()["predictions"] == pytest.approx([2.5, 3.0, 4.5])
        status = requests.get(f"{url}/v1/models/digits", timeout=10).json()
        states = {v["version"]: v["state"] for v in status["model_version_status"]}
        assert states == {"2": "AVAILABLE", "1": "AVAILABLE"}
        canary = requests.get(f"{url}/v1/models/digits/labels/canary/metadata", timeout=10)
        assert canary.status_code == 200, canary.text
        assert canary.json()["model_spec"]["version"] == "2"


def test_grpc_prediction_through_the_gateway_service(release):
    """TF Serving's gRPC API at the gateway Service's `grpc` port: the front door container (Ready
    through the kubelet's native gRPC probe) forwards a tensorflow-serving-api client's calls."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    for pod in release.pods("gateway"):
        names = {c["name"]: c["ready"] for c in pod["status"]["containerStatuses"]}
        assert names == {"gateway": True, "gateway-grpc": True}, release.describe()
    with release.service_url(f"{release.fullname}-gateway", 8500) as url:
        channel = grpc.insecure_channel(url.removeprefix("http://"))
        try:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "half_plus_two"
            request.inputs["x"].CopyFrom(
                tf.make_tensor_proto(np.array([1.0, 2.0, 5.0], np.float32)))
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            answer = stub.Predict(request, timeout=10)
            assert tf.make_ndarray(answer.outputs["y"]).tolist() == [2.5, 3.0, 4.5]
            status = get_model_status_pb2.GetModelStatusRequest()
            status.model_spec.name = "digits"
            versions = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                status, timeout=10).model_version_status
            assert sorted(v.version for v in versions) == [1, 2]
            missing = predict_pb2.PredictRequest()
            missing.model_spec.name = "no_such_model"
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(missing, timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
        finally:
            channel.close()


def test_tf_serving_exports_prometheus_metrics(release):
    pod = release.pods("tfserving")[0]
    with release.pod_url(pod, 8501) as url:
        text = requests.get(f"{url}/monitoring/prometheus/metrics", timeout=10).text
    assert ":tensorflow:serving:request_count" in text or ":tensorflow:cc:saved_model" in text


def test_gateway_may_watch_endpointslices_and_nothing_more(release):
    account = f"system:serviceaccount:{release.namespace}:{release.fullname}-gateway"

    def can(verb: str, resource: str) -> str:
        return release.kubectl("auth", "can-i", verb, resource, "--as", account,
                               check=False).strip()

    assert can("watch", "endpointslices.discovery.k8s.io") == "yes"
    assert can("list", "endpointslices.discovery.k8s.io") == "yes"
    assert can("get", "secrets") == "no"
    assert can("delete", "pods") == "no"


# Representative mistakes, each with the message the schema or the chart gives.
BAD_VALUES = {
    "model-name": ({"models": {"bad name!": {"platform": "tensorflow"}}},
                   "'bad name!' does not match pattern"),
    "negative-replicas": ({"tfserving": {"replicaCount": -1}},
                          "at '/tfserving/replicaCount': minimum: got -1, want 0"),
    "unknown-key": ({"tfserving": {"replicas": 3}},
                    "at '/tfserving': additional properties 'replicas' not allowed"),
    "label-of-unserved-version": (
        {"models": {"digits": {"labels": {"canary": 3}}}},
        "models.digits.labels.canary: version 3 is not among the served versions [1 2]. "
        "Add it to models.digits.versions"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_fail_at_install_with_the_charts_message(kube, tmp_path, case):
    values, message = BAD_VALUES[case]
    bad = tmp_path / f"{case}.yaml"
    bad.write_text(yaml.safe_dump(values))
    rel = new_release(kube, "bad", USER_VALUES)
    try:
        result = rel.helm("install", rel.name, str(CHART), "--create-namespace",
                          *rel.value_flags((bad,)), "--wait", "--timeout", "2m", timeout=300)
        assert result.returncode != 0, f"helm install accepted {values}"
        assert message in result.stderr, result.stderr
        assert not rel.installed(), "a failed install left a release behind"
    finally:
        rel.delete_namespace()
