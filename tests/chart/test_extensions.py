"""What a closed schema cannot foresee: extra volumes, init containers, sidecars and environment
for both workloads, and NetworkPolicy egress for namespaces that deny it by default."""

from __future__ import annotations

import pytest

from tests.chart.conftest import RELEASE, render


def pod_spec(rendered, component: str) -> dict:
    return rendered.deployment(component)["spec"]["template"]["spec"]


@pytest.mark.parametrize("component", ["tfserving", "gateway"])
def test_extra_volumes_containers_and_env(everything, defaults, component):
    spec = pod_spec(everything, component)
    main = spec["containers"][0]
    assert main["name"] == component
    ours = {"tfserving": [], "gateway": ["gateway-grpc"]}[component]  # the gRPC front door
    assert [c["name"] for c in spec["containers"][1:]] == [*ours, "sidecar"]
    assert spec["initContainers"][-1]["name"] in ("prepare", "wait")
    extra_volume = {"tfserving": "scratch", "gateway": "certs"}[component]
    assert extra_volume in {v["name"] for v in spec["volumes"]}
    assert extra_volume in {m["name"] for m in main["volumeMounts"]}
    assert any(e["name"].endswith("EXTRA") or e["name"] == "TF_CPP_MIN_LOG_LEVEL"
               for e in main["env"])
    plain = pod_spec(defaults, component)
    assert len(plain["containers"]) == 1 + len(ours)
    assert [c["name"] for c in plain.get("initContainers", [])] == (
        ["copy-models"] if component == "tfserving" else []
    )


def test_tf_serving_extra_init_containers_run_after_the_model_copy(everything):
    names = [c["name"] for c in pod_spec(everything, "tfserving")["initContainers"]]
    assert names == ["copy-models", "prepare"]


def test_extra_init_containers_without_the_image_source():
    rendered = render(
        "--set", "modelSource.type=pvc", "--set", "modelSource.pvc.claimName=models",
        "--set-json", 'tfserving.extraInitContainers=[{"name": "fetch", "image": "x"}]',
    )
    assert [c["name"] for c in pod_spec(rendered, "tfserving")["initContainers"]] == ["fetch"]
    plain = render("--set", "modelSource.type=pvc", "--set", "modelSource.pvc.claimName=models")
    assert "initContainers" not in pod_spec(plain, "tfserving")


def test_no_egress_rules_unless_asked():
    rendered = render("--set", "networkPolicy.enabled=true")
    for policy in rendered.of_kind("NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert "egress" not in policy["spec"]


DNS = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
}


def test_egress_for_a_default_deny_namespace(everything):
    tf = everything.get("NetworkPolicy", "-tfserving")["spec"]
    assert tf["policyTypes"] == ["Ingress", "Egress"]
    assert tf["egress"] == [
        DNS,
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]},
    ]
    gw = everything.get("NetworkPolicy", "-gateway")["spec"]
    assert gw["policyTypes"] == ["Ingress", "Egress"]
    tf_pods = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "tfstack",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": "tfserving",
            }
        }
    }
    # The everything scenario discovers by DNS: no API server rule.
    assert gw["egress"] == [DNS, {"to": [tf_pods], "ports": [{"port": 8500, "protocol": "TCP"}]}]


def test_gateway_egress_reaches_the_api_server_for_its_endpointslice_watch():
    rendered = render("--set", "networkPolicy.enabled=true",
                      "--set", "networkPolicy.egress.enabled=true")
    rules = rendered.get("NetworkPolicy", "-gateway")["spec"]["egress"]
    # No addresses given: the API server ports to anywhere.
    assert rules[-1] == {"ports": [{"port": 443, "protocol": "TCP"},
                                   {"port": 6443, "protocol": "TCP"}]}
    pinned = render(
        "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.egress.enabled=true",
        "--set-json", 'networkPolicy.egress.apiServer.to=[{"ipBlock": {"cidr": "10.0.0.1/32"}}]',
        "--set-json", "networkPolicy.egress.apiServer.ports=[6443]",
    )
    assert pinned.get("NetworkPolicy", "-gateway")["spec"]["egress"][-1] == {
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
        "ports": [{"port": 6443, "protocol": "TCP"}],
    }
    # TF Serving gets only DNS when no model storage is listed (image and pvc sources).
    assert rendered.get("NetworkPolicy", "-tfserving")["spec"]["egress"] == [DNS]
