"""prometheus-adapter's rules (k8s/prometheus-adapter/values.yaml) replayed on recorded series
through `promtool test rules`: each rule's metricsQuery, filled in the way the adapter fills it for
an HPA's Pods metric (tfstack/observability/adapter.py), must give each pod the value its HPA
should see.

The series are written as the exporters expose them and Prometheus stores them. The GPU rule's are
dcgm-exporter's as scraped through a ServiceMonitor (its own pod in `pod`, the GPU's in
`exported_pod`): no GPU exists where these tests run, so this replay is the GPU rule's test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tfstack.observability.adapter import AdapterRule, load_rules
from tfstack.observability.paths import ADAPTER_VALUES, tool

NS = "serving"
POD_A, POD_B = "rel-tfstack-tfserving-7d9f-abcde", "rel-tfstack-tfserving-7d9f-fghij"
GW = "rel-tfstack-gateway-5c6d-klmno"
TFS = f'job="rel-tfstack-tfserving",namespace="{NS}"'


def per_minute(rate: float, minutes: int = 10) -> str:
    """promtool's expanding notation for a counter growing `rate` per second."""
    return f"0+{rate * 60:g}x{minutes}"


# TF Serving: pod A answers 7 Predict/s over gRPC and 2 predict/s over REST; both replicas'
# readiness probes ask for model status (0.6 GETs/s each), which request_count counts too and
# request_latency records with API="". Pod B takes no inference call, so it has no inference
# series at all. A pod of the same name in another namespace must not leak in.
TFSERVING_SERIES = {
    f':tensorflow:serving:request_latency_count{{{TFS},pod="{POD_A}",model_name="digits",API="Predict",entrypoint="GRPC"}}': per_minute(7),  # noqa: E501
    f':tensorflow:serving:request_latency_count{{{TFS},pod="{POD_A}",model_name="half_plus_two",API="predict",entrypoint="REST"}}': per_minute(2),  # noqa: E501
    f':tensorflow:serving:request_latency_count{{{TFS},pod="{POD_A}",model_name="digits",API="",entrypoint="REST"}}': per_minute(0.6),  # noqa: E501
    f':tensorflow:serving:request_latency_count{{{TFS},pod="{POD_B}",model_name="digits",API="",entrypoint="REST"}}': per_minute(0.6),  # noqa: E501
    f':tensorflow:serving:request_count{{{TFS},pod="{POD_A}",model_name="digits",status="OK"}}': per_minute(9.6),  # noqa: E501
    f':tensorflow:serving:request_count{{{TFS},pod="{POD_B}",model_name="digits",status="OK"}}': per_minute(0.6),  # noqa: E501
    f':tensorflow:serving:request_latency_count{{job="x",namespace="other",pod="{POD_A}",model_name="m",API="Predict",entrypoint="GRPC"}}': per_minute(50),  # noqa: E501
}

# dcgm-exporter on a GPU node, scraped through its ServiceMonitor: pod A holds GPUs 0 and 1 (80 %
# and 40 % busy), pod B GPU 2 (20 %); GPU 3 is allocated to no pod (no exported_* labels); a pod of
# pod A's name in another namespace holds GPU 0 of another node.
DCGM = (
    'job="nvidia-dcgm-exporter",instance="10.0.0.5:9400",namespace="gpu-operator",'
    'pod="nvidia-dcgm-exporter-x2k9p",container="nvidia-dcgm-exporter",Hostname="gpu-node-1",'
    'modelName="Tesla T4"'
)


def gpu(index: int, pod: str | None, namespace: str = NS) -> str:
    workload = (
        f',exported_pod="{pod}",exported_namespace="{namespace}",exported_container="tfserving"'
        if pod
        else ""
    )
    return (
        f'DCGM_FI_DEV_GPU_UTIL{{{DCGM},gpu="{index}",UUID="GPU-{index:08d}",'
        f'device="nvidia{index}"{workload}}}'
    )


GPU_SERIES = {
    gpu(0, POD_A): "80x10",
    gpu(1, POD_A): "40x10",
    gpu(2, POD_B): "20x10",
    gpu(3, None): "0x10",
    gpu(4, POD_A, namespace="other"): "100x10",
}

# The gateway: in-flight requests and requests/s per pod.
GATEWAY_SERIES = {
    f'tfstack_gateway_inflight_requests{{job="rel-tfstack-gateway",namespace="{NS}",pod="{GW}"}}': "3x10",  # noqa: E501
    f'tfstack_gateway_requests_total{{job="rel-tfstack-gateway",namespace="{NS}",pod="{GW}",method="predict",model="digits",code="200"}}': per_minute(12),  # noqa: E501
}

# custom metric -> (input series, pods the HPA asks about, value each must get)
CASES = {
    "tfserving_requests_per_second": (TFSERVING_SERIES, {POD_A: 9, POD_B: 0}),
    "DCGM_FI_DEV_GPU_UTIL": (GPU_SERIES, {POD_A: 60, POD_B: 20}),
    "tfstack_gateway_inflight_requests": (GATEWAY_SERIES, {GW: 3}),
    "tfstack_gateway_requests_per_second": (GATEWAY_SERIES, {GW: 12}),
}


def replay(tmp_path: Path, series: dict[str, str], checks: list[dict]) -> str:
    """Run `checks` (promql_expr_test items) on `series`; promtool's output on failure."""
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "promql_expr_test": checks,
            }
        ],
    }
    path = tmp_path / "replay_test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False, width=1000))
    result = subprocess.run(
        [str(tool("promtool")), "test", "rules", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return "" if result.returncode == 0 else result.stdout + result.stderr


def expect(rule: AdapterRule, pods: dict[str, float]) -> list[dict]:
    """The adapter's query for all the pods at once and for each alone (`pod="x"`, not a regex)."""
    def samples(wanted: dict[str, float]) -> list[dict]:
        return [{"labels": f'{{{rule.pod_label}="{p}"}}', "value": v} for p, v in wanted.items()]

    checks = [{"expr": rule.query(NS, sorted(pods)), "eval_time": "9m",
               "exp_samples": samples(pods)}]  # fmt: skip
    for pod, value in pods.items():
        checks.append({"expr": rule.query(NS, [pod]), "eval_time": "9m",
                       "exp_samples": samples({pod: value})})  # fmt: skip
    return checks


def test_every_adapter_rule_is_replayed():
    assert {rule.custom_metric for rule in load_rules()} == set(CASES)


@pytest.mark.parametrize("rule", load_rules(), ids=lambda r: r.custom_metric)
def test_adapter_rule_gives_each_pod_the_value_its_hpa_should_see(tmp_path, rule):
    series, pods = CASES[rule.custom_metric]
    assert replay(tmp_path, series, expect(rule, pods)) == ""


def test_probe_traffic_is_not_load(tmp_path):
    """A replica that only answers its probes reads 0 requests/s, where request_count says 0.6."""
    (rule,) = [r for r in load_rules() if r.custom_metric == "tfserving_requests_per_second"]
    naive = f'sum(rate(:tensorflow:serving:request_count{{namespace="{NS}",pod="{POD_B}"}}[1m])) by (pod)'  # noqa: E501
    checks = [
        {"expr": rule.query(NS, [POD_B]), "eval_time": "9m",
         "exp_samples": [{"labels": f'{{pod="{POD_B}"}}', "value": 0}]},
        {"expr": f"round(10 * {naive})", "eval_time": "9m",
         "exp_samples": [{"labels": f'{{pod="{POD_B}"}}', "value": 6}]},
    ]  # fmt: skip
    assert replay(tmp_path, TFSERVING_SERIES, checks) == ""


def test_gpu_rule_reads_the_gpus_pod_not_dcgm_exporters(tmp_path):
    """dcgm-exporter's series carry its own pod in `pod`: a rule keyed on `pod`/`namespace` would
    find nothing for TF Serving's pods (and give dcgm-exporter the GPUs' load)."""
    (rule,) = [r for r in load_rules() if r.custom_metric == "DCGM_FI_DEV_GPU_UTIL"]
    assert (rule.namespace_label, rule.pod_label) == ("exported_namespace", "exported_pod")
    keyed_on_pod = AdapterRule(rule.custom_metric, rule.series, rule.metrics_query)
    checks = [{"expr": keyed_on_pod.query(NS, [POD_A, POD_B]), "eval_time": "9m",
               "exp_samples": []}]  # fmt: skip
    assert replay(tmp_path, GPU_SERIES, checks) == ""
    raw = yaml.safe_load(ADAPTER_VALUES.read_text())
    (gpu_rule,) = [r for r in raw["rules"]["custom"] if "DCGM_FI_DEV_GPU_UTIL" in r["seriesQuery"]]
    # Discovery sees only GPUs allocated to a pod.
    assert 'exported_pod!=""' in gpu_rule["seriesQuery"]
    assert 'exported_namespace!=""' in gpu_rule["seriesQuery"]
