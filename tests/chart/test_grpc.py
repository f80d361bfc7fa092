"""The gateway's gRPC front door in the chart: its container, the Service port (named grpc,
appProtocol grpc), its probes, the NetworkPolicy and the ServiceMonitor; all gone when disabled."""

from __future__ import annotations

import pytest

from tests.chart.conftest import MONITORING_API, render, render_error, render_scenario


def gateway_pod(rendered) -> dict:
    return rendered.deployment("gateway")["spec"]["template"]["spec"]


def grpc_container(rendered) -> dict:
    (container,) = [c for c in gateway_pod(rendered)["containers"] if c["name"] == "gateway-grpc"]
    return container


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from the pod>") for e in container["env"]}


def test_the_grpc_container_runs_the_front_door_with_the_gateways_settings(defaults):
    grpc = grpc_container(defaults)
    rest = defaults.container("gateway")
    assert grpc["image"] == rest["image"]
    assert grpc["command"] == ["python", "-m", "tfstack.gateway.grpc_server"]
    env, rest_env = env_of(grpc), env_of(rest)
    shared = set(rest_env) - {"PROMETHEUS_MULTIPROC_DIR"}  # gunicorn's; one process needs none
    assert {k: env[k] for k in shared} == {k: rest_env[k] for k in shared}
    assert env["TFSTACK_GRPC_BIND"] == "0.0.0.0:8500"
    assert env["TFSTACK_GRPC_OPS_BIND"] == "0.0.0.0:8081"
    assert {"name": "tmp", "mountPath": "/tmp"} in grpc["volumeMounts"]
    ports = {p["name"]: p["containerPort"] for p in grpc["ports"]}
    assert ports == {"grpc": 8500, "grpc-ops": 8081}


def test_the_grpc_container_accepts_the_environment_the_chart_gives_it(defaults):
    from tfstack.gateway.settings import load_settings

    settings = load_settings(env_of(grpc_container(defaults)))
    assert settings.grpc_bind == "0.0.0.0:8500" and settings.grpc_threads == 32


def test_readiness_asks_the_grpc_health_service_liveness_the_http_side(defaults):
    grpc = grpc_container(defaults)
    assert grpc["readinessProbe"]["grpc"] == {"port": 8500}  # service "": the whole server
    for probe in ("livenessProbe", "startupProbe"):
        assert grpc[probe]["httpGet"] == {"path": "/healthz", "port": "grpc-ops"}


def test_the_service_exposes_grpc_by_name_and_app_protocol(defaults):
    ports = {p["name"]: p for p in defaults.get("Service", "-gateway")["spec"]["ports"]}
    assert ports["grpc"] == {
        "name": "grpc", "port": 8500, "targetPort": "grpc", "protocol": "TCP",
        "appProtocol": "grpc",
    }
    assert ports["grpc-ops"]["targetPort"] == "grpc-ops"
    assert ports["http"]["port"] == 8080


def test_network_policy_lets_clients_reach_grpc_and_prometheus_its_metrics(everything):
    ingress = everything.get("NetworkPolicy", "-gateway")["spec"]["ingress"]
    clients, metrics = ingress[0], ingress[-1]
    assert {"port": "grpc", "protocol": "TCP"} in clients["ports"]
    assert {"port": "http", "protocol": "TCP"} in clients["ports"]
    assert metrics["ports"] == [{"port": "grpc-ops", "protocol": "TCP"}]
    assert metrics["from"][0]["podSelector"] == clients["from"][-2]["podSelector"]  # Prometheus


def test_the_service_monitor_scrapes_both_front_doors():
    monitor = render(*MONITORING_API).get("ServiceMonitor", "-gateway")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http", "grpc-ops"]
    jobs = {e["relabelings"][0]["replacement"] for e in monitor["spec"]["endpoints"]}
    assert len(jobs) == 1, "one job: the rules sum both front doors' requests"


def test_disabled_leaves_no_trace():
    rendered = render("--set", "gateway.grpc.enabled=false", "--set", "networkPolicy.enabled=true",
                      *MONITORING_API)
    assert [c["name"] for c in gateway_pod(rendered)["containers"]] == ["gateway"]
    ports = [p["name"] for p in rendered.get("Service", "-gateway")["spec"]["ports"]]
    assert ports == ["http"]
    policy = rendered.get("NetworkPolicy", "-gateway")["spec"]["ingress"]
    assert all(p["port"] not in ("grpc", "grpc-ops") for rule in policy for p in rule["ports"])
    monitor = rendered.get("ServiceMonitor", "-gateway")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]


def test_ports_and_threads_are_settable():
    rendered = render_scenario("defaults", "--set", "gateway.grpc.port=9000",
                               "--set", "gateway.grpc.containerPort=9500",
                               "--set", "gateway.grpc.threads=64")
    ports = {p["name"]: p for p in rendered.get("Service", "-gateway")["spec"]["ports"]}
    assert ports["grpc"]["port"] == 9000
    grpc = grpc_container(rendered)
    assert env_of(grpc)["TFSTACK_GRPC_BIND"] == "0.0.0.0:9500"
    assert env_of(grpc)["TFSTACK_GRPC_THREADS"] == "64"
    assert grpc["readinessProbe"]["grpc"]["port"] == 9500


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "gateway.grpc.threads=1"), "threads"),
        (("--set", "gateway.grpc.port=0"), "port"),
        (("--set", "gateway.grpc.tls=true"), "tls"),
    ],
)
def test_schema_refuses_bad_grpc_values(args, message):
    assert message in render_error(*args)
