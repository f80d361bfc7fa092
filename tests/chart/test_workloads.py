"""Rules for every pod the chart renders, plus the gateway, autoscaling and policy objects."""

from __future__ import annotations

import pytest

from tests.chart.conftest import MONITORING_API, RELEASE, SCENARIOS, render, render_scenario

POD_KINDS = ("Deployment", "Pod")


def pods(rendered) -> list[tuple[str, dict]]:
    out = []
    for obj in rendered.objects:
        if obj["kind"] == "Deployment":
            out.append((obj["metadata"]["name"], obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            out.append((obj["metadata"]["name"], obj["spec"]))
    return out


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_has_resources_and_a_locked_down_security_context(scenario):
    rendered = render_scenario(scenario)
    found = pods(rendered)
    assert len(found) == 3  # tfserving, gateway, helm test
    for name, spec in found:
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] > 0, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in containers(spec):
            where = f"{name}/{c['name']}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "privileged" not in sc or sc["privileged"] is False, where
            resources = c["resources"]
            assert resources["requests"]["memory"] and resources["limits"]["memory"], where
            assert resources["requests"]["cpu"], where


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_replicas_when_an_hpa_owns_the_count(scenario):
    rendered = render_scenario(scenario)
    targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in rendered.of_kind("HorizontalPodAutoscaler")
    }
    for dep in rendered.of_kind("Deployment"):
        has_hpa = dep["metadata"]["name"] in targets
        assert ("replicas" in dep["spec"]) != has_hpa, dep["metadata"]["name"]


def test_replicas_without_hpa():
    rendered = render(
        "--set", "tfserving.autoscaling.enabled=false", "--set", "tfserving.replicaCount=3"
    )
    assert rendered.deployment("tfserving")["spec"]["replicas"] == 3
    assert [h["metadata"]["name"] for h in rendered.of_kind("HorizontalPodAutoscaler")] == [
        f"{RELEASE}-tfstack-gateway"
    ]


def test_selectors_are_stable_across_upgrades():
    """Deployment selectors are immutable: they must not carry the chart or app version."""
    old = render("--set", "tfserving.image.tag=2.20.0")
    new = render("--set", "tfserving.image.tag=2.21.0", "--set", "commonLabels.extra=yes")
    for component in ("tfserving", "gateway"):
        selector = old.deployment(component)["spec"]["selector"]["matchLabels"]
        assert selector == new.deployment(component)["spec"]["selector"]["matchLabels"]
        assert set(selector) == {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        }
        template_labels = old.deployment(component)["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= template_labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in old.of_kind(kind):
            sel = obj["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            assert "app.kubernetes.io/version" not in sel and "helm.sh/chart" not in sel


def test_tfserving_service_is_headless_with_ready_pods_only(defaults):
    svc = defaults.get("Service", "-tfserving")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is False
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"grpc": 8500, "http": 8501}


def test_tfserving_hpa_scales_on_cpu_by_default(defaults):
    hpa = defaults.get("HorizontalPodAutoscaler", "-tfserving")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    ]
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_tfserving_hpa_custom_metric():
    hpa = render_scenario("custom-metric").get("HorizontalPodAutoscaler", "-tfserving")
    pods_metrics = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics == [
        {
            "metric": {"name": "tfserving_requests_per_second"},
            "target": {"type": "AverageValue", "averageValue": "50"},
        }
    ]
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 10


def test_tfserving_hpa_gpu_metric(gpu):
    hpa = gpu.get("HorizontalPodAutoscaler", "-tfserving")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods"]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "DCGM_FI_DEV_GPU_UTIL"


def test_hpa_behavior_is_configurable():
    hpa = render("--set", "tfserving.autoscaling.behavior.scaleDown.stabilizationWindowSeconds=60")
    behavior = hpa.get("HorizontalPodAutoscaler", "-tfserving")["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 60


def test_gateway_discovers_tf_serving(defaults):
    container = defaults.container("gateway")
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["TFSTACK_DISCOVERY"] == "endpointslices"
    assert env["TFSTACK_BACKENDS"] == f"{RELEASE}-tfstack-tfserving.serving.svc.cluster.local:8500"
    assert env["TFSTACK_DISCOVERY_SERVICE"] == f"{RELEASE}-tfstack-tfserving"
    assert env["TFSTACK_DISCOVERY_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["TFSTACK_DISCOVERY_PORT_NAME"] == "grpc"
    assert env["TFSTACK_GRACEFUL_TIMEOUT_S"] == "13"  # 20 s grace - 5 s drain delay - 2 s margin
    assert env["TFSTACK_BIND"] == "0.0.0.0:8080"
    # Set by the start-up environment, on the writable emptyDir (the root filesystem is read-only).
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    spec = defaults.deployment("gateway")["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is True
    assert spec["serviceAccountName"] == f"{RELEASE}-tfstack-gateway"


def test_rbac_allows_exactly_endpointslice_list_and_watch(defaults):
    role = defaults.get("Role", "-gateway")
    assert role["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        }
    ]
    binding = defaults.get("RoleBinding", "-gateway")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-tfstack-gateway", "namespace": "serving"}
    ]
    assert not defaults.of_kind("ClusterRole")


def test_dns_discovery_needs_no_rbac_or_token(everything):
    assert not everything.of_kind("Role") and not everything.of_kind("RoleBinding")
    spec = everything.deployment("gateway")["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["TFSTACK_DISCOVERY"] == "dns"
    assert "TFSTACK_DISCOVERY_SERVICE" not in env
    assert env["TFSTACK_EXTRA"] == "1"


def test_pod_disruption_budgets(defaults):
    pdbs = {p["metadata"]["name"]: p["spec"] for p in defaults.of_kind("PodDisruptionBudget")}
    assert set(pdbs) == {f"{RELEASE}-tfstack-tfserving", f"{RELEASE}-tfstack-gateway"}
    for name, spec in pdbs.items():
        assert spec["maxUnavailable"] == 1
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] in name


def test_topology_spread_across_nodes(defaults):
    for component in ("tfserving", "gateway"):
        spec = defaults.deployment(component)["spec"]["template"]["spec"]
        keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
        assert keys == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        for c in spec["topologySpreadConstraints"]:
            assert c["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component


def test_network_policy_only_gateway_and_prometheus_reach_tf_serving(everything, defaults):
    assert not defaults.of_kind("NetworkPolicy")
    policy = everything.get("NetworkPolicy", "-tfserving")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]  # egress: test_extensions.py
    assert (
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "tfserving"
    )
    rules = policy["spec"]["ingress"]
    assert len(rules) == 2
    gateway_rule, prometheus_rule = rules
    assert gateway_rule["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "tfstack",
                    "app.kubernetes.io/instance": RELEASE,
                    "app.kubernetes.io/component": "gateway",
                }
            }
        }
    ]
    assert gateway_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    (peer,) = prometheus_rule["from"]
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
    }
    assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    assert prometheus_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    gateway_policy = everything.get("NetworkPolicy", "-gateway")
    peers = gateway_policy["spec"]["ingress"][0]["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    } in peers
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "test"
        for p in peers
    )


def test_ingress(everything, defaults):
    assert not defaults.of_kind("Ingress")
    ingress = everything.get("Ingress", "-gateway")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "tfstack-tls", "hosts": ["tfstack.example.com"]}
    ]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "tfstack.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": f"{RELEASE}-tfstack-gateway",
        "port": {"name": "http"},
    }


def test_helm_test_pod_predicts_through_the_gateway(defaults):
    pod = defaults.get("Pod", "-test-prediction")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["URL"] == f"http://{RELEASE}-tfstack-gateway:8080/v1/models/half_plus_two:predict"
    assert env["EXPECTED"] == "[2.5, 3.0, 4.5]"
    assert container["image"] == defaults.container("gateway")["image"]


def test_helm_test_script_checks_the_answer(defaults, tmp_path):
    """The test pod's script against a local HTTP server: right answer passes, wrong one fails."""
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = {
        "/v1/models/half_plus_two:predict": b'{"predictions": [2.5, 3.0, 4.5]}',
        "/v1/models/wrong:predict": b'{"predictions": [2.5, 3.0, 4.0]}',
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            body = answers[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        container = defaults.get("Pod", "-test-prediction")["spec"]["containers"][0]
        script = container["command"][2]
        env = {e["name"]: e["value"] for e in container["env"]}
        base = f"http://127.0.0.1:{server.server_address[1]}/v1/models"

        def run(model):
            env["URL"] = f"{base}/{model}:predict"
            return subprocess.run(
                [sys.executable, "-c", script],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        ok = run("half_plus_two")
        assert ok.returncode == 0, ok.stderr
        bad = run("wrong")
        assert bad.returncode == 1 and "FAIL: predictions" in bad.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_monitors_follow_the_crd_api():
    """ServiceMonitors: `auto` renders them only when monitoring.coreos.com/v1 exists."""
    assert not render().of_kind("ServiceMonitor")
    with_api = render(*MONITORING_API)
    monitors = {m["metadata"]["name"]: m for m in with_api.of_kind("ServiceMonitor")}
    assert set(monitors) == {f"{RELEASE}-tfstack-gateway", f"{RELEASE}-tfstack-tfserving"}
    tf = monitors[f"{RELEASE}-tfstack-tfserving"]["spec"]
    assert tf["endpoints"][0]["path"] == "/monitoring/prometheus/metrics"
    assert tf["endpoints"][0]["port"] == "http"
    assert tf["selector"]["matchLabels"]["app.kubernetes.io/component"] == "tfserving"
    gw = monitors[f"{RELEASE}-tfstack-gateway"]["spec"]
    assert gw["endpoints"][0]["path"] == "/metrics"
    assert not render(*MONITORING_API, "--set", "metrics.serviceMonitor.enabled=false").of_kind(
        "ServiceMonitor"
    )
    assert (
        len(render("--set", "metrics.serviceMonitor.enabled=true").of_kind("ServiceMonitor")) == 2
    )


def test_pod_monitor_replaces_the_tf_serving_service_monitor(everything):
    (pm,) = everything.of_kind("PodMonitor")
    assert pm["spec"]["podMetricsEndpoints"][0]["path"] == "/monitoring/prometheus/metrics"
    assert pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "tfserving"
    assert [m["metadata"]["name"] for m in everything.of_kind("ServiceMonitor")] == [
        f"{RELEASE}-tfstack-gateway"
    ]
    assert everything.of_kind("ServiceMonitor")[0]["metadata"]["labels"]["release"] == "prom"


@pytest.mark.parametrize("scenario", ["defaults", "everything"])
def test_gateway_accepts_the_environment_the_chart_gives_it(scenario):
    """The gateway's own parsers (settings and discovery) take the rendered environment as is."""
    from tfstack.gateway.discovery import DiscoveryConfig
    from tfstack.gateway.settings import load_settings

    container = render_scenario(scenario).container("gateway")
    env = {}
    for var in container["env"]:
        if "valueFrom" in var:  # the downward API's metadata.namespace
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
            env[var["name"]] = "serving"
        else:
            env[var["name"]] = var["value"]
    settings = load_settings(env)
    assert settings.bind == "0.0.0.0:8080"
    assert settings.workers == 2 and settings.deadline_ms == 10000
    assert (settings.worker_class, settings.max_inflight_per_endpoint) == ("gevent", 32)
    discovery = DiscoveryConfig.from_settings(settings)
    assert discovery.mode == env["TFSTACK_DISCOVERY"]
    if discovery.mode == "endpointslices":
        assert (discovery.service, discovery.namespace, discovery.port_name) == (
            f"{RELEASE}-tfstack-tfserving",
            "serving",
            "grpc",
        )
    else:
        dns_name = f"{RELEASE}-tfstack-tfserving.serving.svc.cluster.local:8500"
        assert discovery.backends == (dns_name,)


def test_gateway_worker_model_and_admission_are_values():
    from tfstack.gateway.settings import load_settings

    container = render(
        "--set", "gateway.workerClass=gthread", "--set", "gateway.maxInflightPerEndpoint=8"
    ).container("gateway")
    env = {v["name"]: v.get("value", "serving") for v in container["env"]}
    settings = load_settings(env)
    assert (settings.worker_class, settings.threads, settings.max_inflight_per_endpoint) == (
        "gthread",
        8,
        8,
    )
