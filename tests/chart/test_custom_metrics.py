"""The custom metrics the chart's HPAs ask for, on rendered output: each is served by a rule in
k8s/prometheus-adapter/values.yaml that measures what the HPA means (inference load without the
probes, GPU utilization of the pod's own GPUs), and the chart's recorded load rate agrees."""

from __future__ import annotations

from tests.chart.conftest import MONITORING_API, NAMESPACE, RELEASE, render_scenario
from tfstack.observability.adapter import load_rules

INFERENCE_APIS = 'API=~"Predict|Classify|Regress|predict|classify|regress"'


def pods_metrics(hpa: dict) -> list[dict]:
    return [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]


def adapter_rule(custom_metric: str):
    (rule,) = [r for r in load_rules() if r.custom_metric == custom_metric]
    return rule


def test_requests_per_second_hpa_reads_inference_calls_not_probes():
    hpa = render_scenario("custom-metric").get("HorizontalPodAutoscaler", "-tfserving")
    (metric,) = pods_metrics(hpa)
    rule = adapter_rule(metric["metric"]["name"])
    query = rule.query(NAMESPACE, [f"{RELEASE}-tfstack-tfserving-7d9f-abcde"])
    # request_latency's API label tells inference calls from the probes' status GETs (API="");
    # request_count, which counts both, is not read.
    assert rule.series == ":tensorflow:serving:request_latency_count"
    assert INFERENCE_APIS in query and "request_count" not in query


def test_recorded_tfserving_load_leaves_probes_out_too():
    rendered = render_scenario("everything", *MONITORING_API)
    rules = {
        r["record"]: r["expr"]
        for group in rendered.get("PrometheusRule")["spec"]["groups"]
        for r in group["rules"]
        if "record" in r
    }
    for name in ("namespace_pod:tfserving_requests:rate1m", "namespace:tfserving_requests:rate5m"):
        expr = rules[name]
        assert f'job="{RELEASE}-tfstack-tfserving",{INFERENCE_APIS}' in expr, expr
        assert "request_count" not in expr, expr


def test_gpu_hpa_reads_the_utilization_of_the_pods_own_gpus(gpu):
    hpa = gpu.get("HorizontalPodAutoscaler", "-tfserving")
    (metric,) = pods_metrics(hpa)
    assert metric["target"] == {"type": "AverageValue", "averageValue": "60"}  # percent, 0-100
    rule = adapter_rule(metric["metric"]["name"])
    assert rule.series == "DCGM_FI_DEV_GPU_UTIL"
    # dcgm-exporter's series carry the GPU's pod as exported_pod (pod is dcgm-exporter's own).
    assert (rule.namespace_label, rule.pod_label) == ("exported_namespace", "exported_pod")
    query = rule.query(NAMESPACE, [f"{RELEASE}-tfstack-tfserving-7d9f-abcde"])
    assert f'exported_namespace="{NAMESPACE}",exported_pod="{RELEASE}-tfstack-tfserving-' in query


def test_gateway_hpa_scales_on_cpu_unless_told_otherwise(defaults):
    hpa = defaults.get("HorizontalPodAutoscaler", "-gateway")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_gateway_hpa_scales_on_its_own_load():
    """The custom-metric scenario: the gateway on requests in flight per pod, without CPU."""
    hpa = render_scenario("custom-metric").get("HorizontalPodAutoscaler", "-gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-tfstack-gateway"
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods"]
    (metric,) = pods_metrics(hpa)
    assert metric["target"] == {"type": "AverageValue", "averageValue": "6"}
    # prometheus-adapter serves it from the gateway pods' own gauge.
    rule = adapter_rule(metric["metric"]["name"])
    assert rule.series == "tfstack_gateway_inflight_requests"
    assert rule.pod_label == "pod"


def test_gateway_hpa_combines_cpu_requests_and_inflight():
    rendered = render_scenario(
        "defaults",
        "--set", "gateway.autoscaling.requestsPerSecond.enabled=true",
        "--set", "gateway.autoscaling.inflightRequests.enabled=true",
    )  # fmt: skip
    hpa = rendered.get("HorizontalPodAutoscaler", "-gateway")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods", "Pods"]
    names = [m["metric"]["name"] for m in pods_metrics(hpa)]
    assert names == ["tfstack_gateway_requests_per_second", "tfstack_gateway_inflight_requests"]
    served = {r.custom_metric: r.series for r in load_rules()}
    assert served[names[0]] == "tfstack_gateway_requests_total"  # rate of the gateway's counter
    assert served[names[1]] == "tfstack_gateway_inflight_requests"
    assert [m["target"]["averageValue"] for m in pods_metrics(hpa)] == ["100", "8"]
