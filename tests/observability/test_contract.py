"""docs/metrics.md is the one metrics contract: rules, dashboards and prometheus-adapter rules
use only the series it lists, and it lists every recording rule and custom metric there is."""

from __future__ import annotations

import json

import pytest
import yaml

from tfstack.observability.adapter import load_rules
from tfstack.observability.contract import contract_series, metric_names, uncontracted
from tfstack.observability.dashboards import DASHBOARDS, panel_queries
from tfstack.observability.paths import REPO, rules


def test_metric_names_finds_series_and_skips_functions_labels_and_numbers():
    expr = (
        'histogram_quantile(0.99, sum by (model, le) (rate(a_bucket{code=~"5..",x="y"}[5m])))'
        " / 1e6 > 1.1 * (b:c:rate5m offset 15m) and on (namespace) :tf:d or vector(0)"
    )
    assert metric_names(expr) == {"a_bucket", "b:c:rate5m", ":tf:d"}
    contract = {"a": "histogram", "b:c:rate5m": "recorded"}
    assert uncontracted(expr, contract) == {":tf:d"}


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("record") or r["alert"])
def test_rules_use_only_contract_series(rule: dict):
    assert uncontracted(rule["expr"]) == set()


def test_every_recording_rule_is_in_the_contract_and_nothing_else_is():
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    documented = {name for name, kind in contract_series().items() if kind == "recorded"}
    custom_metrics = {rule.custom_metric for rule in load_rules()}
    assert recorded - documented == set()
    assert documented - recorded - custom_metrics == set()


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_queries_use_only_contract_series(name: str):
    dashboard = DASHBOARDS[name]()
    queries = [expr for _, expr in panel_queries(dashboard)]
    queries += [
        var["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        for var in dashboard["templating"]["list"]
        if var["type"] == "query"
    ]
    for expr in queries:
        assert uncontracted(expr) == set(), expr


def test_adapter_rules_use_contract_series_and_define_the_contract_custom_metrics():
    contract = contract_series()
    adapter_rules = load_rules()
    for rule in adapter_rules:
        assert uncontracted(rule.query("ns", ["a", "b"])) == set(), rule
        assert contract.get(rule.custom_metric), f"{rule.custom_metric} not in docs/metrics.md"
    raw = yaml.safe_load((REPO / "k8s/prometheus-adapter/values.yaml").read_text())["rules"]
    assert raw["default"] is False
    for rule, item in zip(adapter_rules, raw["custom"], strict=True):
        assert f'__name__="{rule.series}"' in item["seriesQuery"]
        # One series label each for the namespace and the pod resources: `namespace`/`pod`, or
        # dcgm-exporter's `exported_namespace`/`exported_pod` (its own are dcgm-exporter's pod).
        expected = {"DCGM_FI_DEV_GPU_UTIL": "exported_"}.get(rule.series, "")
        assert item["resources"]["overrides"] == {
            f"{expected}namespace": {"resource": "namespace"},
            f"{expected}pod": {"resource": "pod"},
        }
    # The fixed HPA contract (BRIEF): TF Serving scales on this Pods metric.
    assert "tfserving_requests_per_second" in {rule.custom_metric for rule in adapter_rules}


def test_the_chart_hpa_asks_for_a_metric_the_adapter_serves():
    values = yaml.safe_load((REPO / "charts/tfstack/values.yaml").read_text())
    served = {rule.custom_metric for rule in load_rules()}
    for signal in ("requestsPerSecond", "gpu"):
        assert values["tfserving"]["autoscaling"][signal]["metricName"] in served, signal


def test_dashboard_files_parse_as_json():
    for name in DASHBOARDS:
        json.loads((REPO / f"charts/tfstack/files/dashboards/tfstack-{name}.json").read_text())
