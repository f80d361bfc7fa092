"""The custom metrics the chart's HPAs ask for, on rendered output: each is served by a rule in
k8s/prometheus-adapter/values.yaml that measures what the HPA means (inference load without the
probes, GPU utilization of the pod's own GPUs), and the chart's recorded load rate agrees."""

from __future__ import annotations

from observability.adapter import load_rules
from tests.chart.conftest import MONITORING_API, NAMESPACE, RELEASE, render_scenario

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
